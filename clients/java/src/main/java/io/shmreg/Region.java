package io.shmreg;

import static io.shmreg.Layout.*;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BiConsumer;

/**
 * A shmreg region, read straight from shared memory: no socket, no system
 * call and no lock on the lookup path.
 *
 * <p>The data file is mapped read-only (nothing this class does can damage
 * the region); the control file is mapped read-write, because every read
 * announces itself in a reader slot there. Opening claims one slot (a
 * byte-range lock, see docs/LAYOUT.md "Reader slots"); {@link #close()}
 * gives it back, and a process that dies gives it back with its locks.
 *
 * <p><b>Threads.</b> A Region is one reader: one slot, one read section at
 * a time. Its methods are synchronized, so it may be shared between
 * threads, which then take turns; for lookups in parallel give each thread
 * its own Region (they share the control file's descriptor, see
 * ControlFile).
 *
 * <p><b>What is safe to keep.</b> Every byte[] returned (by get, by scan's
 * consumer, in an Instance) is a copy, yours to keep after the read and
 * after close. Nothing returned points into the mapping.
 *
 * <p><b>Rebuilds.</b> When the writer rebuilds the region into a new file
 * (it grew or was compacted) the old file is marked SUPERSEDED; the next
 * operation maps the new file at the same path and retries, keeping the
 * control file and the slot.
 *
 * <p><b>Read lease.</b> A read section that outlives the writer's read lease
 * (2 s by default) is forced: what it read may have been reused, so it is
 * discarded and read again (up to {@value #MAX_ATTEMPTS} times, then
 * {@link ShmregException.Reason#EVICTED}). This class keeps sections short:
 * one lookup, or one chunk of a scan, never a caller's callback.
 */
public final class Region implements AutoCloseable {
    /** How many times one operation is retried after an eviction or a rebuild. */
    static final int MAX_ATTEMPTS = 64;
    /** A scan copies at most this many entries, or about this many bytes, per read section. */
    static final int SCAN_CHUNK_ENTRIES = 256;
    static final int SCAN_CHUNK_BYTES = 1 << 20;

    private final Path path;
    private ControlFile ctl;
    private ControlFile.Slot slot;
    private DataMapping data;
    private boolean inSection;
    private int lastSeq; // the notify_seq await() compares against
    int reopens; // files this Region moved to after a rebuild (tests)
    int evictions; // read sections discarded because the writer forced them (tests)

    private Region(Path path, ControlFile ctl, ControlFile.Slot slot, DataMapping data) {
        this.path = path;
        this.ctl = ctl;
        this.slot = slot;
        this.data = data;
        this.lastSeq = ctl.notifySeq();
    }

    /**
     * Opens the region whose data file is at path (its control file is
     * path + ".ctl") and claims a reader slot.
     *
     * @throws ShmregException NO_REGION if either file is missing,
     *         NOT_A_REGION, LAYOUT_VERSION, TRUNCATED or CORRUPT if a file is
     *         not a region this reader can read, NO_SLOTS if every slot is
     *         held by a live reader
     */
    public static Region open(Path path) {
        DataMapping data = DataMapping.open(path);
        ControlFile ctl;
        try {
            ctl = ControlFile.acquire(Paths.get(path.toString() + ".ctl"));
        } catch (RuntimeException e) {
            data.unmap();
            throw e;
        }
        try {
            return new Region(path, ctl, ctl.claim(), data);
        } catch (RuntimeException e) {
            ctl.release();
            data.unmap();
            throw e;
        }
    }

    /** {@link #open(Path)} of a path given as a string. */
    public static Region open(String path) {
        return open(Paths.get(path));
    }

    /** The data file's path. */
    public Path path() {
        return path;
    }

    /** The index of the reader slot this Region holds in the control file. */
    public synchronized int slotIndex() {
        ensureOpen();
        return slot.index;
    }

    // ---- read sections ----

