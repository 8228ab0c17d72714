package io.shmreg;

import static io.shmreg.Layout.*;

import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A region's control file (NAME.ctl), open once per JVM and shared by
 * every {@link Region} on it.
 *
 * <p><b>Why shared.</b> A reader owns slot i while it holds an exclusive
 * lock on byte 8192 + 64*i; the writer tells a dead reader's slot from a
 * live one by asking the kernel whether anyone holds that lock
 * (F_OFD_GETLK). Java's {@code FileChannel.tryLock} takes a classic POSIX
 * record lock (fcntl F_SETLK), which OFD locks see and conflict with, so
 * the writer sees a Java reader's lock exactly as it sees a C or Go
 * reader's. But POSIX locks belong to the process, not to the descriptor,
 * and the kernel drops every one of them the moment the process closes
 * <i>any</i> descriptor of the file. So this class opens each control file
 * once per JVM (keyed by device and inode) and closes it only when the
 * last Region on it closes: closing one Region never drops another's lock.
 *
 * <p><b>What remains different from OFD locks</b> (see clients/java/README.md):
 * code elsewhere in the same JVM that opens and closes NAME.ctl (reading
 * it with Files.readAllBytes, say) drops this JVM's slot locks; the writer
 * then takes those slots for dead and reaps them. A Region notices at its
 * next read (its owner word is no longer its own, or the channel is
 * closed) and claims a fresh slot; a read already under way when the
 * slot was reaped is not protected. An interrupt that reaches a thread
 * inside tryLock or release closes the channel (FileChannel is
 * interruptible), with the same effect; the lock calls here clear the
 * interrupt flag around themselves to make that window tiny. A forked
 * child does not inherit POSIX locks (the JVM does not fork Java code).
 */
