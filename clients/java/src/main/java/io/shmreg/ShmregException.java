package io.shmreg;

/**
 * Every failure of this package. {@link #reason()} says what went wrong in
 * a form a caller can act on; the message names the file.
 */
public class ShmregException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** What went wrong. */
    public enum Reason {
        /** No region at the path: the data file or its control file does not exist. */
        NO_REGION,
        /** The file is not a shmreg region file (bad magic). */
        NOT_A_REGION,
        /** The file has a layout version this reader does not know ({@link Layout#LAYOUT_VERSION}). */
        LAYOUT_VERSION,
        /** The file is shorter than its header says. */
        TRUNCATED,
        /** An offset, length, height, capacity or link that cannot be right; or a walk that does not end. */
        CORRUPT,
        /** Every reader slot of the control file is held by a live reader. */
        NO_SLOTS,
        /** A read section outlived the writer's read lease again and again; nothing was returned. */
        EVICTED,
        /** The region was closed. */
        CLOSED,
        /** A value that should be an instance (a msgpack map) is not one. */
        MALFORMED_VALUE,
        /** An I/O error (the cause says which). */
        IO,
    }

    private final Reason reason;

    public ShmregException(Reason reason, String message) {
        super("shmreg: " + message);
        this.reason = reason;
    }

    public ShmregException(Reason reason, String message, Throwable cause) {
        super("shmreg: " + message, cause);
        this.reason = reason;
    }

    /** What went wrong. */
    public Reason reason() {
        return reason;
    }
}
