package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The reader slot a Java reader holds, as the Go writer and the C reader
 * see it: Java's FileChannel.tryLock takes a POSIX record lock, and the
 * others look with open-file-description locks (F_OFD_GETLK), which see
 * POSIX locks and conflict with them.
 */
class SlotTest {
    static String probe(String mode, Path region, int slot) throws Exception {
        return Env.runText(Env.ofdprobe(), mode, region + ".ctl", Integer.toString(slot));
    }

    static int cClaim(Path region) throws Exception {
        return Integer.parseInt(Env.runText(Env.ofdprobe(), "claim", region.toString()));
    }

    @Test
    void posixLockIsSeenByOfdAndSurvivesClosingAnotherRegion() throws Exception {
        Path p = Env.fixture("slots");
        long pid = ProcessHandle.current().pid();
        Region r1 = Region.open(p);
        int s1 = r1.slotIndex();
        assertEquals("locked pid=" + pid, probe("lock", p, s1));
        int s2;
        try (Region r2 = Region.open(p)) {
            s2 = r2.slotIndex();
            assertEquals(0, s1); // a fresh region: the first two slots
            assertEquals(1, s2);
            assertEquals("locked pid=" + pid, probe("lock", p, s2));
            // The C reader's claim (F_OFD_GETLK, F_OFD_SETLK) skips both.
            int c = cClaim(p);
            assertNotEquals(s1, c);
            assertNotEquals(s2, c);
            // The writer's liveness check finds them alive.
            assertEquals("alive", probe("reap", p, s1));
        }
        // Closing r2 gave its slot back and left r1's lock in place: POSIX
        // locks drop when any descriptor of the file closes, so both share one.
        assertEquals("free", probe("lock", p, s2));
        assertEquals("locked pid=" + pid, probe("lock", p, s1));
        // The C reader claims the first slot no live reader holds: r2's old one.
        assertEquals(s2, cClaim(p), "the C reader did not take the freed slot");
        assertNotNull(r1.get("a"));
        r1.close();
        assertEquals("free", probe("lock", p, s1));
    }

    /**
     * The difference from OFD locks: anything in this JVM that opens and
     * closes the control file drops the slot lock. The writer then reaps the
     * slot; the Region notices at its next read and claims another.
     */
    @Test
    void aDroppedLockIsReclaimedAfterTheWriterReaps() throws Exception {
        Path p = Env.fixture("dropped");
        try (Region r = Region.open(p)) {
            int s = r.slotIndex();
            assertEquals("locked pid=" + ProcessHandle.current().pid(), probe("lock", p, s));
            Files.readAllBytes(Paths.get(p + ".ctl")); // opens and closes a second descriptor
            assertEquals("free", probe("lock", p, s), "the kernel kept the POSIX lock; this test's premise is wrong");
            assertEquals("reaped", probe("reap", p, s)); // what the writer does next
            assertNotNull(r.get("a")); // notices, claims again
            int again = r.slotIndex();
            assertEquals("locked pid=" + ProcessHandle.current().pid(), probe("lock", p, again));
        }
    }

    /**
     * An interrupt that reaches a thread inside FileChannel.tryLock closes
     * the channel, and with it the JVM's locks on the file. The Regions on
     * it notice at their next read, open the file again and claim new slots.
     */
    @Test
    void aClosedControlChannelIsReopened() throws Exception {
        Path p = Env.fixture("closedchannel");
        long pid = ProcessHandle.current().pid();
        try (Region r1 = Region.open(p); Region r2 = Region.open(p)) {
            r1.controlForTest().closeChannelForTest();
            assertEquals("free", probe("lock", p, r1.slotIndex()));
            assertEquals("free", probe("lock", p, r2.slotIndex()));
            assertNotNull(r1.get("a"));
            assertNotNull(r2.get("b"));
            assertEquals("locked pid=" + pid, probe("lock", p, r1.slotIndex()));
            assertEquals("locked pid=" + pid, probe("lock", p, r2.slotIndex()));
            assertNotEquals(r1.slotIndex(), r2.slotIndex());
            assertTrue(r1.controlForTest() == r2.controlForTest(), "the two Regions no longer share one descriptor");
        }
        assertEquals(0, cClaim(p)); // everything was given back
    }

    static final class Child {
        final Process proc;
        final BufferedReader out;
        final OutputStream in;
        final int slot;
        final long token;

        Child(Path region) throws Exception {
            proc = Env.startJava(HoldSection.class, region.toString());
            out = new BufferedReader(new InputStreamReader(proc.getInputStream()));
            in = proc.getOutputStream();
            String line = out.readLine();
            if (line == null || !line.startsWith("slot ")) {
                proc.destroyForcibly();
                fail("HoldSection said " + line);
            }
            String[] f = line.split(" ");
            slot = Integer.parseInt(f[1]);
            token = Long.parseLong(f[3]);
        }
    }

    /**
     * A Java reader stuck in a read section past the lease is forced (its
     * slot is alive, so it is not reaped), and learns it at the end of the
     * section; one killed with SIGKILL inside a section is reaped, so it
     * does not hold memory reuse back.
     */
    @Test
    void stuckReaderIsForcedAndKilledReaderIsReaped() throws Exception {
        Path p = Env.dir("reap").resolve("r");
        Process w = Env.start(Env.xlangbench(), "paced", p.toString(), "-for", "8s");
        Child alive = null, killed = null;
        try {
            Env.awaitRegion(p);
            try (Region obs = Region.open(p)) {
                ControlFile c = obs.controlForTest();
                alive = new Child(p);
                killed = new Child(p);
                assertEquals("locked pid=" + alive.proc.pid(), probe("lock", p, alive.slot));
                killed.proc.destroyForcibly(); // SIGKILL
                assertTrue(killed.proc.waitFor(10, TimeUnit.SECONDS));
                assertEquals("free", probe("lock", p, killed.slot));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(7);
                boolean reaped = false, forced = false;
                while (System.nanoTime() < deadline && !(reaped && forced)) {
                    assertEquals(alive.token, c.owner(alive.slot), "the live Java reader's slot was taken from it");
                    reaped = c.owner(killed.slot) != killed.token;
                    forced = (c.epochOpaque(alive.slot) & Layout.EPOCH_FORCED) != 0;
                    Thread.sleep(20);
                }
                assertTrue(reaped, "the killed reader's slot was not reaped (slots_reaped " + c.slotsReaped() + ")");
                assertTrue(c.slotsReaped() >= 1);
                assertTrue(forced, "the stuck reader's slot was not forced (slots_forced " + c.slotsForced() + ")");
                assertTrue(c.slotsForced() >= 1);
                assertEquals(alive.token, c.owner(alive.slot));
                alive.in.write("end\n".getBytes());
                alive.in.flush();
                assertEquals("evicted", alive.out.readLine());
                alive.in.close();
                assertTrue(alive.proc.waitFor(10, TimeUnit.SECONDS));
                assertEquals(0, alive.proc.exitValue());
                assertEquals("free", probe("lock", p, alive.slot));
                // Reuse went on: the writer's values still self-check.
                for (int i = 0; i < 64; i++) {
                    byte[] k = Env.utf8(String.format("paced/%03d", i));
                    byte[] v = obs.get(k);
                    if (v != null) {
                        ConcurrencyTest.check(k, v);
                    }
                }
            }
            assertTrue(w.waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, w.exitValue());
        } finally {
            w.destroy();
            if (alive != null) {
                alive.proc.destroyForcibly();
            }
            if (killed != null) {
                killed.proc.destroyForcibly();
            }
        }
    }
}
