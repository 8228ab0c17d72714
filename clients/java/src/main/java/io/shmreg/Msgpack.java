package io.shmreg;

import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;

/**
 * Just enough of a msgpack decoder for instance values: maps, strings,
 * integers and nil, and skipping anything else. Values come from shared
 * memory anyone with write access to the region could have filled, so
 * every length is checked against what is left, and nesting is bounded.
 */
final class Msgpack {
    private static final int MAX_DEPTH = 32;

    private final byte[] b;
    private int pos;

    Msgpack(byte[] b) {
        this.b = b;
    }

    static ShmregException malformed(String what) {
        return new ShmregException(ShmregException.Reason.MALFORMED_VALUE, "malformed instance value: " + what);
    }

    private int u8() {
        if (pos >= b.length) {
            throw malformed("cut short at byte " + pos);
        }
        return b[pos++] & 0xFF;
    }

    private long be(int n) {
        if (b.length - pos < n) {
            throw malformed("cut short at byte " + pos);
        }
        long v = 0;
        for (int i = 0; i < n; i++) {
            v = v << 8 | (b[pos++] & 0xFF);
        }
        return v;
    }

    private int peek() {
        if (pos >= b.length) {
            throw malformed("cut short at byte " + pos);
        }
        return b[pos] & 0xFF;
    }

    /** The entry count of a map. */
    long mapHeader() {
        int c = u8();
        if (c >= 0x80 && c <= 0x8f) {
            return c & 0x0f;
        }
        if (c == 0xde) {
            return be(2);
        }
        if (c == 0xdf) {
            return be(4);
        }
        throw malformed(String.format("expected a map, found 0x%02x at byte %d", c, pos - 1));
    }

    /** Consumes a nil if one is next. */
    boolean nil() {
        if (peek() == 0xc0) {
            pos++;
            return true;
        }
        return false;
    }

    String string() {
        int c = u8();
        long n;
        if (c >= 0xa0 && c <= 0xbf) {
            n = c & 0x1f;
        } else if (c == 0xd9) {
            n = be(1);
        } else if (c == 0xda) {
            n = be(2);
        } else if (c == 0xdb) {
            n = be(4);
        } else {
            throw malformed(String.format("expected a string, found 0x%02x at byte %d", c, pos - 1));
        }
        if (n > b.length - pos) {
            throw malformed("string of " + n + " bytes overruns the value at byte " + pos);
        }
        try {
            String s = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(b, pos, (int) n)).toString();
            pos += (int) n;
            return s;
        } catch (CharacterCodingException e) {
            throw malformed("string at byte " + pos + " is not UTF-8");
        }
    }

    String stringOrNil() {
        return nil() ? "" : string();
    }

    /** Any msgpack integer that fits a long (uint64 above 2^63 - 1 does not). */
    long integer() {
        int c = u8();
        if (c <= 0x7f) {
            return c;
        }
        if (c >= 0xe0) {
            return (byte) c;
        }
        switch (c) {
            case 0xcc: return be(1);
            case 0xcd: return be(2);
            case 0xce: return be(4);
            case 0xcf: {
                long v = be(8);
                if (v < 0) {
                    throw malformed("integer above 2^63 - 1 at byte " + (pos - 9));
                }
                return v;
            }
            case 0xd0: return (byte) be(1);
            case 0xd1: return (short) be(2);
            case 0xd2: return (int) be(4);
            case 0xd3: return be(8);
            default:
                throw malformed(String.format("expected an integer, found 0x%02x at byte %d", c, pos - 1));
        }
    }

    /** Skips one value of any type. */
    void skip() {
        skip(0);
    }

    private void skip(int depth) {
        if (depth > MAX_DEPTH) {
            throw malformed("nested deeper than " + MAX_DEPTH);
        }
        int c = u8();
        long items = 0; // nested values to skip
        long bytes = 0; // payload bytes to skip
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            return;
        } else if (c >= 0x80 && c <= 0x8f) {
            items = 2L * (c & 0x0f);
        } else if (c >= 0x90 && c <= 0x9f) {
            items = c & 0x0f;
        } else if (c >= 0xa0 && c <= 0xbf) {
            bytes = c & 0x1f;
        } else {
            switch (c) {
                case 0xc4, 0xd9 -> bytes = be(1);
                case 0xc5, 0xda -> bytes = be(2);
                case 0xc6, 0xdb -> bytes = be(4);
                case 0xc7 -> bytes = be(1) + 1; // ext 8: length, type
                case 0xc8 -> bytes = be(2) + 1;
                case 0xc9 -> bytes = be(4) + 1;
                case 0xca -> bytes = 4;
                case 0xcb -> bytes = 8;
                case 0xcc, 0xd0 -> bytes = 1;
                case 0xcd, 0xd1 -> bytes = 2;
                case 0xce, 0xd2 -> bytes = 4;
                case 0xcf, 0xd3 -> bytes = 8;
                case 0xd4 -> bytes = 2; // fixext 1: type, data
                case 0xd5 -> bytes = 3;
                case 0xd6 -> bytes = 5;
                case 0xd7 -> bytes = 9;
                case 0xd8 -> bytes = 17;
                case 0xdc -> items = be(2);
                case 0xdd -> items = be(4);
                case 0xde -> items = 2 * be(2);
                case 0xdf -> items = 2 * be(4);
                default -> throw malformed(String.format("unknown type byte 0x%02x at byte %d", c, pos - 1));
            }
        }
        if (bytes > b.length - pos) {
            throw malformed("value of " + bytes + " bytes overruns the value at byte " + pos);
        }
        pos += (int) bytes;
        // Every nested value takes at least one byte: a count beyond what is
        // left is a lie, refused before looping on it.
        if (items > b.length - pos) {
            throw malformed(items + " nested values cannot fit in " + (b.length - pos) + " bytes");
        }
        for (long i = 0; i < items; i++) {
            skip(depth + 1);
        }
    }

    /** Checks that nothing follows the value. */
    void end() {
        if (pos != b.length) {
            throw malformed((b.length - pos) + " trailing bytes");
        }
    }
}
