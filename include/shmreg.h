/*
 * shmreg.h - read a shmreg region from C.
 *
 * Layout version 2 (it reads version 1 too). This header is the C half of docs/LAYOUT.md; the Go
 * declarations (shm/layout.go, skiplist/node.go) are the other half, and
 * shm/layout_test.go checks that all three agree. Linux only.
 *
 * THE REGION
 *
 * A region is two files, usually in /dev/shm/shmreg/:
 *
 *   NAME      the data file: a 4096-byte header, then a pool holding skiplist
 *             nodes, key bytes, value bytes and the point-lookup index. One
 *             writer (the agent) maps it read-write; readers map it read-only,
 *             so a buggy reader cannot corrupt the registry.
 *   NAME.ctl  the control file: the change-notification futex word, the
 *             reader/writer lock and the reader slots. Everything a reader
 *             must write lives here; the writer treats it as untrusted.
 *
 * All integers are little-endian, fixed width and naturally aligned. Every
 * reference inside the data file is an offset from the start of the file;
 * offset 0 means "none" (the header lives there). A key or a value is named
 * by one 64-bit "pair" word: offset in the low 40 bits, length in the high
 * 24. A value word of 0 means absent (deleted, or not yet published); an
 * empty value has a non-zero offset and length 0.
 *
 * The entries form a skiplist ordered by key bytes (memcmp, then the shorter
 * key first), starting at the head node named by the header. Beside it, an
 * open-addressing hash table (the index) maps a key's hash to its node, which
 * makes a point lookup O(1): shmreg_get() uses it; shmreg_get_skiplist() and
 * the iterator walk the list.
 *
 * PUBLICATION ORDER (why a reader needs no lock)
 *
 * The single writer never changes a byte a reader can already follow, except
 * the atomic words named below, and publishes each change with a release
 * store that readers pair with an acquire load:
 *
 *   insert  the node is fully written (key, height, every next[i] already
 *           pointing at its successor, value word 0); it is linked bottom-up
 *           (level 0 first); its index slot is stored; then its value word.
 *           The value store is the moment the key becomes visible.
 *   update  the new value is written to fresh pool bytes, then the value word
 *           is swapped to it in one store: a reader sees the old value or the
 *           new one, never a mix. (Version 2 keeps a value of up to 4096
 *           bytes inside its node's block, so such an update writes a whole
 *           new node instead, points the old node's value word at the new
 *           bytes, links the new node in the old one's place and stores its
 *           index slot: a reader meets either node, both with the same key
 *           and, from the first store on, the same value.)
 *   delete  the value word is stored 0 (the moment the key disappears), the
 *           index slot becomes a tombstone, then the node is unlinked
 *           top-down. An unlinked node keeps its next words, so a reader
 *           standing on it still reaches a live successor.
 *   index   a grown table is built completely in fresh pool bytes before its
 *           offset is stored in the header; a reader that loaded the old
 *           table finishes on it.
 *
 * When the pool fills up, the writer builds a compacted copy in a new file,
 * renames it over the old path, then sets SUPERSEDED in the old file's state
 * word. Every lookup and iterator seek here loads that word first and
 * returns SHMREG_ESUPERSEDED when it is set: end the read section, call
 * shmreg_reopen_if_superseded(), begin again. (The old file stays correct,
 * only stale.)
 *
 * READ SECTIONS (why bytes do not change under a reader)
 *
 * The writer reuses memory: an old value, a deleted node and its key go back
 * on its free lists once no reader can reach them. It knows which readers
 * might through the reader slots of NAME.ctl (docs/LAYOUT.md, "Reader
 * slots"), and this header joins that protocol the way the Go reader does:
 *
 * - shmreg_open() claims a slot: it takes an exclusive OFD lock
 *   (F_OFD_SETLK) on the slot's first byte, which the kernel drops when the
 *   process dies, so the writer can tell a dead reader's slot from a live
 *   one. shmreg_close() gives it back. The process also registers once for
 *   expedited membarrier(2); where that is refused, epochs are published
 *   with sequentially consistent stores instead (slower, as safe).
 * - shmreg_read_begin() publishes the generation in the slot (the read's
 *   epoch): nothing retired at or after it is reused until
 *   shmreg_read_end() sets the slot back to 0. Every lookup and iteration
 *   must run inside a section, and every key and value pointer they return
 *   is valid only until its section ends: copy out what you keep. Outside
 *   a section they return SHMREG_ESECTION. A slot at 0 (open, not reading)
 *   holds nothing back.
 * - A section that outlives the writer's read lease (2 s by default) is
 *   forced: the writer marks the slot and may reuse what the section was
 *   reading. shmreg_read_end() then returns SHMREG_EEVICTED: discard
 *   everything read in that section and read again. Keep sections short.
 * - shmreg_get_copy() is the one-shot form: begin, look up, copy into the
 *   caller's buffer, end.
 *
 * WHAT THIS READER DOES NOT DO (version 1)
 *
 * - It does not wait for changes (the futex on ctl.notify_seq) and does not
 *   touch the reader/writer lock.
 * - It trusts nothing in the data file: every offset, length, height and
 *   capacity is checked against the mapped size, and every walk is bounded,
 *   so a corrupt file yields SHMREG_ECORRUPT rather than a wild read or a
 *   hang. Of the control file it believes only as many slots as the file
 *   holds. It cannot prevent SIGBUS if someone truncates a file while it is
 *   mapped (the writer never does; it replaces data files by rename).
 * - It does not share a slot between threads (below), nor survive fork():
 *   a child shares its parent's open file description, hence its slot lock;
 *   it must neither use nor close a region its parent opened (it may munmap
 *   the two mappings), and opens its own instead. The control file is opened
 *   close-on-exec, so an exec'd program does not keep a slot alive.
 *
 * THREADS
 *
 * A struct shmreg_region is one reader: one slot, one read section at a
 * time. Give each thread its own (shmreg_open() per thread; each maps the
 * files and claims its own slot), or serialize the threads around whole
 * sections. Two threads in sections on one struct would share one epoch, and
 * the first to end would unprotect the other.
 *
 * FEATURE MACROS
 *
 * None are needed: the header compiles under -std=c11 with or without
 * _GNU_SOURCE / _POSIX_C_SOURCE. Where the C library hides them (strict
 * C11), it declares syscall(2) itself and uses the Linux values of
 * F_OFD_GETLK and F_OFD_SETLK, which are the same on every architecture.
 *
 * RETURN CODES
 *
 * 0 on success; a negative errno value (e.g. -ENOENT) when a system call
 * fails; or one of the SHMREG_E* codes below. shmreg_strerror() names them.
 *
 * USE
 *
 *     struct shmreg_region r;
 *     char buf[4096];
 *     size_t len;
 *     int rc = shmreg_open("/dev/shm/shmreg/NAME", &r);
 *     if (rc == 0) {
 *         rc = shmreg_get_copy(&r, "svc/web/1", 9, buf, sizeof buf, &len);
 *         if (rc == SHMREG_ESUPERSEDED && shmreg_reopen_if_superseded(&r, "/dev/shm/shmreg/NAME") == 1)
 *             rc = shmreg_get_copy(&r, "svc/web/1", 9, buf, sizeof buf, &len);
 *         ... rc is 0 (buf holds len bytes), SHMREG_ENOTFOUND, -ERANGE (the
 *         value needs len bytes), or an error ...
 *         shmreg_close(&r);
 *     }
 *
 * Zero-copy, inside a section (see the iterator below for walks):
 *
 *     const void *val;
 *     if (shmreg_read_begin(&r) == 0) {
 *         rc = shmreg_get(&r, "svc/web/1", 9, &val, &len);
 *         if (rc == 0)
 *             use(val, len);           valid until shmreg_read_end()
 *         if (shmreg_read_end(&r) == SHMREG_EEVICTED)
 *             ... what use() saw may have been reused: discard it, retry ...
 *     }
 */
