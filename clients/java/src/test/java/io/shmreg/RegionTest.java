package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The Go writer's fixture region, read by Java. */
class RegionTest {
    static Path fixture;
    static byte[] listing;
    static List<byte[][]> entries = new ArrayList<>();

    @BeforeAll
    static void writeFixture() throws Exception {
        fixture = Env.fixture("region");
        listing = Env.lsHex(fixture);
        HexFormat hex = HexFormat.of();
        for (String line : new String(listing, StandardCharsets.US_ASCII).split("\n")) {
            int tab = line.indexOf('\t');
            entries.add(new byte[][] {hex.parseHex(line.substring(0, tab)), hex.parseHex(line.substring(tab + 1))});
        }
        assertTrue(entries.size() > 40, "fixture listing has " + entries.size() + " lines");
    }

    /** The Dump main class, run as its own process, prints what shmreg ls --format hex prints, byte for byte. */
    @Test
    void dumpEqualsShmregLs() throws Exception {
        byte[] dump = Env.run(Env.java(), "-cp", Env.classpath(), "io.shmreg.Dump", fixture.toString());
        assertEquals(new String(listing, StandardCharsets.US_ASCII), new String(dump, StandardCharsets.US_ASCII));
        assertArrayEquals(listing, dump);
    }

    @Test
    void dumpOfAMissingRegionFailsClearly() throws Exception {
        Path missing = Env.dir("dumpmissing").resolve("nope");
        Process proc = new ProcessBuilder(Env.java(), "-cp", Env.classpath(), "io.shmreg.Dump", missing.toString())
                .redirectErrorStream(true).start();
        String out = new String(Env.readAll(proc.getInputStream()), StandardCharsets.UTF_8);
        assertEquals(1, proc.waitFor());
        assertEquals("shmreg: no region at " + missing + " (no such file)\n", out);
    }

    @Test
    void scanEqualsListing() {
        try (Region r = Region.open(fixture)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            r.scan(new byte[0], (k, v) -> out.writeBytes((Region.hex(k) + "\t" + Region.hex(v) + "\n").getBytes(StandardCharsets.US_ASCII)));
            assertArrayEquals(listing, out.toByteArray());
        }
    }

    @Test
    void getFindsEveryListedKeyThroughIndexAndSkiplist() {
        try (Region r = Region.open(fixture)) {
            for (byte[][] e : entries) {
                assertArrayEquals(e[1], r.get(e[0]), Region.hex(e[0]));
                assertArrayEquals(e[1], r.getSkiplist(e[0]), Region.hex(e[0]));
            }
            assertEquals(entries.size(), r.size());
            assertEquals("second value of ab", Env.str(r.get("ab")));
            assertEquals("overwritten 1", Env.str(r.get("tmp/001")));
            assertArrayEquals(new byte[0], r.get("empty"));
            assertArrayEquals(new byte[] {(byte) 0xff, 0, (byte) 0xfe}, r.get(new byte[] {'h', 'i', '/', (byte) 0xff, (byte) 0xfe}));
            assertArrayEquals("\u00e9".getBytes(StandardCharsets.UTF_8), r.get("utf8/\u00e9t\u00e9"));
            byte[] big = r.get("big/1MiB");
            assertEquals(1 << 20, big.length);
            for (int i = 0; i < big.length; i++) {
                assertEquals((byte) (i * 7), big[i]);
            }
            // Deleted, never written, a prefix of keys, a key's extension.
            for (String k : new String[] {"abd", "tmp/000", "tmp/003", "zzz", "cfg", "cfg/app", "abcde", "a\0", "tmp/002x"}) {
                assertNull(r.get(k), k);
                assertNull(r.getSkiplist(Env.utf8(k)), k);
            }
            assertEquals("2", Env.str(r.get("tmp/002")));
        }
    }

    @Test
    void scanPrefixes() {
        try (Region r = Region.open(fixture)) {
            for (String prefix : new String[] {"", "a", "ab", "abc", "cfg/", "tmp/", "tmp/04", "svc/orders/", "zz", "\u00ff"}) {
                byte[] p = Env.utf8(prefix);
                List<String> want = new ArrayList<>();
                for (byte[][] e : entries) {
                    if (startsWith(e[0], p)) {
                        want.add(Region.hex(e[0]) + "=" + Region.hex(e[1]));
                    }
                }
                List<String> got = new ArrayList<>();
                r.scan(p, (k, v) -> got.add(Region.hex(k) + "=" + Region.hex(v)));
                assertEquals(want, got, "prefix " + prefix);
            }
        }
    }

