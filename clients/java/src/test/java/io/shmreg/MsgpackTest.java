package io.shmreg;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The instance decoder, on hand-made encodings and on mangled real ones. */
class MsgpackTest {
    /** A tiny msgpack writer for hand-made values. */
    static final class W {
        final ByteArrayOutputStream b = new ByteArrayOutputStream();

        W raw(int... bytes) {
            for (int x : bytes) {
                b.write(x);
            }
            return this;
        }

        W str(String s) {
            byte[] u = s.getBytes(StandardCharsets.UTF_8);
            if (u.length < 32) {
                raw(0xa0 | u.length);
            } else {
                raw(0xd9, u.length);
            }
            b.writeBytes(u);
            return this;
        }

        W map(int n) {
            return raw(0x80 | n);
        }

        byte[] bytes() {
            return b.toByteArray();
        }
    }

    static W minimal(int fields) {
        return new W().map(fields).str("service").str("s").str("id").str("i");
    }

    static ShmregException.Reason reasonOf(byte[] b) {
        return assertThrows(ShmregException.class, () -> Instance.decode(b)).reason();
    }

    @Test
    void everyIntegerWidthAndUnknownFieldsSkipped() {
        byte[] b = new W().raw(0xde, 0, 12) // map16
                .str("service").raw(0xda, 0, 3).raw('w', 'e', 'b') // str16
                .str("id").raw(0xdb, 0, 0, 0, 2).raw('i', '1') // str32
                .str("address").str("10.1.2.3")
                .str("port").raw(0xcd, 0x1f, 0x90) // uint16 8080
                .str("weight").raw(0xd0, 0xfe) // int8 -2
                .str("ttl").raw(0xcf, 0, 0, 0, 2, 0x54, 0x0b, 0xe4, 0) // uint64 10 s in ns
                .str("health").str("warning")
                .str("metadata").raw(0x82).str("k").str("v").str("empty").raw(0xc0)
                .str("future").raw(0x93, 0xca, 0, 0, 0, 0, 0xc3, 0xc4, 2, 1, 2) // array of float, bool, bin
                .str("ext").raw(0xd6, 1, 1, 2, 3, 4) // fixext 4
                .str("more").raw(0x81, 0x01, 0x92, 0xc2, 0xe0) // a map with an int key
                .str("x").raw(0xcb, 0, 0, 0, 0, 0, 0, 0, 0) // float64
                .bytes();
        Instance in = Instance.decode(b);
        assertEquals(new Instance("web", "i1", "10.1.2.3", 8080, -2, Map.of("k", "v", "empty", ""), "warning", Duration.ofSeconds(10)), in);
    }

    @Test
    void integerForms() {
        int[][] forms = {{0x05}, {0xcc, 5}, {0xcd, 0, 5}, {0xce, 0, 0, 0, 5}, {0xcf, 0, 0, 0, 0, 0, 0, 0, 5},
            {0xd0, 5}, {0xd1, 0, 5}, {0xd2, 0, 0, 0, 5}, {0xd3, 0, 0, 0, 0, 0, 0, 0, 5}};
        for (int[] f : forms) {
            byte[] b = minimal(3).str("port").raw(f).bytes();
            assertEquals(5, Instance.decode(b).port(), Arrays.toString(f));
        }
        assertEquals(-1, Instance.decode(minimal(3).str("weight").raw(0xff).bytes()).weight());
        assertEquals(-1000, Instance.decode(minimal(3).str("weight").raw(0xd1, 0xfc, 0x18).bytes()).weight());
        // A nil metadata is an empty map; absent fields are empty.
        Instance in = Instance.decode(minimal(3).str("metadata").raw(0xc0).bytes());
        assertEquals(new Instance("s", "i", "", 0, 0, Map.of(), "", Duration.ZERO), in);
    }

