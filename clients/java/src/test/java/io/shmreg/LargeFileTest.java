package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A region past 2 GiB, which no single Java buffer can map: the fixture
 * grown (sparsely) to 3 GiB, with three values moved to where the chunked
 * mapping is tested: across the first 1 GiB chunk boundary, past 2 GiB, and
 * at the very end of the file.
 */
class LargeFileTest {
    static final long GIB = 1L << 30;

    @Test
    void valuesPastTwoGiBAndAcrossChunks() throws Exception {
        Path src = Env.fixture("large");
        Path big = Env.dir("large-copy").resolve("big");
        Files.copy(src, big);
        Files.copy(Paths.get(src + ".ctl"), Paths.get(big + ".ctl"));
        String[] keys = {"a", "b", "ba"};
        long[] at = {GIB - 10 * 8, 2 * GIB + 8 * 1543, 3 * GIB - 1000};
        int[] len = {200, 5000, 1000};
        long[] nodes = new long[keys.length];
        try (Region r = Region.open(src)) {
            DataMapping m = r.dataForTest();
            for (int i = 0; i < keys.length; i++) {
                nodes[i] = m.seek(Env.utf8(keys[i]), new long[] {m.stepLimit});
                assertEquals(keys[i], Env.str(m.bytes(m.keyPair(nodes[i]))));
            }
        }
        List<byte[]> values = new ArrayList<>();
        try (FileChannel ch = FileChannel.open(big, StandardOpenOption.WRITE)) {
            ch.truncate(3 * GIB); // no-op: truncate only shrinks
            ch.write(ByteBuffer.allocate(1), 3 * GIB - 1); // grows it, sparsely
            assertEquals(3 * GIB, ch.size());
            for (int i = 0; i < keys.length; i++) {
                byte[] v = new byte[len[i]];
                for (int j = 0; j < v.length; j++) {
                    v[j] = (byte) (j * 31 + i);
                }
                values.add(v);
                ch.write(ByteBuffer.wrap(v), at[i]);
                long pair = at[i] | (long) len[i] << Layout.PAIR_OFFSET_BITS;
                ch.write(le(pair), nodes[i] + Layout.N_VALUE);
            }
            ch.write(le(3 * GIB), Layout.H_FILE_SIZE);
        }
        try (Region r = Region.open(big)) {
            assertEquals(3 * GIB, r.dataForTest().size);
            for (int i = 0; i < keys.length; i++) {
                assertArrayEquals(values.get(i), r.get(keys[i]), keys[i]);
                assertArrayEquals(values.get(i), r.getSkiplist(Env.utf8(keys[i])), keys[i]);
            }
            List<String> seen = new ArrayList<>();
            r.scan("b", (k, v) -> seen.add(Env.str(k) + "=" + v.length));
            assertEquals(List.of("b=5000", "ba=1000", "big/1MiB=1048576", "bin/all=256", "bin/zeros=64"), seen);
            assertArrayEquals(Env.utf8("value of abc"), r.get("abc"));
        }
        // A value pair that reaches past the end is refused, not read.
        try (FileChannel ch = FileChannel.open(big, StandardOpenOption.WRITE)) {
            ch.write(le((3 * GIB - 8) | 16L << Layout.PAIR_OFFSET_BITS), nodes[0] + Layout.N_VALUE);
        }
        try (Region r = Region.open(big)) {
            ShmregException e = org.junit.jupiter.api.Assertions.assertThrows(ShmregException.class, () -> r.get("a"));
            assertEquals(ShmregException.Reason.CORRUPT, e.reason());
            assertTrue(e.getMessage().contains("out of bounds"), e.getMessage());
        }
        Files.delete(big);
    }

    static ByteBuffer le(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, v);
    }
}