    static boolean startsWith(byte[] k, byte[] p) {
        if (k.length < p.length) {
            return false;
        }
        for (int i = 0; i < p.length; i++) {
            if (k[i] != p[i]) {
                return false;
            }
        }
        return true;
    }

    @Test
    void instances() {
        try (Region r = Region.open(fixture)) {
            List<Instance> orders = r.instances("orders");
            assertEquals(3, orders.size());
            for (int i = 0; i < 3; i++) {
                Instance in = orders.get(i);
                assertEquals("orders", in.service());
                assertEquals("orders-" + (i + 1), in.id());
                assertEquals("10.0.0." + (i + 1), in.address());
                assertEquals(8080 + i, in.port());
                assertEquals(100 - 10 * i, in.weight());
                assertEquals(Map.of("zone", "z" + (i % 2), "version", "2.1"), in.metadata());
                assertEquals("passing", in.health());
                assertEquals(Duration.ofSeconds(15), in.ttl());
            }
            List<Instance> users = r.instances("users");
            assertEquals(1, users.size());
            // The writer's defaults: health passing, TTL 10 s; no metadata.
            assertEquals(new Instance("users", "u1", "10.0.1.1", 9000, 1, Map.of(), "passing", Duration.ofSeconds(10)), users.get(0));
            assertEquals(List.of(), r.instances("nobody"));
            assertEquals(List.of(), r.instances("order")); // a prefix of a service is not the service
            assertThrows(IllegalArgumentException.class, () -> r.instances("a/b"));
        }
    }

    @Test
    void awaitTimesOutWithoutACommit() {
        try (Region r = Region.open(fixture)) {
            long t0 = System.nanoTime();
            assertFalse(r.await(Duration.ofMillis(300)));
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(ms >= 290 && ms < 5000, "await took " + ms + " ms");
            int seq = r.seq();
            assertEquals(seq, r.await(seq, Duration.ofMillis(50)));
        }
    }

    @Test
    void awaitWakesOnACommit() throws Exception {
        Path p = Env.dir("await").resolve("r");
        Env.run(Env.xlang(), "fixture", p.toString());
        try (Region r = Region.open(p)) {
            long gen = r.generation();
            assertFalse(r.await(Duration.ofMillis(100)));
            // A writer on the same region: churn opens it and commits at once.
            Process w = Env.start(Env.xlang(), "churn", p.toString(), "-for", "1s");
            try {
                long t0 = System.nanoTime();
                assertTrue(r.await(Duration.ofSeconds(20)), "no wake-up within 20 s");
                long ms = (System.nanoTime() - t0) / 1_000_000;
                assertTrue(r.generation() > gen);
                // Commits keep coming for a second: the next await returns at once.
                assertTrue(r.await(Duration.ofSeconds(5)));
                assertTrue(ms < 20_000);
            } finally {
                assertEquals(0, w.waitFor());
            }
            assertTrue(r.get("churn/done") != null);
        }
    }

    @Test
    void generationIsTheHeaderWord() throws Exception {
        ByteBuffer h = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        try (FileChannel ch = FileChannel.open(fixture, StandardOpenOption.READ)) {
            ch.read(h, 72);
        }
        try (Region r = Region.open(fixture)) {
            assertEquals(h.getLong(0), r.generation());
            assertTrue(r.generation() >= 2); // the fixture commits at least twice
        }
    }

    @Test
    void missingRegion() throws Exception {
        Path d = Env.dir("missing");
        ShmregException e = assertThrows(ShmregException.class, () -> Region.open(d.resolve("nope")));
        assertEquals(ShmregException.Reason.NO_REGION, e.reason());
        assertTrue(e.getMessage().contains("nope"), e.getMessage());
        // A data file without its control file.
        Path p = d.resolve("half");
        Files.copy(fixture, p);
        e = assertThrows(ShmregException.class, () -> Region.open(p));
        assertEquals(ShmregException.Reason.NO_REGION, e.reason());
        assertTrue(e.getMessage().contains("half.ctl"), e.getMessage());
    }

    @Test
    void notARegion() throws Exception {
        Path d = Env.dir("notregion");
        Path p = d.resolve("junk");
        byte[] junk = new byte[16384];
        new java.util.Random(1).nextBytes(junk);
        Files.write(p, junk);
        ShmregException e = assertThrows(ShmregException.class, () -> Region.open(p));
        assertEquals(ShmregException.Reason.NOT_A_REGION, e.reason());
        assertTrue(e.getMessage().contains("not a shmreg region"), e.getMessage());
        Files.write(p, Env.utf8("hi"));
        assertEquals(ShmregException.Reason.NOT_A_REGION, assertThrows(ShmregException.class, () -> Region.open(p)).reason());
        Files.write(p, new byte[0]);
        assertEquals(ShmregException.Reason.TRUNCATED, assertThrows(ShmregException.class, () -> Region.open(p)).reason());
        // A directory.
        assertEquals(ShmregException.Reason.IO, assertThrows(ShmregException.class, () -> Region.open(d)).reason());
    }

