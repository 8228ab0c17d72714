package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;
import org.junit.jupiter.api.Test;

class HashTest {
    /** examples/c/testdata/hash_vectors.txt: hex hash, a tab, the key. The C reader checks the same file. */
    @Test
    void matchesTheVectors() throws Exception {
        List<String> lines = Files.readAllLines(Env.repo().resolve("examples/c/testdata/hash_vectors.txt"), StandardCharsets.UTF_8);
        int n = 0;
        for (String line : lines) {
            if (line.isEmpty()) {
                continue;
            }
            int tab = line.indexOf('\t');
            long want = Long.parseUnsignedLong(line.substring(0, tab), 16);
            String key = line.substring(tab + 1);
            assertEquals(want, Hash.of(key.getBytes(StandardCharsets.UTF_8)), "hash of \"" + key + "\"");
            n++;
        }
        assertTrue(n >= 7, "only " + n + " vectors");
    }
}
