package io.shmreg;

import static io.shmreg.Layout.*;

import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;

/**
 * One data file, mapped read-only, with every access bounds-checked.
 *
 * <p>A Java buffer holds at most 2^31 - 1 bytes, and a region may hold up
 * to 2^40. The file is therefore mapped in chunks: chunk i starts at i * 1
 * GiB and runs on for {@link #OVERLAP} bytes past the next chunk's start
 * (or to the end of the file). Nothing the reader touches in one access is
 * longer than a key or a value (under 16 MiB) or a node's tower (at most
 * 24 + 8 * 64 bytes), so any access that starts in chunk i lies wholly
 * inside chunk i's buffer. A file under 1 GiB + OVERLAP is one chunk.
 *
 * <p>Every offset and length read from the file is checked against
 * file_size before it is used (see {@link #span}, {@link #node}); a bad one
 * throws {@link ShmregException.Reason#CORRUPT}, never an
 * IndexOutOfBoundsException. What cannot be checked: a file truncated
 * under the mapping (the writer never does that; it replaces files by
 * rename) faults with an InternalError from the JVM.
 */
final class DataMapping {
    static final int CHUNK_SHIFT = 30;
    static final long CHUNK_MASK = (1L << CHUNK_SHIFT) - 1;
    static final long OVERLAP = (1L << 24) + 4096;

    private static final VarHandle LONGS = MethodHandles.byteBufferViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    final Path path;
    final long size; // header.file_size: the bound every offset is checked against
    final int maxHeight;
    final long head;
    final long stepLimit; // more links than any walk of a sane file follows
    private final ByteBuffer[] chunks;

    private DataMapping(Path path, long size, ByteBuffer[] chunks, int maxHeight, long head) {
        this.path = path;
        this.size = size;
        this.chunks = chunks;
        this.maxHeight = maxHeight;
        this.head = head;
        // A node takes at least 32 bytes and a walk visits a node once per
        // level, so a longer walk means a cycle.
        this.stepLimit = size / 32 + maxHeight;
    }