    @Test
    void otherVersionTruncatedAndBadHeader() throws Exception {
        Path d = Env.dir("badheader");
        // Copies of the fixture's two files (this class never holds a slot
        // lock on the fixture's control file while copying: see ControlFile).
        Path v = copyRegion(d.resolve("v"));
        patchInt(v, 8, Layout.LAYOUT_VERSION + 1);
        ShmregException e = assertThrows(ShmregException.class, () -> Region.open(v));
        assertEquals(ShmregException.Reason.LAYOUT_VERSION, e.reason());
        assertTrue(e.getMessage().contains("layout version " + (Layout.LAYOUT_VERSION + 1)), e.getMessage());

        Path v0 = copyRegion(d.resolve("v0"));
        patchInt(v0, 8, 0);
        assertEquals(ShmregException.Reason.LAYOUT_VERSION, assertThrows(ShmregException.class, () -> Region.open(v0)).reason());

        // Version 1 reads like version 2 (only where writers put values changed).
        Path v1 = copyRegion(d.resolve("v1"));
        patchInt(v1, 8, 1);
        try (Region r = Region.open(v1)) {
            assertNotNull(r.get("ab"));
        }

        Path cv = copyRegion(d.resolve("cv"));
        patchInt(Paths.get(cv + ".ctl"), 8, 7);
        assertEquals(ShmregException.Reason.LAYOUT_VERSION, assertThrows(ShmregException.class, () -> Region.open(cv)).reason());

        Path t = copyRegion(d.resolve("t"));
        try (FileChannel ch = FileChannel.open(t, StandardOpenOption.WRITE)) {
            ch.truncate(ch.size() - 4096);
        }
        assertEquals(ShmregException.Reason.TRUNCATED, assertThrows(ShmregException.class, () -> Region.open(t)).reason());

        Path ct = copyRegion(d.resolve("ct"));
        try (FileChannel ch = FileChannel.open(Paths.get(ct + ".ctl"), StandardOpenOption.WRITE)) {
            ch.truncate(8192 + 64);
        }
        assertEquals(ShmregException.Reason.TRUNCATED, assertThrows(ShmregException.class, () -> Region.open(ct)).reason());

        Path h = copyRegion(d.resolve("h"));
        patchLong(h, 48, 12345); // head: misaligned
        ShmregException he = assertThrows(ShmregException.class, () -> Region.open(h));
        assertEquals(ShmregException.Reason.CORRUPT, he.reason());
        Path mh = copyRegion(d.resolve("mh"));
        patchInt(mh, 40, 1000); // max_height
        assertEquals(ShmregException.Reason.CORRUPT, assertThrows(ShmregException.class, () -> Region.open(mh)).reason());
    }

    static Path copyRegion(Path to) throws Exception {
        Files.copy(fixture, to);
        Files.copy(Paths.get(fixture + ".ctl"), Paths.get(to + ".ctl"));
        return to;
    }

    static void patchInt(Path p, long off, int v) throws Exception {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, v), off);
        }
    }

    static void patchLong(Path p, long off, long v) throws Exception {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, v), off);
        }
    }

    @Test
    void closedRegion() {
        Region r = Region.open(fixture);
        r.close();
        r.close(); // twice is fine
        assertEquals(ShmregException.Reason.CLOSED, assertThrows(ShmregException.class, () -> r.get("a")).reason());
        assertEquals(ShmregException.Reason.CLOSED, assertThrows(ShmregException.class, () -> r.scan("", (k, v) -> { })).reason());
        assertEquals(ShmregException.Reason.CLOSED, assertThrows(ShmregException.class, r::generation).reason());
        assertEquals(ShmregException.Reason.CLOSED, assertThrows(ShmregException.class, () -> r.await(Duration.ofMillis(1))).reason());
    }

    /** A scan's consumer may take its time, and may itself read: it runs outside any read section. */
    @Test
    void scanConsumerRunsOutsideASection() {
        try (Region r = Region.open(fixture)) {
            List<String> keys = new ArrayList<>();
            r.scan("cfg/", (k, v) -> {
                assertArrayEquals(v, r.get(k)); // would be a nested section if the scan held one
                keys.add(Env.str(k));
            });
            assertEquals(List.of("cfg/app/retries", "cfg/app/timeout", "cfg/db/dsn"), keys);
        }
    }
}
