package io.shmreg;

/**
 * The region layout of docs/LAYOUT.md, as constants: offsets are in bytes
 * from the start of the data file (header fields), of a node, of an index
 * table, or of the control file. All integers are little-endian.
 */
public final class Layout {
    private Layout() {
    }

    /**
     * The newest data-file layout version this reader accepts. Versions 1
     * and 2 read alike (version 2 only moved small values into their node's
     * block, and a reader follows the value word wherever it points), so
     * this reader accepts OLDEST_LAYOUT_VERSION .. LAYOUT_VERSION.
     */
    public static final int LAYOUT_VERSION = 2;

    /** The oldest data-file layout version this reader accepts. */
    public static final int OLDEST_LAYOUT_VERSION = 1;

    /** The control file's own layout version (unchanged by data version 2). */
    public static final int CTL_VERSION = 1;

    // ---- the data file header (bytes 0 - 4095) ----
    static final byte[] MAGIC = {'S', 'H', 'M', 'R', 'E', 'G', 'D', 0};
    static final int HEADER_SIZE = 4096; // also pool_start
    static final int H_VERSION = 8; // u32
    static final int H_HEADER_SIZE = 12; // u32
    static final int H_FILE_SIZE = 16;
    static final int H_POOL_START = 24;
    static final int H_MAX_HEIGHT = 40; // u32
    static final int H_HEAD = 48;
    static final int H_STATE = 64; // atomic, acquire
    static final int H_GENERATION = 72; // atomic, acquire
    static final int H_INDEX = 80; // atomic, acquire
    static final int H_ENTRIES = 136; // statistics

    static final long STATE_SUPERSEDED = 1;

    /** The largest max_height a sane header holds (writers use 16). */
    static final int MAX_HEIGHT_LIMIT = 64;

    // ---- packed pair words ----
    static final int PAIR_OFFSET_BITS = 40;
    static final long PAIR_OFFSET_MASK = (1L << PAIR_OFFSET_BITS) - 1;
    /** A region is at most 2^40 bytes (1 TiB): offsets are 40 bits. */
    static final long MAX_FILE_SIZE = 1L << PAIR_OFFSET_BITS;
    /** Keys and values are shorter than 2^24 bytes. */
    static final int MAX_LENGTH = (1 << (64 - PAIR_OFFSET_BITS)) - 1;

    // ---- a skiplist node ----
    static final int N_VALUE = 0; // atomic pair word, acquire
    static final int N_KEY = 8; // pair word, never changes
    static final int N_HEIGHT = 16; // u32
    static final int N_NEXT = 24; // atomic next[height], acquire
    static final int NODE_SIZE = 24;

    // ---- the point-lookup index ----
    static final int I_CAPACITY = 0;
    static final int I_SLOTS = 32;
    static final long INDEX_EMPTY = 0;
    static final long INDEX_TOMBSTONE = 1;

    // ---- the control file ----
    static final byte[] CTL_MAGIC = {'S', 'H', 'M', 'R', 'E', 'G', 'C', 0};
    static final int C_VERSION = 8; // u32
    static final int C_SLOT_COUNT = 12; // u32
    static final int C_NOTIFY_SEQ = 64; // atomic u32
    static final int C_SLOTS_FORCED = 128;
    static final int C_SLOTS_REAPED = 136;
    static final int C_SLOTS = 8192;
    static final int SLOT_SIZE = 64;
    static final int S_OWNER = 0; // atomic
    static final int S_EPOCH = 8; // atomic
    static final int S_PID = 16; // u32, informational
    static final long EPOCH_FORCED = 1L << 63;
}
