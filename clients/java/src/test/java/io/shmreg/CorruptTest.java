package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * A damaged data file: one 8-byte word of the structures (nodes, keys,
 * index) overwritten, 400 times over. Every open, lookup and scan either
 * works or throws ShmregException (CORRUPT, or NOT_A_REGION etc. from the
 * header); never an IndexOutOfBounds, never a hang.
 */
class CorruptTest {
    @Test
    void damagedFilesFailClearly() throws Exception {
        Path src = Env.fixture("corrupt");
        byte[] orig = Files.readAllBytes(src);
        ByteBuffer h = ByteBuffer.wrap(orig).order(ByteOrder.LITTLE_ENDIAN);
        long alloc = h.getLong(128); // the nodes, keys and index lie below
        long index = h.getLong(80);
        Path dir = Env.dir("corrupt-copies");
        Path dst = dir.resolve("r");
        Files.write(dst, orig);
        Files.copy(Paths.get(src + ".ctl"), Paths.get(dst + ".ctl"));
        List<byte[]> keys = new ArrayList<>();
        try (Region r = Region.open(src)) {
            r.scan("", (k, v) -> keys.add(k));
        }
        keys.add(Env.utf8("not/there"));
        Random rnd = new Random(1616);
        int[] corrupt = {0};
        int[] ok = {0};
        assertTimeoutPreemptively(Duration.ofSeconds(90), () -> {
            for (int trial = 0; trial < 400; trial++) {
                long at;
                switch (trial % 4) {
                    case 0 -> at = index + 8L * rnd.nextInt(64); // the index table
                    case 1 -> at = 48 + 8L * rnd.nextInt(6); // the header's head .. index words
                    default -> at = 4096 + 8L * rnd.nextInt((int) ((alloc - 4096) / 8)); // nodes and keys
                }
                long word;
                switch (rnd.nextInt(5)) {
                    case 0 -> word = rnd.nextLong();
                    case 1 -> word = 4096 + 8L * rnd.nextInt((int) ((alloc - 4096) / 8)); // another node
                    case 2 -> word = at; // itself: a cycle
                    case 3 -> word = (rnd.nextLong() & 0xFFFFFFL) << 40 | (at & 0xFFFFFFFFFFL); // a huge length
                    default -> word = rnd.nextInt(64);
                }
                try (FileChannel ch = FileChannel.open(dst, StandardOpenOption.WRITE)) {
                    ch.write(ByteBuffer.wrap(orig), 0);
                    ch.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, word), at);
                }
                try (Region r = Region.open(dst)) {
                    for (byte[] k : keys) {
                        r.get(k);
                    }
                    r.scan("", (k, v) -> { });
                    r.scan("svc/", (k, v) -> { });
                    r.instances("orders");
                    ok[0]++;
                } catch (ShmregException e) {
                    corrupt[0]++;
                } catch (RuntimeException | Error e) {
                    fail("word " + Long.toHexString(word) + " at " + at + ": " + e, e);
                }
            }
        });
        System.out.printf("corrupt: %d damaged copies read, %d refused as corrupt%n", ok[0], corrupt[0]);
        assertTrue(corrupt[0] >= 20, "only " + corrupt[0] + " of 400 damaged copies were caught");
    }
}