#ifndef SHMREG_H
#define SHMREG_H

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shmreg regions are little-endian; this reader maps them in place"
#endif

/* Shared words are read with plain atomic loads from another process's
 * memory (and from a read-only mapping), which is only sound when the atomics
 * are lock-free: a lock-based atomic would use a lock private to this
 * process. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(sizeof(long long) == 8 && sizeof(int) == 4, "unexpected int sizes");

#define SHMREG_LAYOUT_VERSION 2
#define SHMREG_OLDEST_LAYOUT_VERSION 1 /* versions 1 and 2 read alike: 2 only changed where writers put values */
#define SHMREG_CTL_VERSION 1 /* the control file's layout, unchanged by data version 2 */
#define SHMREG_MAGIC "SHMREGD" /* 8 bytes with its NUL: data file */
#define SHMREG_CTL_MAGIC "SHMREGC" /* 8 bytes with its NUL: control file */
#define SHMREG_MAGIC_SIZE 8
#define SHMREG_HEADER_SIZE 4096 /* also pool_start: the pool follows the header */
#define SHMREG_MAX_HEIGHT 16    /* max_height written by version-1 writers */
#define SHMREG_ALIGN 8          /* every pool allocation is 8-byte aligned */

/* header.state bits */
#define SHMREG_STATE_SUPERSEDED UINT64_C(1) /* a newer file replaced this one: reopen the path */
#define SHMREG_STATE_COMMITTING UINT64_C(2) /* a commit is under way (writer recovery only) */

/* Return codes, outside the errno range (like LMDB's). */
#define SHMREG_ENOTFOUND (-30800)   /* no such key, or the iteration is over */
#define SHMREG_EMAGIC (-30801)      /* not a shmreg data file */
#define SHMREG_EVERSION (-30802)    /* a layout version this header does not know */
#define SHMREG_ETRUNCATED (-30803)  /* the file is shorter than its header says */
#define SHMREG_ECORRUPT (-30804)    /* an offset, length or link that cannot be right */
#define SHMREG_ESUPERSEDED (-30805) /* the file was replaced at its path; reopen it */
#define SHMREG_EEVICTED (-30806)    /* the read section outlived its lease: discard what it read */
#define SHMREG_ENOSLOTS (-30807)    /* every reader slot of NAME.ctl is held by a live reader */
#define SHMREG_ESECTION (-30808)    /* a lookup outside a read section, or a begin inside one */

/* ---- packed pair words ------------------------------------------------ */

#define SHMREG_PAIR_OFFSET_BITS 40
#define SHMREG_PAIR_OFFSET_MASK ((UINT64_C(1) << SHMREG_PAIR_OFFSET_BITS) - 1)
#define SHMREG_PAIR_LENGTH_MAX ((UINT64_C(1) << (64 - SHMREG_PAIR_OFFSET_BITS)) - 1)

static inline uint64_t shmreg_pair(uint64_t offset, uint64_t length)
{
    return (offset & SHMREG_PAIR_OFFSET_MASK) | length << SHMREG_PAIR_OFFSET_BITS;
}
static inline uint64_t shmreg_pair_offset(uint64_t pair) { return pair & SHMREG_PAIR_OFFSET_MASK; }
static inline uint64_t shmreg_pair_length(uint64_t pair) { return pair >> SHMREG_PAIR_OFFSET_BITS; }

/* ---- the data file ------------------------------------------------------ */

/* Bytes 0 - 4095. Fields above `state` are written once at create. The
 * cache line at 64 is loaded by every reader operation; the one at 128 is the
 * writer's own (readers may read it for statistics, racily). */
struct shmreg_header {
    uint8_t magic[8];      /* "SHMREGD\0" */
    uint32_t version;      /* 1 or 2 (SHMREG_OLDEST_LAYOUT_VERSION .. SHMREG_LAYOUT_VERSION); anything else is refused */
    uint32_t header_size;  /* 4096 */
    uint64_t file_size;    /* bytes; must not exceed the real file size */
    uint64_t pool_start;   /* 4096 */
    uint64_t created_ns;   /* Unix nanoseconds */
    uint32_t max_height;   /* levels of the skiplist, 16 */
    uint32_t reserved0;
    uint64_t head;         /* offset of the head node (height max_height) */
    uint64_t reserved1;

    _Atomic uint64_t state;      /* SHMREG_STATE_*: writer stores (release), readers load (acquire) */
    _Atomic uint64_t generation; /* commits ever made; writer adds after each commit (release) */
    _Atomic uint64_t index;      /* offset of the current index table; stored once it is complete */
    uint8_t reserved2[40];

    uint64_t alloc;          /* next free pool byte (bump cursor) */
    uint64_t entries;        /* live keys */
    uint64_t live_bytes;     /* key + value bytes of live entries */
    uint64_t garbage_bytes;  /* bytes retired: old values, deleted nodes, old tables */
    uint64_t writer_pid;     /* last writer that opened the region */
    uint64_t compactions;    /* files this region has been rebuilt through */
    uint64_t place_revision; /* center revision the agent has applied */
    uint64_t value_alloc;    /* lowest byte of the top end (values over 4096 bytes; they grow down from file_size) */
    char place_center[64];   /* NUL-padded id of the center the agent follows */
    /* Reclamation statistics (offset 256), written by the writer. */
    uint64_t retired_bytes;  /* retired, waiting for readers to move past them */
    uint64_t reusable_bytes; /* on the writer's free lists */
    uint64_t oldest_epoch;   /* oldest reader epoch at the last reclamation pass */
    uint8_t reserved4[232];
    uint64_t free_by_class[48]; /* offset 512: reusable bytes per size class */
    uint8_t reserved5[3200];
};

/* A skiplist node, in the pool. Its key bytes follow it, then its first
 * value's bytes. Only `value` and `next` ever change after the node is
 * linked; `key` and `height` are written before and never again. The head
 * node has height max_height, key length 0 and value 0. */