    /**
     * Begin: publish the current generation as this slot's epoch, with a
     * sequentially consistent store (a JVM cannot register for membarrier,
     * so it is an "unregistered reader" of docs/LAYOUT.md), and load the
     * generation again until it stands still.
     */
    void begin() {
        ensureOpen();
        if (inSection) {
            throw new IllegalStateException("shmreg: nested read section");
        }
        if (ctl.owner(slot.index) != slot.token || !ctl.isOpen()) {
            reclaim();
        }
        long g = data.generation();
        for (;;) {
            ctl.storeEpochVolatile(slot.index, g);
            long again = data.generationVolatile();
            if (again == g) {
                break;
            }
            g = again;
        }
        inSection = true;
    }

    /**
     * End: returns false if the writer forced the slot during the section
     * (discard what it read). The acquire fence keeps every load of the
     * section before the load of the epoch; the release store keeps them
     * before the 0 the writer will see.
     */
    boolean end() {
        inSection = false;
        java.lang.invoke.VarHandle.acquireFence();
        long e = ctl.epochOpaque(slot.index);
        ctl.storeEpochRelease(slot.index, 0L);
        return (e & EPOCH_FORCED) == 0;
    }

    /**
     * Our slot is no longer ours: the slot lock was dropped (something in
     * this JVM closed a descriptor of the control file) and the writer
     * reaped it. Claim another.
     */
    private void reclaim() {
        ControlFile.Slot old = slot;
        if (!ctl.isOpen()) {
            ControlFile fresh = ControlFile.acquire(ctl.path);
            ctl.release();
            ctl = fresh;
        } else {
            ctl.forget(old);
        }
        slot = null;
        slot = ctl.claim();
    }

    /** Maps the data file at path again, after the old one was superseded. */
    private void reopen() {
        DataMapping fresh = DataMapping.open(path);
        DataMapping old = data;
        data = fresh;
        old.unmap();
        reopens++;
    }

    /** One operation inside a read section, retried after a rebuild or an eviction. */
    private interface Read<T> {
        T run(DataMapping m);
    }

