package io.shmreg;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/** The 64-bit key hash of docs/LAYOUT.md, the one the writer's index uses. */
public final class Hash {
    private Hash() {
    }

    private static final long K1 = 0x9E3779B97F4A7C15L;
    private static final long K2 = 0xC2B2AE3D27D4EB4FL;
    private static final long K3 = 0xFF51AFD7ED558CCDL;
    private static final long K4 = 0xC4CEB9FE1A85EC53L;
    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    /** The hash of key (all of it). */
    public static long of(byte[] key) {
        int len = key.length;
        long h = K1 ^ (len * K2);
        int i = 0;
        for (; i + 8 <= len; i += 8) {
            h = (h ^ (long) LONGS.get(key, i)) * K2;
            h ^= h >>> 29;
        }
        if (i < len) {
            long c;
            if (len >= 8) {
                // The last 8 bytes, shifted down past the ones already hashed:
                // the remaining bytes, little-endian, zero-extended.
                c = (long) LONGS.get(key, len - 8) >>> (8 * (8 - (len - i)));
            } else {
                c = 0;
                for (int j = 0; i + j < len; j++) {
                    c |= (key[i + j] & 0xFFL) << (8 * j);
                }
            }
            h = (h ^ c) * K2;
            h ^= h >>> 29;
        }
        h ^= h >>> 33;
        h *= K3;
        h ^= h >>> 33;
        h *= K4;
        h ^= h >>> 33;
        return h;
    }
}