struct shmreg_node {
    _Atomic uint64_t value;   /* pair; 0 = absent. Writer stores (release), readers load (acquire) */
    uint64_t key;             /* pair; never changes */
    uint32_t height;          /* 1 .. max_height */
    uint32_t inline_size;     /* the writer's own (version 2; readers ignore it): 0 = the value lives
                                 apart; n+1 = the node's block holds n value bytes after the key */
    _Atomic uint64_t next[];  /* [height]: next node at level i, 0 = end; release/acquire */
};

/* The point-lookup index: open addressing, linear probing. Written in full
 * before its offset is published in header.index; after that only `slots`
 * (and the writer's own counters) change. */
struct shmreg_index {
    uint64_t capacity;        /* a power of two */
    uint64_t used;            /* slots holding a node (writer bookkeeping) */
    uint64_t tombstones;      /* slots holding a tombstone (writer bookkeeping) */
    uint64_t reserved;
    _Atomic uint64_t slots[]; /* [capacity] */
};

/* An index slot is empty (stop probing), a tombstone (keep probing), or a
 * node offset with the top 24 bits of the key's hash above it as a tag, so
 * that most mismatches are rejected without touching the node. */
#define SHMREG_INDEX_EMPTY UINT64_C(0)
#define SHMREG_INDEX_TOMBSTONE UINT64_C(1)

static inline uint64_t shmreg_index_word(uint64_t node_offset, uint64_t hash)
{
    return (node_offset & SHMREG_PAIR_OFFSET_MASK) | (hash & ~SHMREG_PAIR_OFFSET_MASK);
}

/* ---- the control file --------------------------------------------------- */

#define SHMREG_CTL_LOCK_OFFSET 4096  /* the reader/writer lock, 4096 bytes (package lock) */
#define SHMREG_CTL_SLOTS_OFFSET 8192 /* reader slot i at 8192 + 64*i */

/* Bytes 0 - 4095 of NAME.ctl. */
struct shmreg_ctl {
    uint8_t magic[8];      /* "SHMREGC\0" */
    uint32_t version;      /* SHMREG_CTL_VERSION */
    uint32_t slot_count;   /* reader slots */
    uint64_t file_size;
    uint64_t created_ns;
    uint8_t reserved0[32];

    /* The futex word: the writer adds 1 after every commit (release) and
     * wakes waiters with a non-private FUTEX_WAKE if notify_waiters != 0. */
    _Atomic uint32_t notify_seq;
    _Atomic uint32_t notify_waiters; /* each waiter adds 1 before FUTEX_WAIT, subtracts 1 after */
    uint8_t reserved1[56];

    uint64_t slots_forced; /* reader slots forced free after their lease (writer) */
    uint64_t slots_reaped; /* reader slots of dead processes cleared (writer) */
    uint8_t reserved2[3952];
};

/* A reader slot, one cache line. A process owns slot i while it holds an
 * exclusive F_OFD_SETLK lock on byte 8192 + 64*i of NAME.ctl; that lock dies
 * with the process, which is how the writer tells dead readers from live
 * ones (F_OFD_GETLK), whatever pid the kernel hands out since. Only the
 * owner writes owner, pid and epoch, except that the writer may
 * compare-and-swap the epoch: to SHMREG_EPOCH_FORCED | epoch when the
 * section outlived the lease, to 0 when the owner is dead. */
struct shmreg_slot {
    _Atomic uint64_t owner; /* 0 = free, else pid << 32 | nonce; stored last when claiming */
    _Atomic uint64_t epoch; /* 0 = idle (no section under way); else the generation at which
                               the owner's current section began; bit 63
                               (SHMREG_EPOCH_FORCED) set by the writer, with the section's
                               own epoch kept in the low bits */
    uint32_t pid;           /* of the owner, informational */
    uint8_t reserved[44];
};
#define SHMREG_EPOCH_FORCED (UINT64_C(1) << 63)

/* ---- the layout, checked ------------------------------------------------ */