    @Test
    void malformed() {
        List<byte[]> bad = List.of(
                new byte[0],
                new byte[] {(byte) 0xc1},
                new W().raw(0x92, 1, 2).bytes(), // an array, not a map
                new W().map(15).bytes(), // 15 entries, none there
                new W().raw(0xdf, 0xff, 0xff, 0xff, 0xff).bytes(), // 2^32 - 1 entries
                new W().map(1).raw(0xdb, 0xff, 0xff, 0xff, 0xff).bytes(), // a key of 4 GiB
                minimal(2).raw(0).bytes(), // trailing byte
                new W().map(1).str("service").str("s").bytes(), // no id
                minimal(2).bytes().length == 0 ? null : new W().map(2).str("service").str("").str("id").str("i").bytes(), // empty service
                minimal(3).str("port").raw(0xce, 0, 1, 0x11, 0x70).bytes(), // port 70000
                minimal(3).str("weight").raw(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).bytes(), // 2^64 - 1
                minimal(3).str("ttl").str("10s").bytes(), // a string where an integer belongs
                minimal(3).str("address").raw(0xa2, 0xc3, 0x28).bytes(), // not UTF-8
                minimal(3).raw(0x01).raw(0x01).bytes(), // an integer key
                minimal(3).str("metadata").raw(0x81, 0xa1, 'k', 0x01).bytes(), // a metadata value that is no string
                minimal(3).str("deep").raw(nested(100)).bytes(), // nested past the limit
                minimal(3).str("x").raw(0xdd, 0x7f, 0xff, 0xff, 0xff).bytes(), // array claiming 2^31 items
                minimal(3).str("x").raw(0xc9, 0xff, 0xff, 0xff, 0xf0, 1).bytes()); // ext32 past the end
        for (byte[] b : bad) {
            assertEquals(ShmregException.Reason.MALFORMED_VALUE, reasonOf(b), Region.hex(b));
        }
    }

    static int[] nested(int depth) {
        int[] a = new int[depth + 1];
        Arrays.fill(a, 0x91); // an array of one
        a[depth] = 0xc0;
        return a;
    }

    /**
     * A real instance value, mangled 50,000 ways: every decode returns an
     * instance or throws MALFORMED_VALUE, never anything else, and quickly.
     */
    @Test
    void fuzzMangledValues() throws Exception {
        byte[] real;
        try (Region r = Region.open(Env.fixture("fuzz"))) {
            real = r.get("svc/orders/orders-1");
        }
        assertEquals("orders-1", Instance.decode(real).id());
        Random rnd = new Random(16);
        int[] outcome = new int[2];
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            for (int i = 0; i < 50_000; i++) {
                byte[] b = mangle(real, rnd);
                try {
                    Instance.decode(b);
                    outcome[0]++;
                } catch (ShmregException e) {
                    if (e.reason() != ShmregException.Reason.MALFORMED_VALUE) {
                        fail("reason " + e.reason() + " for " + Region.hex(b), e);
                    }
                    outcome[1]++;
                } catch (RuntimeException | StackOverflowError e) {
                    fail("decode threw " + e + " for " + Region.hex(b), e);
                }
            }
        });
        assertTrue(outcome[0] > 100 && outcome[1] > 100, "decoded " + outcome[0] + ", refused " + outcome[1]);
    }

    static byte[] mangle(byte[] real, Random rnd) {
        byte[] b = real.clone();
        switch (rnd.nextInt(5)) {
            case 0 -> b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
            case 1 -> b = Arrays.copyOf(b, rnd.nextInt(b.length));
            case 2 -> {
                for (int j = rnd.nextInt(8); j >= 0; j--) {
                    b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
                }
            }
            case 3 -> {
                int at = rnd.nextInt(b.length);
                byte[] c = new byte[b.length + 1 + rnd.nextInt(8)];
                System.arraycopy(b, 0, c, 0, at);
                for (int j = at; j < c.length - (b.length - at); j++) {
                    c[j] = (byte) rnd.nextInt(256);
                }
                System.arraycopy(b, at, c, c.length - (b.length - at), b.length - at);
                b = c;
            }
            default -> {
                b = new byte[rnd.nextInt(64)];
                rnd.nextBytes(b);
                if (b.length > 0) {
                    b[0] = (byte) (0x80 | rnd.nextInt(16));
                }
            }
        }
        return b;
    }
}
