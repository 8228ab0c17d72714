package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** Java reading while the Go writer writes: self-checking values (internal/xlang). */
class ConcurrencyTest {
    /** xlang's self-check: payload || fnv1a64(payload) LE, payload starting with key ":". */
    static void check(byte[] key, byte[] v) {
        String k = Env.str(key);
        if (v.length < 8) {
            fail("value of " + k + " is " + v.length + " bytes");
        }
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i < v.length - 8; i++) {
            h ^= v[i] & 0xFF;
            h *= 0x100000001b3L;
        }
        long want = ByteBuffer.wrap(v, v.length - 8, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        if (h != want) {
            fail("torn value of " + k + ": fnv1a64 " + Long.toHexString(h) + " != " + Long.toHexString(want));
        }
        byte[] p = (k + ":").getBytes(StandardCharsets.UTF_8);
        if (v.length - 8 < p.length || !Arrays.equals(v, 0, p.length, p, 0, p.length)) {
            fail("value of " + k + " belongs to another key: " + Env.str(Arrays.copyOf(v, Math.min(v.length, 40))));
        }
    }

    /**
     * grow inserts until the region has been rebuilt into new, larger
     * files several times; Java gets random keys and scans all the while,
     * and must follow the region from file to file.
     */
    @Test
    void growThroughRebuilds() throws Exception {
        Path p = Env.dir("grow").resolve("g");
        Process w = Env.start(Env.xlang(), "grow", p.toString(), "-for", "3s");
        Env.awaitRegion(p);
        AtomicReference<Throwable> scanFailed = new AtomicReference<>();
        AtomicLong scans = new AtomicLong();
        long gets = 0, hits = 0;
        int reopens;
        try (Region r = Region.open(p); Region s = Region.open(p)) {
            Thread scanner = new Thread(() -> {
                try {
                    while (w.isAlive()) {
                        byte[][] last = {null};
                        s.scan("grow/", (k, v) -> {
                            if (last[0] != null && Arrays.compareUnsigned(last[0], k) >= 0) {
                                fail("scan out of order: " + Env.str(last[0]) + " then " + Env.str(k));
                            }
                            last[0] = k;
                            if (!Env.str(k).equals("grow/done")) {
                                check(k, v);
                            }
                        });
                        scans.incrementAndGet();
                    }
                } catch (Throwable t) {
                    scanFailed.set(t);
                }
            });
            scanner.start();
            int known = 0; // the highest key index seen so far
            ThreadLocalRandom rnd = ThreadLocalRandom.current();
            while (w.isAlive()) {
                int i = rnd.nextInt(known + 256);
                String k = String.format("grow/%08d", i);
                byte[] key = Env.utf8(k);
                byte[] v = r.get(key);
                gets++;
                if (v != null) {
                    check(key, v);
                    hits++;
                    known = Math.max(known, i);
                }
            }
            scanner.join();
            reopens = r.reopens + s.reopens;
            assertEquals(0, w.exitValue(), "xlang grow failed");
            if (scanFailed.get() != null) {
                throw new AssertionError("scanner", scanFailed.get());
            }
            // Afterwards: every key the writer wrote, and nothing torn.
            byte[] done = r.get("grow/done");
            assertNotNull(done);
            int n = Integer.parseInt(Env.str(done));
            assertTrue(n > 1000, "grow wrote only " + n + " keys");
            for (int i = 0; i < n; i++) {
                byte[] key = Env.utf8(String.format("grow/%08d", i));
                byte[] v = r.get(key);
                assertNotNull(v, Env.str(key));
                check(key, v);
            }
            long[] count = {0};
            r.scan("grow/", (k, v) -> count[0]++);
            assertEquals(n + 1, count[0]);
            // And the whole listing, byte for byte, through the many-chunk scan.
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            r.scan("", (k, v) -> out.writeBytes((Region.hex(k) + "\t" + Region.hex(v) + "\n").getBytes(StandardCharsets.US_ASCII)));
            assertArrayEquals(Env.lsHex(p), out.toByteArray());
            reopens = r.reopens + s.reopens;
        } finally {
            w.destroy();
        }
        System.out.printf("grow: %d gets (%d hits), %d scans, %d reopens after rebuilds%n", gets, hits, scans.get(), reopens);
        assertTrue(hits > gets / 2, "only " + hits + " hits of " + gets);
        assertTrue(reopens >= 1, "the readers never moved to a rebuilt file");
    }

    /** churn overwrites 64 keys round robin; every value Java sees must self-check. */
    @Test
    void churn() throws Exception {
        Path p = Env.dir("churn").resolve("c");
        Process w = Env.start(Env.xlang(), "churn", p.toString(), "-for", "3s");
        Env.awaitRegion(p);
        long gets = 0, hits = 0, scanned = 0;
        long gen0;
        AtomicReference<Throwable> sharedFailed = new AtomicReference<>();
        AtomicLong sharedGets = new AtomicLong();
        try (Region r = Region.open(p)) {
            gen0 = r.generation();
            // Two more threads share r (its calls take turns) with this one.
            Thread[] sharers = new Thread[2];
            for (int t = 0; t < sharers.length; t++) {
                sharers[t] = new Thread(() -> {
                    try {
                        ThreadLocalRandom tr = ThreadLocalRandom.current();
                        while (w.isAlive()) {
                            byte[] key = Env.utf8(String.format("churn/%03d", tr.nextInt(64)));
                            byte[] v = r.get(key);
                            if (v != null) {
                                check(key, v);
                            }
                            sharedGets.incrementAndGet();
                        }
                    } catch (Throwable e) {
                        sharedFailed.set(e);
                    }
                });
                sharers[t].start();
            }
            ThreadLocalRandom rnd = ThreadLocalRandom.current();
            while (w.isAlive()) {
                for (int i = 0; i < 1000; i++) {
                    byte[] key = Env.utf8(String.format("churn/%03d", rnd.nextInt(64)));
                    byte[] v = r.get(key);
                    gets++;
                    if (v != null) {
                        check(key, v);
                        hits++;
                    }
                }
                long[] n = {0};
                r.scan("churn/", (k, v) -> {
                    if (!Env.str(k).equals("churn/done")) {
                        check(k, v);
                    }
                    n[0]++;
                });
                scanned += n[0];
            }
            for (Thread t : sharers) {
                t.join();
            }
            if (sharedFailed.get() != null) {
                throw new AssertionError("a thread sharing the Region", sharedFailed.get());
            }
            assertTrue(sharedGets.get() > 1000, "the sharing threads made " + sharedGets.get() + " gets");
            assertEquals(0, w.exitValue(), "xlang churn failed");
            byte[] done = r.get("churn/done");
            assertNotNull(done);
            assertTrue(Long.parseLong(Env.str(done)) > 1000);
            assertTrue(r.generation() > gen0 + 1000, "generation moved from " + gen0 + " to " + r.generation());
            System.out.printf("churn: %d gets (%d hits), %d entries scanned, %d writes, %d evictions, %d reopens%n",
                    gets, hits, scanned, Long.parseLong(Env.str(done)), r.evictions, r.reopens);
        } finally {
            w.destroy();
        }
        assertTrue(hits > 1000, "only " + hits + " hits");
    }
}