#define SHMREG__AT(type, field, off) \
    _Static_assert(offsetof(struct type, field) == (off), #type "." #field " must sit at " #off)

_Static_assert(sizeof(struct shmreg_header) == 4096, "header is 4096 bytes");
SHMREG__AT(shmreg_header, version, 8);
SHMREG__AT(shmreg_header, header_size, 12);
SHMREG__AT(shmreg_header, file_size, 16);
SHMREG__AT(shmreg_header, pool_start, 24);
SHMREG__AT(shmreg_header, created_ns, 32);
SHMREG__AT(shmreg_header, max_height, 40);
SHMREG__AT(shmreg_header, head, 48);
SHMREG__AT(shmreg_header, state, 64);
SHMREG__AT(shmreg_header, generation, 72);
SHMREG__AT(shmreg_header, index, 80);
SHMREG__AT(shmreg_header, alloc, 128);
SHMREG__AT(shmreg_header, entries, 136);
SHMREG__AT(shmreg_header, live_bytes, 144);
SHMREG__AT(shmreg_header, garbage_bytes, 152);
SHMREG__AT(shmreg_header, writer_pid, 160);
SHMREG__AT(shmreg_header, compactions, 168);
SHMREG__AT(shmreg_header, place_revision, 176);
SHMREG__AT(shmreg_header, value_alloc, 184);
SHMREG__AT(shmreg_header, place_center, 192);
SHMREG__AT(shmreg_header, retired_bytes, 256);
SHMREG__AT(shmreg_header, reusable_bytes, 264);
SHMREG__AT(shmreg_header, oldest_epoch, 272);
SHMREG__AT(shmreg_header, free_by_class, 512);

_Static_assert(sizeof(struct shmreg_node) == 24, "node header is 24 bytes");
SHMREG__AT(shmreg_node, value, 0);
SHMREG__AT(shmreg_node, key, 8);
SHMREG__AT(shmreg_node, height, 16);
SHMREG__AT(shmreg_node, next, 24);

_Static_assert(sizeof(struct shmreg_index) == 32, "index header is 32 bytes");
SHMREG__AT(shmreg_index, capacity, 0);
SHMREG__AT(shmreg_index, used, 8);
SHMREG__AT(shmreg_index, tombstones, 16);
SHMREG__AT(shmreg_index, slots, 32);

_Static_assert(sizeof(struct shmreg_ctl) == 4096, "control header is 4096 bytes");
SHMREG__AT(shmreg_ctl, version, 8);
SHMREG__AT(shmreg_ctl, slot_count, 12);
SHMREG__AT(shmreg_ctl, file_size, 16);
SHMREG__AT(shmreg_ctl, created_ns, 24);
SHMREG__AT(shmreg_ctl, notify_seq, 64);
SHMREG__AT(shmreg_ctl, notify_waiters, 68);
SHMREG__AT(shmreg_ctl, slots_forced, 128);
SHMREG__AT(shmreg_ctl, slots_reaped, 136);

_Static_assert(sizeof(struct shmreg_slot) == 64, "a reader slot is one cache line");
SHMREG__AT(shmreg_slot, owner, 0);
SHMREG__AT(shmreg_slot, epoch, 8);
SHMREG__AT(shmreg_slot, pid, 16);

_Static_assert(sizeof(_Atomic uint64_t) == 8 && _Alignof(_Atomic uint64_t) == 8,
               "atomic words must keep the plain layout");

/* ---- the hash ------------------------------------------------------------ */

/* The 64-bit hash of docs/LAYOUT.md; the Go writer computes the same. */
static inline uint64_t shmreg_hash(const void *key, size_t len)
{
    const uint64_t K1 = UINT64_C(0x9E3779B97F4A7C15), K2 = UINT64_C(0xC2B2AE3D27D4EB4F);
    const uint64_t K3 = UINT64_C(0xFF51AFD7ED558CCD), K4 = UINT64_C(0xC4CEB9FE1A85EC53);
    const unsigned char *p = key;
    uint64_t h = K1 ^ ((uint64_t)len * K2);

    for (; len >= 8; p += 8, len -= 8) {
        uint64_t c;
        memcpy(&c, p, 8); /* one unaligned load; the region is little-endian, like this host */
        h = (h ^ c) * K2;
        h ^= h >> 29;
    }
    if (len > 0) {
        uint64_t c = 0;
        for (size_t i = 0; i < len; i++) /* little-endian, zero-extended */
            c |= (uint64_t)p[i] << (8 * i);
        h = (h ^ c) * K2;
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h *= K3;
    h ^= h >> 33;
    h *= K4;
    h ^= h >> 33;
    return h;
}

/* ---- opening ------------------------------------------------------------- */

/* O_CLOEXEC is POSIX.1-2008; under a strict -std=c11 it may be hidden. The
 * data file's descriptor is closed before shmreg_open() returns anyway; the
 * control file's is kept (its lock is the slot's liveness) and is marked
 * close-on-exec with F_SETFD instead. */
#ifdef O_CLOEXEC
#define SHMREG__O_CLOEXEC O_CLOEXEC
#else
#define SHMREG__O_CLOEXEC 0
#endif

/* Open file description locks (Linux 3.15). glibc shows them only under
 * _GNU_SOURCE; these are the kernel's values on every architecture. */
#ifdef F_OFD_GETLK
#define SHMREG__F_OFD_GETLK F_OFD_GETLK
#define SHMREG__F_OFD_SETLK F_OFD_SETLK
#else
#define SHMREG__F_OFD_GETLK 36
#define SHMREG__F_OFD_SETLK 37
#endif

/* membarrier(2) commands (linux/membarrier.h). */
#define SHMREG__MEMBARRIER_QUERY 0
#define SHMREG__MEMBARRIER_GLOBAL 1
#define SHMREG__MEMBARRIER_GLOBAL_EXPEDITED 2
#define SHMREG__MEMBARRIER_REGISTER_GLOBAL_EXPEDITED 4

/* A mapped region: the data file (read-only; replaced by
 * shmreg_reopen_if_superseded()) and this reader's slot in the control file
 * (kept from shmreg_open() to shmreg_close()). One thread at a time. */
struct shmreg_region {
    const unsigned char *base;       /* the data mapping, file_size bytes, PROT_READ */
    const struct shmreg_header *hdr; /* == base */
    const struct shmreg_node *head;
    uint64_t size;                   /* header.file_size: the bound every offset is checked against */
    uint32_t max_height;
    uint64_t step_limit;             /* more links than any walk of a sane file can follow */

    unsigned char *ctl;              /* the control mapping, ctl_size bytes, read-write; NULL when closed */
    size_t ctl_size;                 /* 8192 + 64 * slot_count, checked against the file's size */
    int ctl_fd;                      /* open while ctl != NULL: its OFD lock is the slot's liveness */
    uint32_t slot_index;
    struct shmreg_slot *slot;        /* == ctl + 8192 + 64 * slot_index */
    int plain_epoch;                 /* 1: registered for expedited membarrier, epochs are published
                                        with relaxed stores; a caller may set it to 0 (never to 1)
                                        to publish with sequentially consistent stores */
    int in_section;                  /* between shmreg_read_begin() and shmreg_read_end() */
};

/* [off, off+len) inside the pool, or NULL. A zero-length span needs no
 * bytes, so any offset up to the end will do (the head's key is 0/0). */
static inline const unsigned char *shmreg__span(const struct shmreg_region *r, uint64_t off, uint64_t len)
{
    if (off > r->size || len > r->size - off || (off < SHMREG_HEADER_SIZE && len > 0))
        return NULL;
    return r->base + off;
}

/* The node at off, or NULL unless it is aligned and its whole tower lies
 * inside the file. All node accesses go through here. */
static inline const struct shmreg_node *shmreg__node(const struct shmreg_region *r, uint64_t off)
{
    const struct shmreg_node *n;

    if (off < SHMREG_HEADER_SIZE || off % SHMREG_ALIGN != 0)
        return NULL;
    n = (const struct shmreg_node *)(const void *)shmreg__span(r, off, sizeof *n);
    if (n == NULL || n->height == 0 || n->height > r->max_height ||
        shmreg__span(r, off, sizeof *n + 8 * (uint64_t)n->height) == NULL)
        return NULL;
    return n;
}

/* Reads up to len bytes from the start of fd; returns how many, or -errno.
 * (read() may return short.) */
static inline ssize_t shmreg__read_head(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            got += (size_t)n;
    }
    return (ssize_t)got;
}

/* ---- the data file ---- */

static inline int shmreg__unmap_data(struct shmreg_region *r)
{
    int rc = 0;

    if (r->base != NULL && munmap((void *)r->base, (size_t)r->size) != 0)
        rc = -errno;
    r->base = NULL;
    r->hdr = NULL;
    r->head = NULL;
    r->size = 0;
    r->max_height = 0;
    r->step_limit = 0;
    return rc;
}

/* Checks the header that is mapped at r->base (r->size bytes of it are
 * readable) and fills in the rest of r's data fields. */
static inline int shmreg__validate(struct shmreg_region *r)
{
    const struct shmreg_header *h = r->hdr;

    if (h->header_size != SHMREG_HEADER_SIZE || h->pool_start != SHMREG_HEADER_SIZE ||
        h->file_size != r->size || h->max_height == 0 || h->max_height > 64 /* writers use 16 */)
        return SHMREG_ECORRUPT;
    r->max_height = h->max_height;
    r->head = shmreg__node(r, h->head);
    if (r->head == NULL || r->head->height != r->max_height)
        return SHMREG_ECORRUPT;
    /* A node takes at least 32 bytes, and a walk never visits a node twice
     * on one level, so a longer walk means a cycle. */
    r->step_limit = r->size / 32 + r->max_height;
    return 0;
}

/* Maps the data file at path read-only and checks its header, filling in
 * r's data fields only. On failure they are left zeroed. */
static inline int shmreg__map_data(const char *path, struct shmreg_region *r)
{
    struct shmreg_header h;
    struct stat st;
    void *base;
    ssize_t got;
    int fd, rc;

    fd = open(path, O_RDONLY | SHMREG__O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    memset(&h, 0, sizeof h);
    got = shmreg__read_head(fd, &h, sizeof h);
    /* A stray short file is "not shmreg" rather than "cut short"; the header
     * fields are trusted only once magic and version match. */
    if (got < 0)
        rc = (int)got;
    else if (got >= SHMREG_MAGIC_SIZE && memcmp(h.magic, SHMREG_MAGIC, SHMREG_MAGIC_SIZE) != 0)
        rc = SHMREG_EMAGIC;
    else if (got < (ssize_t)offsetof(struct shmreg_header, header_size))
        rc = SHMREG_ETRUNCATED;
    else if (h.version < SHMREG_OLDEST_LAYOUT_VERSION || h.version > SHMREG_LAYOUT_VERSION)
        rc = SHMREG_EVERSION;
    else if (got < (ssize_t)sizeof h || st.st_size < 0 || (uint64_t)st.st_size < h.file_size)
        rc = SHMREG_ETRUNCATED;
    else if (h.file_size < sizeof h || h.file_size > SHMREG_PAIR_OFFSET_MASK + 1 || h.file_size > SIZE_MAX)
        rc = SHMREG_ECORRUPT; /* offsets are 40 bits; the mapping must fit size_t */
    else
        rc = 0;
    if (rc != 0)
        goto out;
    base = mmap(NULL, (size_t)h.file_size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        rc = -errno;
        goto out;
    }
    r->base = base;
    r->hdr = base;
    r->size = h.file_size;
    /* Validate the mapping, not the copy: the copy only chose the size. */
    rc = shmreg__validate(r);
    if (rc != 0)
        shmreg__unmap_data(r);
out:
    close(fd);
    return rc;
}

/* ---- the control file and the reader slot ---- */

/* syscall(2) is declared by <unistd.h> only under _DEFAULT_SOURCE or
 * _GNU_SOURCE, which a strict -std=c11 build lacks; glibc and musl both
 * define it with this prototype. */
extern long syscall(long, ...);

/* Registers this process for MEMBARRIER_CMD_GLOBAL_EXPEDITED, so that
 * sections may publish their epoch with relaxed stores: before it scans the
 * slots, the writer runs a full fence on every CPU running a registered
 * process. Returns 1 if registered, 0 if not (an old kernel, a seccomp
 * filter, valgrind): then epochs need sequentially consistent stores. The
 * answer is remembered per translation unit; registering again is harmless. */
static inline int shmreg__register_membarrier(void)
{
    static _Atomic int state; /* 0 = not asked yet, 1 = registered, -1 = refused */
    int s = atomic_load_explicit(&state, memory_order_relaxed);

    if (s == 0) {
#if defined(SYS_membarrier)
        const long need = SHMREG__MEMBARRIER_GLOBAL | SHMREG__MEMBARRIER_GLOBAL_EXPEDITED |
                          SHMREG__MEMBARRIER_REGISTER_GLOBAL_EXPEDITED;
        long cmds = syscall(SYS_membarrier, SHMREG__MEMBARRIER_QUERY, 0);
        s = cmds >= 0 && (cmds & need) == need &&
                    syscall(SYS_membarrier, SHMREG__MEMBARRIER_REGISTER_GLOBAL_EXPEDITED, 0) == 0
                ? 1
                : -1;
#else
        s = -1;
#endif
        atomic_store_explicit(&state, s, memory_order_relaxed);
    }
    return s > 0;
}

/* The owner word's low half: differs between the claims of one process
 * (per translation unit), so that no two claims look alike. */
static inline uint32_t shmreg__nonce(void)
{
    static _Atomic uint32_t last;
    return atomic_fetch_add_explicit(&last, 1, memory_order_relaxed) + 1;
}

/* F_OFD_GETLK (cmd == SHMREG__F_OFD_GETLK; *type is set to what blocks a
 * write lock, F_UNLCK if nothing) or F_OFD_SETLK (type F_WRLCK or F_UNLCK,
 * never waiting) on slot i's liveness byte. Returns 0 or -errno. */
static inline int shmreg__slot_lock(int fd, uint32_t i, int cmd, short *type)
{
    struct flock lk;

    memset(&lk, 0, sizeof lk); /* l_pid must be 0 for OFD locks */
    lk.l_type = *type;
    lk.l_whence = SEEK_SET;
    lk.l_start = (off_t)(SHMREG_CTL_SLOTS_OFFSET + (uint64_t)sizeof(struct shmreg_slot) * i);
    lk.l_len = 1;
    if (fcntl(fd, cmd, &lk) != 0)
        return -errno;
    *type = lk.l_type;
    return 0;
}

static inline struct shmreg_slot *shmreg__slot(const struct shmreg_region *r, uint32_t i)
{
    return (struct shmreg_slot *)(void *)(r->ctl + SHMREG_CTL_SLOTS_OFFSET + sizeof(struct shmreg_slot) * i);
}

/* Claims a slot the way the Go reader does: skip slots whose owner is set
 * and whose lock some other open file description holds (a live reader);
 * take the lock of the first other one (free, or left by a dead reader),
 * then mark it as ours, owner last. */
static inline int shmreg__claim_slot(struct shmreg_region *r)
{
    uint32_t n = (uint32_t)((r->ctl_size - SHMREG_CTL_SLOTS_OFFSET) / sizeof(struct shmreg_slot));
    uint64_t pid = (uint64_t)getpid();

    for (uint32_t i = 0; i < n; i++) {
        struct shmreg_slot *s = shmreg__slot(r, i);
        short type = F_WRLCK;

        if (atomic_load(&s->owner) != 0 &&
            (shmreg__slot_lock(r->ctl_fd, i, SHMREG__F_OFD_GETLK, &type) != 0 || type != F_UNLCK))
            continue; /* alive, or cannot tell: never take what may be in use */
        type = F_WRLCK;
        if (shmreg__slot_lock(r->ctl_fd, i, SHMREG__F_OFD_SETLK, &type) != 0)
            continue; /* taken since we looked */
        atomic_store(&s->epoch, 0);
        s->pid = (uint32_t)pid;
        atomic_store(&s->owner, pid << 32 | shmreg__nonce());
        r->slot_index = i;
        r->slot = s;
        return 0;
    }
    return SHMREG_ENOSLOTS;
}

/* Gives the slot back (epoch 0, owner 0, unlock), unmaps the control file
 * and closes it. */
static inline int shmreg__close_ctl(struct shmreg_region *r)
{
    int rc = 0;

    if (r->ctl == NULL)
        return 0;
    if (r->slot != NULL) {
        short type = F_UNLCK;
        atomic_store(&r->slot->epoch, 0);
        atomic_store(&r->slot->owner, 0);
        rc = shmreg__slot_lock(r->ctl_fd, r->slot_index, SHMREG__F_OFD_SETLK, &type);
    }
    if (munmap(r->ctl, r->ctl_size) != 0 && rc == 0)
        rc = -errno;
    if (close(r->ctl_fd) != 0 && rc == 0)
        rc = -errno;
    r->ctl = NULL;
    r->ctl_size = 0;
    r->ctl_fd = 0;
    r->slot = NULL;
    r->slot_index = 0;
    r->in_section = 0;
    return rc;
}

/* Opens path.ctl read-write, checks its header (magic, version, and that the
 * file holds the slots it claims), maps the slots and claims one. On failure
 * r's control fields are left zeroed. */
static inline int shmreg__open_ctl(const char *path, struct shmreg_region *r)
{
    struct shmreg_ctl c;
    struct stat st;
    size_t plen = strlen(path);
    char *cpath = malloc(plen + sizeof ".ctl");
    uint64_t need;
    ssize_t got;
    void *base;
    int fd, rc;

    if (cpath == NULL)
        return -ENOMEM;
    memcpy(cpath, path, plen);
    memcpy(cpath + plen, ".ctl", sizeof ".ctl");
    fd = open(cpath, O_RDWR | SHMREG__O_CLOEXEC);
    rc = fd < 0 ? -errno : 0;
    free(cpath);
    if (fd < 0)
        return rc;
    if (SHMREG__O_CLOEXEC == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        rc = -errno;
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    memset(&c, 0, sizeof c);
    got = shmreg__read_head(fd, &c, sizeof c);
    /* slot_count comes from a file every reader may write: believe only as
     * many slots as the file really holds, and keep our own copy of the
     * bound (ctl_size) rather than reading the count again. */
    need = SHMREG_CTL_SLOTS_OFFSET + (uint64_t)sizeof(struct shmreg_slot) * c.slot_count;
    if (got < 0)
        rc = (int)got;
    else if (got >= SHMREG_MAGIC_SIZE && memcmp(c.magic, SHMREG_CTL_MAGIC, SHMREG_MAGIC_SIZE) != 0)
        rc = SHMREG_EMAGIC;
    else if (got < (ssize_t)offsetof(struct shmreg_ctl, slot_count))
        rc = SHMREG_ETRUNCATED;
    else if (c.version != SHMREG_CTL_VERSION)
        rc = SHMREG_EVERSION;
    else if (got < (ssize_t)sizeof c || st.st_size < 0 || (uint64_t)st.st_size < need)
        rc = SHMREG_ETRUNCATED;
    else if (c.slot_count == 0)
        rc = SHMREG_ENOSLOTS;
    else
        rc = 0;
    if (rc != 0)
        goto fail;
    base = mmap(NULL, (size_t)need, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    r->ctl = base;
    r->ctl_size = (size_t)need;
    r->ctl_fd = fd;
    rc = shmreg__claim_slot(r);
    if (rc != 0)
        shmreg__close_ctl(r);
    return rc;
fail:
    close(fd);
    return rc;
}

/* ---- opening and closing ---- */

/* Gives the reader slot back and unmaps both files. r must not be in a
 * read section on another thread. Closing a zeroed or closed struct does
 * nothing. */
static inline int shmreg_close(struct shmreg_region *r)
{
    int rc = shmreg__close_ctl(r);
    int drc = shmreg__unmap_data(r);

    memset(r, 0, sizeof *r);
    return rc != 0 ? rc : drc;
}

/* Maps the data file at path read-only and checks its header, then opens
 * path.ctl and claims a reader slot in it. On success returns 0 and fills
 * *r; on failure returns a negative code (SHMREG_ENOSLOTS if every slot is
 * held by a live reader) and leaves *r zeroed. */
static inline int shmreg_open(const char *path, struct shmreg_region *r)
{
    int rc;

    memset(r, 0, sizeof *r);
    rc = shmreg__map_data(path, r);
    if (rc == 0)
        rc = shmreg__open_ctl(path, r);
    if (rc != 0) {
        shmreg_close(r);
        return rc;
    }
    r->plain_epoch = shmreg__register_membarrier();
    return 0;
}

static inline int shmreg__superseded(const struct shmreg_region *r)
{
    return (atomic_load_explicit(&r->hdr->state, memory_order_acquire) & SHMREG_STATE_SUPERSEDED) != 0;
}

/* If the data file r maps has been replaced at path, maps the new one in its
 * place, keeping the control file and the slot (the writer replaces only the
 * data file). Returns 1 if it reopened, 0 if r was current, -EBUSY inside a
 * read section (end it first: it may be reading the old mapping), or a
 * negative code (r then still maps the old file, which stays readable). */
static inline int shmreg_reopen_if_superseded(struct shmreg_region *r, const char *path)
{
    struct shmreg_region fresh;
    int rc;

    if (r->in_section)
        return -EBUSY;
    if (!shmreg__superseded(r))
        return 0;
    memset(&fresh, 0, sizeof fresh);
    rc = shmreg__map_data(path, &fresh);
    if (rc != 0)
        return rc;
    shmreg__unmap_data(r);
    r->base = fresh.base;
    r->hdr = fresh.hdr;
    r->head = fresh.head;
    r->size = fresh.size;
    r->max_height = fresh.max_height;
    r->step_limit = fresh.step_limit;
    return 1;
}

/* The generation (commit count) the writer last published. Needs no
 * section: the header is never reused. */
static inline uint64_t shmreg_generation(const struct shmreg_region *r)
{
    return atomic_load_explicit(&r->hdr->generation, memory_order_acquire);
}

/* ---- read sections ---------------------------------------------------- */

/* Begins a read section: publishes the current generation as this slot's
 * epoch, so that the writer reuses nothing the section can reach until
 * shmreg_read_end(). Returns 0, or SHMREG_ESECTION if r is closed or
 * already in a section (sections do not nest).
 *
 * The epoch store must be ordered before the generation is loaded again
 * (a store-load order, which needs a full fence even on x86-64): otherwise
 * the writer's slot scan could miss the epoch while this section reads
 * blocks the writer retired just before. A registered process gets that
 * fence from the writer's membarrier, and only has to keep the compiler
 * from moving the store (atomic_signal_fence); an unregistered one stores
 * with seq_cst. If the generation moved meanwhile, publish the new one and
 * check again, so the epoch is one the writer has really published. */
static inline int shmreg_read_begin(struct shmreg_region *r)
{
    uint64_t g, again;

    if (r->slot == NULL || r->in_section)
        return SHMREG_ESECTION;
    g = atomic_load_explicit(&r->hdr->generation, memory_order_acquire);
    for (;;) {
        if (r->plain_epoch) {
            atomic_store_explicit(&r->slot->epoch, g, memory_order_relaxed);
            atomic_signal_fence(memory_order_seq_cst);
        } else {
            atomic_store_explicit(&r->slot->epoch, g, memory_order_seq_cst);
        }
        again = atomic_load_explicit(&r->hdr->generation, memory_order_seq_cst);
        if (again == g)
            break;
        g = again;
    }
    r->in_section = 1;
    return 0;
}

/* Ends the read section and sets the slot idle (0), so that an open reader
 * that is not reading holds nothing back. Returns 0; SHMREG_EEVICTED if
 * the writer forced the slot meanwhile (the section outlived the read lease
 * and what it read may have been reused: discard it); SHMREG_ESECTION if r
 * was not in a section.
 *
 * The acquire fence keeps every load of the section before the load of the
 * epoch (as a seqlock reader does), and the release store keeps them before
 * the 0 the writer will see. A mark the writer sets between that load and
 * the store is lost harmlessly: the section's loads were complete before
 * the load that saw no mark, hence before the writer's mark and any reuse. */
static inline int shmreg_read_end(struct shmreg_region *r)
{
    uint64_t e;

    if (!r->in_section)
        return SHMREG_ESECTION;
    atomic_thread_fence(memory_order_acquire);
    e = atomic_load_explicit(&r->slot->epoch, memory_order_relaxed);
    atomic_store_explicit(&r->slot->epoch, 0, memory_order_release);
    r->in_section = 0;
    return (e & SHMREG_EPOCH_FORCED) != 0 ? SHMREG_EEVICTED : 0;
}

static inline const char *shmreg_strerror(int rc)
{
    switch (rc) {
    case 0: return "success";
    case SHMREG_ENOTFOUND: return "shmreg: not found";
    case SHMREG_EMAGIC: return "shmreg: not a region file (bad magic)";
    case SHMREG_EVERSION: return "shmreg: unknown layout version";
    case SHMREG_ETRUNCATED: return "shmreg: file shorter than its header says";
    case SHMREG_ECORRUPT: return "shmreg: corrupt region";
    case SHMREG_ESUPERSEDED: return "shmreg: region superseded, reopen it";
    case SHMREG_EEVICTED: return "shmreg: read section outlived its lease and was evicted; read again";
    case SHMREG_ENOSLOTS: return "shmreg: every reader slot is held by a live reader";
    case SHMREG_ESECTION: return "shmreg: not inside a read section (or a nested shmreg_read_begin)";
    default: return rc < 0 ? strerror(-rc) : "shmreg: unknown code";
    }
}

/* ---- lookups ------------------------------------------------------------- */

static inline int shmreg__cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

/* The key bytes of n, or NULL if its key word points outside the file. */
static inline const unsigned char *shmreg__key(const struct shmreg_region *r, const struct shmreg_node *n, size_t *len)
{
    *len = (size_t)shmreg_pair_length(n->key);
    return shmreg__span(r, shmreg_pair_offset(n->key), *len);
}

/* Loads n's value word once. Returns 0 with the bytes, SHMREG_ENOTFOUND if
 * the word is 0 (absent), or SHMREG_ECORRUPT. */
static inline int shmreg__value(const struct shmreg_region *r, const struct shmreg_node *n,
                                const void **val, size_t *vlen)
{
    uint64_t v = atomic_load_explicit(&n->value, memory_order_acquire);
    const unsigned char *p;

    if (v == 0)
        return SHMREG_ENOTFOUND;
    p = shmreg__span(r, shmreg_pair_offset(v), shmreg_pair_length(v));
    if (p == NULL)
        return SHMREG_ECORRUPT;
    *val = p;
    *vlen = (size_t)shmreg_pair_length(v);
    return 0;
}

/* Descends from the head to the first node on level 0 whose key is >= key
 * and sets *out to its offset (0: the end of the list). */
static inline int shmreg__seek(const struct shmreg_region *r, const void *key, size_t klen, uint64_t *out)
{
    const struct shmreg_node *x = r->head;
    uint64_t steps = r->step_limit, off = 0;
    uint32_t level = r->max_height;

    while (level-- > 0) {
        while ((off = atomic_load_explicit(&x->next[level], memory_order_acquire)) != 0) {
            const struct shmreg_node *n;
            const unsigned char *k;
            size_t kl;

            /* A node linked on this level must be at least this tall. */
            if (steps-- == 0 || (n = shmreg__node(r, off)) == NULL || n->height <= level ||
                (k = shmreg__key(r, n, &kl)) == NULL)
                return SHMREG_ECORRUPT;
            if (shmreg__cmp(k, kl, key, klen) >= 0)
                break;
            x = n;
        }
    }
    *out = off;
    return 0;
}

/* Walks level 0 from the node at off (inclusive) to the first one whose key
 * starts with want[0..wlen) and whose value is present, stopping at the first
 * key without that prefix. Returns 0 with the node's key and value,
 * SHMREG_ENOTFOUND, or SHMREG_ECORRUPT. *steps bounds the walk. */
static inline int shmreg__walk(const struct shmreg_region *r, uint64_t off, const void *want, size_t wlen,
                               uint64_t *steps, const struct shmreg_node **node,
                               const void **key, size_t *klen, const void **val, size_t *vlen)
{
    for (; off != 0; off = atomic_load_explicit(&(*node)->next[0], memory_order_acquire)) {
        const unsigned char *k;
        int rc;

        if ((*steps)-- == 0 || (*node = shmreg__node(r, off)) == NULL ||
            (k = shmreg__key(r, *node, klen)) == NULL)
            return SHMREG_ECORRUPT;
        if (*klen < wlen || memcmp(k, want, wlen) != 0)
            return SHMREG_ENOTFOUND;
        *key = k;
        rc = shmreg__value(r, *node, val, vlen);
        if (rc != SHMREG_ENOTFOUND)
            return rc;
    }
    return SHMREG_ENOTFOUND;
}

/* Lookups and iteration run inside a read section: SHMREG_ESECTION
 * outside one, SHMREG_ESUPERSEDED once the file was replaced. */
static inline int shmreg__check(const struct shmreg_region *r)
{
    if (!r->in_section)
        return SHMREG_ESECTION;
    if (shmreg__superseded(r))
        return SHMREG_ESUPERSEDED;
    return 0;
}

/* Looks key up through the skiplist alone: O(log n). Call it inside a read
 * section. Returns 0 and the value (valid until the section ends),
 * SHMREG_ENOTFOUND, SHMREG_ESUPERSEDED, SHMREG_ESECTION or SHMREG_ECORRUPT. */
static inline int shmreg_get_skiplist(const struct shmreg_region *r, const void *key, size_t klen,
                                      const void **val, size_t *vlen)
{
    const struct shmreg_node *n;
    const void *k;
    size_t kl;
    uint64_t off, steps = r->step_limit;
    int rc;

    if ((rc = shmreg__check(r)) != 0)
        return rc;
    rc = shmreg__seek(r, key, klen, &off);
    if (rc != 0)
        return rc;
    /* The first live node with key as a prefix: it is key itself or a longer
     * key. (A deleted node and a re-inserted one for the same key can both be
     * reachable for a moment; walking on finds the live one.) */
    rc = shmreg__walk(r, off, key, klen, &steps, &n, &k, &kl, val, vlen);
    return rc == 0 && kl != klen ? SHMREG_ENOTFOUND : rc;
}

/* Looks key up through the index: O(1). Call it inside a read section. Same
 * results as shmreg_get_skiplist(), which it falls back to if no index is
 * published. */
static inline int shmreg_get(const struct shmreg_region *r, const void *key, size_t klen,
                             const void **val, size_t *vlen)
{
    const struct shmreg_index *t;
    uint64_t off, cap, hash, i;
    int rc;

    if ((rc = shmreg__check(r)) != 0)
        return rc;
    off = atomic_load_explicit(&r->hdr->index, memory_order_acquire);
    if (off == 0)
        return shmreg_get_skiplist(r, key, klen, val, vlen);
    if (off % SHMREG_ALIGN != 0 || off < SHMREG_HEADER_SIZE ||
        (t = (const void *)shmreg__span(r, off, sizeof *t)) == NULL)
        return SHMREG_ECORRUPT;
    cap = t->capacity;
    if (cap == 0 || (cap & (cap - 1)) != 0 || cap > (r->size - off - sizeof *t) / 8)
        return SHMREG_ECORRUPT;

    hash = shmreg_hash(key, klen);
    /* The writer keeps used + tombstones <= capacity/2, so an empty slot
     * always ends the probe; not finding one within capacity is corruption. */
    for (i = 0; i < cap; i++) {
        uint64_t s = atomic_load_explicit(&t->slots[(hash + i) & (cap - 1)], memory_order_acquire);
        const struct shmreg_node *n;
        const unsigned char *k;
        size_t kl;

        if (s == SHMREG_INDEX_EMPTY)
            return SHMREG_ENOTFOUND;
        if (s == SHMREG_INDEX_TOMBSTONE || (s ^ hash) >> SHMREG_PAIR_OFFSET_BITS != 0)
            continue; /* a tombstone, or another key's tag */
        if ((n = shmreg__node(r, shmreg_pair_offset(s))) == NULL || (k = shmreg__key(r, n, &kl)) == NULL)
            return SHMREG_ECORRUPT;
        if (shmreg__cmp(k, kl, key, klen) != 0)
            continue;
        /* Value 0: deleted and not yet tombstoned, or inserted and not yet
         * published. Keep probing, as for a tombstone: a newer node for the
         * same key may sit further on. */
        rc = shmreg__value(r, n, val, vlen);
        if (rc != SHMREG_ENOTFOUND)
            return rc;
    }
    return SHMREG_ECORRUPT;
}

/* The one-shot lookup: looks key up (through the index) and copies its value
 * into buf, which holds cap bytes. Outside a section it begins and ends one
 * of its own; inside one it leaves ending it to the caller. Returns 0 with
 * *vlen = the value's length; -ERANGE if the value needs more than cap bytes
 * (*vlen says how many; nothing is copied); SHMREG_EEVICTED if its own
 * section was evicted (buf holds nothing usable: call again); or what
 * shmreg_get() returns. *vlen is 0 after any return but 0 and -ERANGE. */
static inline int shmreg_get_copy(struct shmreg_region *r, const void *key, size_t klen,
                                  void *buf, size_t cap, size_t *vlen)
{
    int own = !r->in_section, rc, erc;
    const void *v;
    size_t n;

    *vlen = 0;
    if (own && (rc = shmreg_read_begin(r)) != 0)
        return rc;
    rc = shmreg_get(r, key, klen, &v, &n);
    if (rc == 0) {
        *vlen = n;
        if (n > cap)
            rc = -ERANGE;
        else if (n > 0)
            memcpy(buf, v, n);
    }
    if (own && (erc = shmreg_read_end(r)) != 0)
        rc = erc;
    return rc;
}

/* ---- iteration ----------------------------------------------------------- */

/* An in-order walk of the live entries on level 0, inside one read section.
 * key/val point into the mapping and are valid until the section ends; a
 * walk cannot be continued in a later section (its node may have been
 * reused in between): seek again, after the last key you copied. A walk that
 * races the writer yields keys in strictly increasing order, each at most
 * once, and every key that stayed live throughout it; keys inserted or
 * deleted meanwhile may or may not appear. A long walk makes a long section:
 * past the writer's read lease it ends in SHMREG_EEVICTED.
 *
 *     struct shmreg_iter it;
 *     if ((rc = shmreg_read_begin(&r)) == 0) {
 *         for (rc = shmreg_iter_seek(&r, &it, "svc/", 4); rc == 0; rc = shmreg_iter_next(&it))
 *             use(it.key, it.klen, it.val, it.vlen);
 *         erc = shmreg_read_end(&r);     SHMREG_EEVICTED: discard what use() saw
 *     }
 *     if (rc != SHMREG_ENOTFOUND)
 *         fail(shmreg_strerror(rc));
 */
struct shmreg_iter {
    const struct shmreg_region *r;
    const struct shmreg_node *node; /* the current entry */
    const void *prefix;             /* the walk ends at the first key without it */
    size_t plen;
    uint64_t steps;                 /* links left before we call it a cycle */
    int err;                        /* sticky: 0, or why the walk ended */
    const void *key, *val;          /* the current entry */
    size_t klen, vlen;
};

static inline int shmreg__iter_walk(struct shmreg_iter *it, uint64_t off)
{
    it->err = shmreg__walk(it->r, off, it->prefix, it->plen, &it->steps, &it->node,
                           &it->key, &it->klen, &it->val, &it->vlen);
    return it->err;
}

/* Positions it on the first live key that starts with prefix (plen may be
 * 0). Returns 0 with it->key/val set, SHMREG_ENOTFOUND if there is none, or
 * an error. prefix must outlive the walk. */
static inline int shmreg_iter_seek(const struct shmreg_region *r, struct shmreg_iter *it,
                                   const void *prefix, size_t plen)
{
    uint64_t off;

    memset(it, 0, sizeof *it);
    it->r = r;
    it->prefix = plen > 0 ? prefix : "";
    it->plen = plen;
    it->steps = r->step_limit;
    if ((it->err = shmreg__check(r)) != 0)
        return it->err;
    it->err = shmreg__seek(r, it->prefix, plen, &off);
    return it->err != 0 ? it->err : shmreg__iter_walk(it, off);
}

static inline int shmreg_iter_first(const struct shmreg_region *r, struct shmreg_iter *it)
{
    return shmreg_iter_seek(r, it, NULL, 0);
}

/* Moves to the next live entry. Same returns as shmreg_iter_seek(). */
static inline int shmreg_iter_next(struct shmreg_iter *it)
{
    if (it->err != 0)
        return it->err;
    if (!it->r->in_section)
        return it->err = SHMREG_ESECTION;
    return shmreg__iter_walk(it, atomic_load_explicit(&it->node->next[0], memory_order_acquire));
}

#endif /* SHMREG_H */