    /** Maps the data file at path read-only and checks its header. */
    static DataMapping open(Path path) {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long real = ch.size();
            ByteBuffer h = ByteBuffer.allocate(HEADER_SIZE).order(ByteOrder.LITTLE_ENDIAN);
            while (h.hasRemaining() && ch.read(h, h.position()) > 0) {
                // read() may return short
            }
            int got = h.position();
            // A stray short file is "not shmreg" rather than "cut short"; the
            // header's fields count only once magic and version match.
            if (got > 0 && !Arrays.equals(h.array(), 0, Math.min(got, 8), MAGIC, 0, Math.min(got, 8))) {
                throw new ShmregException(ShmregException.Reason.NOT_A_REGION, path + " is not a shmreg region (bad magic)");
            }
            if (got < H_HEADER_SIZE) {
                throw new ShmregException(ShmregException.Reason.TRUNCATED, path + " is " + real + " bytes, too short for a region header");
            }
            int version = h.getInt(H_VERSION);
            if (version < OLDEST_LAYOUT_VERSION || version > LAYOUT_VERSION) {
                throw new ShmregException(ShmregException.Reason.LAYOUT_VERSION,
                        path + " has layout version " + Integer.toUnsignedString(version) + ", this reader reads versions "
                                + OLDEST_LAYOUT_VERSION + " to " + LAYOUT_VERSION);
            }
            long fileSize = h.getLong(H_FILE_SIZE);
            if (got < HEADER_SIZE || Long.compareUnsigned(real, fileSize) < 0) {
                throw new ShmregException(ShmregException.Reason.TRUNCATED,
                        path + " is " + real + " bytes, its header says " + Long.toUnsignedString(fileSize));
            }
            if (Long.compareUnsigned(fileSize, HEADER_SIZE) < 0 || Long.compareUnsigned(fileSize, MAX_FILE_SIZE) > 0) {
                throw corrupt(path, "file_size " + Long.toUnsignedString(fileSize) + " out of range");
            }
            int n = (int) ((fileSize - 1) >>> CHUNK_SHIFT) + 1;
            ByteBuffer[] chunks = new ByteBuffer[n];
            for (int i = 0; i < n; i++) {
                long start = (long) i << CHUNK_SHIFT;
                long len = Math.min(fileSize - start, (1L << CHUNK_SHIFT) + OVERLAP);
                MappedByteBuffer b = ch.map(FileChannel.MapMode.READ_ONLY, start, len);
                chunks[i] = b.order(ByteOrder.LITTLE_ENDIAN);
            }
            DataMapping m = validate(path, fileSize, chunks);
            if (m == null) {
                unmap(chunks);
                throw corrupt(path, "bad header (sizes, max_height or head node)");
            }
            return m;
        } catch (NoSuchFileException e) {
            throw new ShmregException(ShmregException.Reason.NO_REGION, "no region at " + path + " (no such file)", e);
        } catch (IOException e) {
            throw new ShmregException(ShmregException.Reason.IO, path + ": " + e, e);
        }
    }

    /** Checks the header through the mapping (the copy only chose the size). */
    private static DataMapping validate(Path path, long fileSize, ByteBuffer[] chunks) {
        ByteBuffer b = chunks[0];
        if (b.getInt(H_HEADER_SIZE) != HEADER_SIZE || b.getLong(H_POOL_START) != HEADER_SIZE || b.getLong(H_FILE_SIZE) != fileSize) {
            return null;
        }
        int mh = b.getInt(H_MAX_HEIGHT);
        if (mh <= 0 || mh > MAX_HEIGHT_LIMIT) {
            return null;
        }
        DataMapping m = new DataMapping(path, fileSize, chunks, mh, b.getLong(H_HEAD));
        if (!m.isNode(m.head) || m.getInt(m.head + N_HEIGHT) != mh) {
            return null;
        }
        return m;
    }

    static ShmregException corrupt(Path path, String what) {
        return new ShmregException(ShmregException.Reason.CORRUPT, path + ": corrupt region: " + what);
    }

    ShmregException corrupt(String what) {
        return corrupt(path, what);
    }

    // ---- raw accesses: the caller has checked [off, off+len) lies in the file ----

    private ByteBuffer chunk(long off) {
        return chunks[(int) (off >>> CHUNK_SHIFT)];
    }

    long getLong(long off) {
        return chunk(off).getLong((int) (off & CHUNK_MASK));
    }

    int getInt(long off) {
        return chunk(off).getInt((int) (off & CHUNK_MASK));
    }

    byte getByte(long off) {
        return chunk(off).get((int) (off & CHUNK_MASK));
    }

    /** An acquire load of the 8-aligned atomic word at off. */
    long getAcquire(long off) {
        return (long) LONGS.getAcquire(chunk(off), (int) (off & CHUNK_MASK));
    }

    void copy(long off, byte[] dst, int dstOff, int len) {
        chunk(off).get((int) (off & CHUNK_MASK), dst, dstOff, len);
    }

    byte[] copy(long off, int len) {
        byte[] b = new byte[len];
        if (len > 0) {
            copy(off, b, 0, len);
        }
        return b;
    }

    // ---- checked accesses ----

    /** Whether [off, off+len) lies in the file (a zero-length span anywhere up to the end will do). */
    boolean isSpan(long off, long len) {
        return off >= 0 && off <= size && len >= 0 && len <= size - off && (off >= HEADER_SIZE || len == 0);
    }

    long state() {
        return getAcquire(H_STATE);
    }

    boolean superseded() {
        return (state() & STATE_SUPERSEDED) != 0;
    }

    long generation() {
        return getAcquire(H_GENERATION);
    }

    /**
     * A sequentially consistent load of generation: Begin's reload, which
     * must not be ordered before its epoch store (as the C reader's
     * seq_cst load).
     */
    long generationVolatile() {
        return (long) LONGS.getVolatile(chunks[0], H_GENERATION);
    }

    /** Whether a node whose whole tower lies in the file is at off. */
    boolean isNode(long off) {
        if (off < HEADER_SIZE || (off & 7) != 0 || off > size - NODE_SIZE) {
            return false;
        }
        int h = getInt(off + N_HEIGHT);
        return h > 0 && h <= maxHeight && NODE_SIZE + 8L * h <= size - off;
    }

    /** The node at off, checked; its height. */
    int node(long off) {
        if (!isNode(off)) {
            throw corrupt("bad node at offset " + off);
        }
        return getInt(off + N_HEIGHT);
    }

    /** The key pair word of the (checked) node at off, itself checked. */
    long keyPair(long node) {
        long p = getLong(node + N_KEY);
        if (!isSpan(p & PAIR_OFFSET_MASK, p >>> PAIR_OFFSET_BITS)) {
            throw corrupt("key of node " + node + " out of bounds");
        }
        return p;
    }

    /** The value pair word of the (checked) node at off (acquire), checked; 0 = absent. */
    long valuePair(long node) {
        long p = getAcquire(node + N_VALUE);
        if (p != 0 && !isSpan(p & PAIR_OFFSET_MASK, p >>> PAIR_OFFSET_BITS)) {
            throw corrupt("value of node " + node + " out of bounds");
        }
        return p;
    }

    byte[] bytes(long pair) {
        return copy(pair & PAIR_OFFSET_MASK, (int) (pair >>> PAIR_OFFSET_BITS));
    }

    /** memcmp-then-length order of the key bytes at pair against k[0..klen). */
    int compare(long pair, byte[] k, int klen) {
        long off = pair & PAIR_OFFSET_MASK;
        int len = (int) (pair >>> PAIR_OFFSET_BITS);
        int n = Math.min(len, klen);
        ByteBuffer b = chunk(off);
        int base = (int) (off & CHUNK_MASK);
        for (int i = 0; i < n; i++) {
            int c = (b.get(base + i) & 0xFF) - (k[i] & 0xFF);
            if (c != 0) {
                return c;
            }
        }
        return Integer.compare(len, klen);
    }

    boolean keyEquals(long pair, byte[] k) {
        int len = (int) (pair >>> PAIR_OFFSET_BITS);
        if (len != k.length) {
            return false;
        }
        long off = pair & PAIR_OFFSET_MASK;
        ByteBuffer b = chunk(off);
        int base = (int) (off & CHUNK_MASK);
        int i = 0;
        for (; i + 8 <= len; i += 8) {
            if (b.getLong(base + i) != (long) KEY_LONGS.get(k, i)) {
                return false;
            }
        }
        for (; i < len; i++) {
            if (b.get(base + i) != k[i]) {
                return false;
            }
        }
        return true;
    }

    private static final VarHandle KEY_LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    /** Whether the key bytes at pair start with p[0..plen). */
    boolean hasPrefix(long pair, byte[] p) {
        int len = (int) (pair >>> PAIR_OFFSET_BITS);
        if (len < p.length) {
            return false;
        }
        long off = pair & PAIR_OFFSET_MASK;
        ByteBuffer b = chunk(off);
        int base = (int) (off & CHUNK_MASK);
        for (int i = 0; i < p.length; i++) {
            if (b.get(base + i) != p[i]) {
                return false;
            }
        }
        return true;
    }

    // ---- lookups (inside a read section) ----

    /** The value of key through the index (the skiplist if none is published), or null. */
    byte[] get(byte[] key) {
        long t = getAcquire(H_INDEX);
        if (t == 0) {
            return getSkiplist(key);
        }
        if ((t & 7) != 0 || !isSpan(t, I_SLOTS)) {
            throw corrupt("index offset " + t + " out of bounds");
        }
        long cap = getLong(t + I_CAPACITY);
        if (cap <= 0 || (cap & (cap - 1)) != 0 || cap > (size - t - I_SLOTS) / 8) {
            throw corrupt("index capacity " + Long.toUnsignedString(cap) + " out of bounds");
        }
        long hash = Hash.of(key);
        long slots = t + I_SLOTS;
        // The writer keeps used + tombstones <= capacity/2, so an empty slot
        // ends every probe; not finding one within capacity is corruption.
        for (long i = 0; i < cap; i++) {
            long s = getAcquire(slots + 8 * ((hash + i) & (cap - 1)));
            if (s == INDEX_EMPTY) {
                return null;
            }
            if (s == INDEX_TOMBSTONE || ((s ^ hash) >>> PAIR_OFFSET_BITS) != 0) {
                continue; // a tombstone, or another key's tag
            }
            long n = s & PAIR_OFFSET_MASK;
            node(n);
            if (!keyEquals(keyPair(n), key)) {
                continue;
            }
            // Value 0: deleted and not yet tombstoned, or inserted and not yet
            // published; a newer node for the key may sit further on.
            long v = valuePair(n);
            if (v != 0) {
                return bytes(v);
            }
        }
        throw corrupt("index probe found no empty slot");
    }

    /** The value of key through the skiplist alone, or null. */
    byte[] getSkiplist(byte[] key) {
        long[] steps = {stepLimit};
        long n = seek(key, steps);
        // The first live node with key as a prefix is key itself or longer.
        n = walk(n, key, steps);
        if (n == 0) {
            return null;
        }
        long k = keyPair(n);
        long v = valuePair(n); // load once: 0 if deleted since walk looked
        return (k >>> PAIR_OFFSET_BITS) == key.length && v != 0 ? bytes(v) : null;
    }

    /**
     * Descends from the head to the first node on level 0 whose key is >=
     * key[0..klen) and returns its offset (0: the end of the list).
     */
    long seek(byte[] key, long[] steps) {
        long x = head;
        long off = 0;
        for (int level = maxHeight - 1; level >= 0; level--) {
            while ((off = getAcquire(x + N_NEXT + 8L * level)) != 0) {
                // A node linked on this level must be at least this tall.
                if (steps[0]-- <= 0 || node(off) <= level) {
                    throw corrupt("skiplist link to " + off + " at level " + level + " is bad or cycles");
                }
                if (compare(keyPair(off), key, key.length) >= 0) {
                    break;
                }
                x = off;
            }
        }
        return off;
    }

    /**
     * From the node at off (inclusive) on level 0, the first node whose key
     * starts with prefix and whose value is present; 0 at the first key
     * without the prefix or the end.
     */
    long walk(long off, byte[] prefix, long[] steps) {
        for (; off != 0; off = getAcquire(off + N_NEXT)) {
            if (steps[0]-- <= 0) {
                throw corrupt("skiplist walk does not end");
            }
            node(off);
            if (!hasPrefix(keyPair(off), prefix)) {
                return 0;
            }
            if (valuePair(off) != 0) {
                return off;
            }
        }
        return 0;
    }

    /** The next node on level 0 after the (checked) node at off. */
    long next(long off) {
        return getAcquire(off + N_NEXT);
    }

    // ---- unmapping ----

    void unmap() {
        unmap(chunks);
    }

    private static final Object UNSAFE;
    private static final Method INVOKE_CLEANER;

    static {
        Object u = null;
        Method m = null;
        try {
            Class<?> c = Class.forName("sun.misc.Unsafe");
            Field f = c.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            u = f.get(null);
            m = c.getMethod("invokeCleaner", ByteBuffer.class);
        } catch (ReflectiveOperationException | RuntimeException e) {
            u = null;
            m = null;
        }
        UNSAFE = u;
        INVOKE_CLEANER = m;
    }

    /**
     * Unmaps the buffers now (sun.misc.Unsafe.invokeCleaner) instead of
     * when the garbage collector finds them, so a superseded file's memory
     * goes back at once. The caller guarantees no access follows: a Region
     * runs one operation at a time and never hands out a buffer. Without
     * jdk.unsupported the collector unmaps them later.
     */
    private static void unmap(ByteBuffer[] chunks) {
        if (INVOKE_CLEANER == null) {
            return;
        }
        for (ByteBuffer b : chunks) {
            try {
                INVOKE_CLEANER.invoke(UNSAFE, b);
            } catch (ReflectiveOperationException | RuntimeException e) {
                return;
            }
        }
    }
}