final class ControlFile {
    private static final VarHandle LONGS = MethodHandles.byteBufferViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle INTS = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);

    /** Open control files by file key; guarded by itself. */
    private static final Map<Object, ControlFile> OPEN = new HashMap<>();
    /** The low half of owner tokens: differs between the claims of this JVM. */
    private static final AtomicInteger NONCE = new AtomicInteger();

    final Path path;
    private final Object fileKey;
    private final FileChannel channel;
    private final ByteBuffer mem;
    final int slotCount;
    private int refs; // guarded by OPEN

    private ControlFile(Path path, Object fileKey, FileChannel channel, ByteBuffer mem, int slotCount) {
        this.path = path;
        this.fileKey = fileKey;
        this.channel = channel;
        this.mem = mem;
        this.slotCount = slotCount;
    }

    /** The control file at path, opened and mapped if this JVM has not yet. */
    static ControlFile acquire(Path path) {
        try {
            Object key = Files.readAttributes(path, BasicFileAttributes.class).fileKey();
            if (key == null) {
                key = path.toRealPath();
            }
            synchronized (OPEN) {
                ControlFile c = OPEN.get(key);
                if (c == null || !c.channel.isOpen()) {
                    // Never open a second descriptor of a file this JVM holds
                    // slot locks on: closing it would drop them.
                    c = open(path, key);
                    OPEN.put(key, c);
                }
                c.refs++;
                return c;
            }
        } catch (NoSuchFileException e) {
            throw new ShmregException(ShmregException.Reason.NO_REGION, "no region at " + regionOf(path) + " (no control file " + path + ")", e);
        } catch (IOException e) {
            throw new ShmregException(ShmregException.Reason.IO, path + ": " + e, e);
        }
    }

    private static String regionOf(Path ctl) {
        String s = ctl.toString();
        return s.endsWith(".ctl") ? s.substring(0, s.length() - 4) : s;
    }

    private static ControlFile open(Path path, Object key) throws IOException {
        FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
        try {
            long real = ch.size();
            ByteBuffer h = ByteBuffer.allocate(C_SLOTS).order(ByteOrder.LITTLE_ENDIAN);
            while (h.hasRemaining() && ch.read(h, h.position()) > 0) {
                // read() may return short
            }
            int got = h.position();
            if (got > 0 && !Arrays.equals(h.array(), 0, Math.min(got, 8), CTL_MAGIC, 0, Math.min(got, 8))) {
                throw new ShmregException(ShmregException.Reason.NOT_A_REGION, path + " is not a shmreg control file (bad magic)");
            }
            if (got < C_SLOT_COUNT) {
                throw new ShmregException(ShmregException.Reason.TRUNCATED, "control file " + path + " is " + real + " bytes");
            }
            int version = h.getInt(C_VERSION);
            if (version != CTL_VERSION) {
                throw new ShmregException(ShmregException.Reason.LAYOUT_VERSION,
                        "control file " + path + " has layout version " + Integer.toUnsignedString(version) + ", this reader reads " + CTL_VERSION);
            }
            // slot_count comes from a file every reader may write: believe
            // only as many slots as the file really holds.
            long count = Integer.toUnsignedLong(h.getInt(C_SLOT_COUNT));
            long need = C_SLOTS + SLOT_SIZE * count;
            if (got < C_SLOTS || real < need) {
                throw new ShmregException(ShmregException.Reason.TRUNCATED,
                        "control file " + path + " holds " + real + " bytes, too few for " + count + " slots");
            }
            if (count == 0) {
                throw new ShmregException(ShmregException.Reason.NO_SLOTS, "control file " + path + " has no reader slots");
            }
            if (need > Integer.MAX_VALUE) {
                throw new ShmregException(ShmregException.Reason.CORRUPT, "control file " + path + " claims " + count + " slots");
            }
            MappedByteBuffer m = ch.map(FileChannel.MapMode.READ_WRITE, 0, need);
            return new ControlFile(path, key, ch, m.order(ByteOrder.LITTLE_ENDIAN), (int) count);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /** Drops this Region's reference; the last one closes the file. */
    void release() {
        synchronized (OPEN) {
            if (--refs > 0) {
                return;
            }
            OPEN.remove(fileKey, this);
            try {
                channel.close();
            } catch (IOException e) {
                // nothing is left to release: the close dropped the locks
            }
        }
    }

    boolean isOpen() {
        return channel.isOpen();
    }

    /** Closes the descriptor under every Region on it, as an interrupt inside tryLock would (tests). */
    void closeChannelForTest() throws IOException {
        channel.close();
    }

    // ---- the change notification word ----

    int notifySeq() {
        return (int) INTS.getAcquire(mem, C_NOTIFY_SEQ);
    }

    long slotsForced() {
        return (long) LONGS.getAcquire(mem, C_SLOTS_FORCED);
    }

    long slotsReaped() {
        return (long) LONGS.getAcquire(mem, C_SLOTS_REAPED);
    }

    // ---- reader slots ----

    private static int slotOff(int i) {
        return C_SLOTS + SLOT_SIZE * i;
    }

    long owner(int i) {
        return (long) LONGS.getVolatile(mem, slotOff(i) + S_OWNER);
    }

    long epochOpaque(int i) {
        return (long) LONGS.getOpaque(mem, slotOff(i) + S_EPOCH);
    }

    /** Begin's store: sequentially consistent (this JVM cannot register for membarrier). */
    void storeEpochVolatile(int i, long e) {
        LONGS.setVolatile(mem, slotOff(i) + S_EPOCH, e);
    }

    /** End's store: release, so every load of the section precedes it. */
    void storeEpochRelease(int i, long e) {
        LONGS.setRelease(mem, slotOff(i) + S_EPOCH, e);
    }

    /** A claimed slot: its index, its lock and its owner token. */
    static final class Slot {
        final int index;
        final long token;
        final FileLock lock;

        Slot(int index, long token, FileLock lock) {
            this.index = index;
            this.token = token;
            this.lock = lock;
        }
    }

    /**
     * Claims a slot: scans in order, skipping a slot whose lock another
     * process (or another Region of this JVM) holds; locks the first
     * other one (free, or left by a dead reader), stores epoch 0, pid, and
     * the owner token last. A POSIX tryLock fails exactly where the
     * protocol's F_OFD_GETLK would have seen a live holder, so one try
     * stands for both of its steps.
     */
    Slot claim() {
        long pid = ProcessHandle.current().pid();
        synchronized (this) {
            for (int i = 0; i < slotCount; i++) {
                FileLock lk = tryLock(i);
                if (lk == null) {
                    continue;
                }
                int off = slotOff(i);
                LONGS.setVolatile(mem, off + S_EPOCH, 0L);
                mem.putInt(off + S_PID, (int) pid);
                long token = pid << 32 | (NONCE.incrementAndGet() & 0xFFFFFFFFL);
                LONGS.setVolatile(mem, off + S_OWNER, token);
                return new Slot(i, token, lk);
            }
        }
        throw new ShmregException(ShmregException.Reason.NO_SLOTS, "every reader slot of " + path + " is held by a live reader");
    }

    private FileLock tryLock(int i) {
        boolean interrupted = Thread.interrupted();
        try {
            return channel.tryLock(slotOff(i), 1, false);
        } catch (OverlappingFileLockException e) {
            return null; // another Region of this JVM holds it
        } catch (IOException e) {
            if (!channel.isOpen()) {
                throw new ShmregException(ShmregException.Reason.IO, "control file " + path + " was closed: " + e, e);
            }
            return null;
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Gives a slot back: epoch 0, owner 0 (only if still ours), unlock. */
    void free(Slot s) {
        int off = slotOff(s.index);
        synchronized (this) {
            if (owner(s.index) == s.token) {
                LONGS.setVolatile(mem, off + S_EPOCH, 0L);
                LONGS.compareAndSet(mem, off + S_OWNER, s.token, 0L);
            }
            forget(s);
        }
    }

    /** Drops the Java lock object of a slot that is no longer ours (it was reaped). */
    void forget(Slot s) {
        boolean interrupted = Thread.interrupted();
        try {
            if (s.lock.isValid()) {
                s.lock.release();
            }
        } catch (IOException e) {
            // the channel is closed: the lock is gone with it
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