    private <T> T read(Read<T> op) {
        for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
            begin();
            T v;
            boolean superseded;
            try {
                superseded = data.superseded();
                v = superseded ? null : op.run(data);
            } catch (RuntimeException | Error e) {
                end();
                throw e;
            }
            if (!end()) {
                evictions++;
                continue; // evicted: what it read may have been reused
            }
            if (superseded) {
                reopen();
                continue;
            }
            return v;
        }
        throw new ShmregException(ShmregException.Reason.EVICTED,
                path + ": a read was evicted or overtaken by rebuilds " + MAX_ATTEMPTS + " times in a row");
    }

    // ---- lookups ----

    /** A copy of key's value, or null if the key is absent. */
    public synchronized byte[] get(byte[] key) {
        // read(m -> m.get(key)), spelled out: the hot path, kept free of a
        // lambda so that it compiles into one piece.
        for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
            begin();
            byte[] v;
            boolean superseded;
            try {
                superseded = data.superseded();
                v = superseded ? null : data.get(key);
            } catch (RuntimeException | Error e) {
                end();
                throw e;
            }
            if (!end()) {
                evictions++;
                continue;
            }
            if (superseded) {
                reopen();
                continue;
            }
            return v;
        }
        throw new ShmregException(ShmregException.Reason.EVICTED,
                path + ": a read was evicted or overtaken by rebuilds " + MAX_ATTEMPTS + " times in a row");
    }

    /** {@link #get(byte[])} of a UTF-8 key. */
    public byte[] get(String key) {
        return get(key.getBytes(StandardCharsets.UTF_8));
    }

    /** get through the skiplist alone (for tests and comparison). */
    synchronized byte[] getSkiplist(byte[] key) {
        return read(m -> m.getSkiplist(key));
    }

    /**
     * Calls fn with a copy of every live entry whose key starts with prefix,
     * in key order. Entries are copied in chunks, each inside one short read
     * section, and fn runs outside any section, so a slow fn holds nothing
     * back. Keys come strictly increasing, each at most once; every key
     * live throughout the scan is seen; keys written meanwhile may or may
     * not be. Use one region and no lock for a consistent snapshot of many
     * keys: there is none (compare {@link #generation()} before and after).
     */
    public void scan(byte[] prefix, BiConsumer<byte[], byte[]> fn) {
        byte[] after = null; // the last key delivered
        for (;;) {
            Chunk c = nextChunk(prefix, after);
            for (int i = 0; i + 1 < c.kv.size(); i += 2) {
                fn.accept(c.kv.get(i), c.kv.get(i + 1));
            }
            if (!c.more) {
                return;
            }
            after = c.kv.get(c.kv.size() - 2);
        }
    }

    /** {@link #scan(byte[], BiConsumer)} with a UTF-8 prefix. */
    public void scan(String prefix, BiConsumer<byte[], byte[]> fn) {
        scan(prefix.getBytes(StandardCharsets.UTF_8), fn);
    }

    /** Copied entries (key, value, key, value...); more: it stopped on its budget, not at the end. */
    private static final class Chunk {
        final List<byte[]> kv = new ArrayList<>();
        boolean more;
    }

    /**
     * Copies, inside one read section, the next entries under prefix whose
     * keys come after the key after (from the first if null).
     */
    private synchronized Chunk nextChunk(byte[] prefix, byte[] after) {
        return read(m -> {
            Chunk c = new Chunk();
            long[] steps = {m.stepLimit};
            long n;
            if (after == null) {
                n = m.seek(prefix, steps);
            } else {
                n = m.seek(after, steps);
                // Skip the key delivered last (and any other node of it).
                while (n != 0) {
                    if (steps[0]-- <= 0) {
                        throw m.corrupt("skiplist walk does not end");
                    }
                    m.node(n);
                    if (m.compare(m.keyPair(n), after, after.length) > 0) {
                        break;
                    }
                    n = m.next(n);
                }
            }
            long bytes = 0;
            byte[] prev = after;
            for (;;) {
                n = m.walk(n, prefix, steps);
                if (n == 0) {
                    return c;
                }
                long v = m.valuePair(n); // load once: it may have changed since walk looked
                if (v == 0) {
                    n = m.next(n); // deleted meanwhile
                    continue;
                }
                byte[] key = m.bytes(m.keyPair(n));
                byte[] val = m.bytes(v);
                // Keys must increase: in a sane list they do, and a scan
                // that goes on over many sections ends only because they do.
                if (prev != null && Arrays.compareUnsigned(key, prev) <= 0) {
                    throw m.corrupt("skiplist keys out of order at node " + n);
                }
                prev = key;
                c.kv.add(key);
                c.kv.add(val);
                bytes += key.length + val.length;
                if (c.kv.size() >= 2 * SCAN_CHUNK_ENTRIES || bytes >= SCAN_CHUNK_BYTES) {
                    c.more = true;
                    return c;
                }
                n = m.next(n);
            }
        });
    }

    /**
     * The instances of service: the msgpack values under svc/SERVICE/, in
     * key order. A value that is not an instance (see
     * {@link Instance#decode(byte[])}) is skipped; so is a key whose id
     * holds a '/'.
     */
    public List<Instance> instances(String service) {
        if (service.isEmpty() || service.indexOf('/') >= 0) {
            throw new IllegalArgumentException("shmreg: bad service name " + service);
        }
        byte[] prefix = ("svc/" + service + "/").getBytes(StandardCharsets.UTF_8);
        List<Instance> out = new ArrayList<>();
        scan(prefix, (k, v) -> {
            for (int i = prefix.length; i < k.length; i++) {
                if (k[i] == '/') {
                    return;
                }
            }
            if (k.length == prefix.length) {
                return;
            }
            try {
                out.add(Instance.decode(v));
            } catch (ShmregException e) {
                // not an instance: skipped, as documented
            }
        });
        return out;
    }

    /**
     * The number of commits ever made to the region (it continues across
     * rebuilds). Needs no read section: the header is never reused.
     */
    public synchronized long generation() {
        ensureOpen();
        for (int attempt = 0; data.superseded() && attempt < MAX_ATTEMPTS; attempt++) {
            reopen();
        }
        return data.generation();
    }

    /** The number of live entries, as the writer last counted them (statistics). */
    public synchronized long size() {
        return read(m -> m.getLong(H_ENTRIES));
    }

    // ---- change notification ----

    /** The region's change sequence (notify_seq): +1 after every commit. */
    public synchronized int seq() {
        ensureOpen();
        return ctl.notifySeq();
    }

    /**
     * Waits until the change sequence differs from the value this Region last
     * saw (when it opened, or when the previous await returned), so that no
     * commit between two awaits is missed. Returns true if it changed, false
     * if timeout passed first.
     *
     * <p>The writer wakes waiters with a futex on notify_seq, which Java
     * cannot wait on; this polls the word instead, spinning briefly and then
     * sleeping with a backoff that doubles from 50 microseconds to at most
     * 1 ms. A commit is noticed within about 1 ms; an idle wait costs up to
     * 1,000 wake-ups a second.
     */
    public boolean await(Duration timeout) {
        int seen;
        synchronized (this) {
            ensureOpen();
            seen = lastSeq;
        }
        int now = awaitChange(seen, timeout);
        synchronized (this) {
            lastSeq = now;
        }
        return now != seen;
    }

    /**
     * Waits until the change sequence differs from seen (a value from
     * {@link #seq()}) or timeout passes; returns the sequence it found.
     */
    public int await(int seen, Duration timeout) {
        return awaitChange(seen, timeout);
    }

    private int awaitChange(int seen, Duration timeout) {
        ControlFile c;
        synchronized (this) {
            ensureOpen();
            c = ctl;
        }
        long deadline = System.nanoTime() + Math.max(0, timeout.toNanos());
        long sleep = 50_000;
        for (int spins = 0;; spins++) {
            int cur = c.notifySeq();
            if (cur != seen) {
                return cur;
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return cur;
            }
            if (spins < 100) {
                Thread.onSpinWait();
                continue;
            }
            LockSupport.parkNanos(Math.min(sleep, left));
            sleep = Math.min(sleep * 2, 1_000_000);
            if (Thread.interrupted()) {
                Thread.currentThread().interrupt();
                return c.notifySeq();
            }
            synchronized (this) {
                if (ctl == null) {
                    throw closed();
                }
            }
        }
    }

    // ---- closing ----

    private void ensureOpen() {
        if (ctl == null) {
            throw closed();
        }
    }

    private ShmregException closed() {
        return new ShmregException(ShmregException.Reason.CLOSED, path + ": region closed");
    }

    /** Gives the reader slot back and unmaps the files. Closing twice does nothing. */
    @Override
    public synchronized void close() {
        if (ctl == null) {
            return;
        }
        ctl.free(slot);
        ctl.release();
        ctl = null;
        slot = null;
        data.unmap();
        data = null;
    }

    // ---- for tests ----

    /** Begins a section and leaves it open (tests: a reader stuck inside a read). */
    synchronized void beginForTest() {
        begin();
    }

    /** Ends a section begun by beginForTest; false if it was evicted. */
    synchronized boolean endForTest() {
        return end();
    }

    ControlFile controlForTest() {
        return ctl;
    }

    synchronized DataMapping dataForTest() {
        return data;
    }

    synchronized ControlFile.Slot slotForTest() {
        return slot;
    }

    @Override
    public String toString() {
        return "Region[" + path + "]";
    }

    static String hex(byte[] b) {
        char[] out = new char[2 * b.length];
        final char[] digits = "0123456789abcdef".toCharArray();
        for (int i = 0; i < b.length; i++) {
            out[2 * i] = digits[(b[i] >> 4) & 15];
            out[2 * i + 1] = digits[b[i] & 15];
        }
        return new String(out);
    }
}
