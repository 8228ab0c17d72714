/*
 * shmreg.h - read a shmreg region from C.
 *
 * Layout version 1. This header is the C half of docs/LAYOUT.md; the Go
 * declarations (shm/layout.go, skiplist/node.go) are the other half, and
 * shm/layout_test.go checks that all three agree.
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
 *           new one, never a mix.
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
 * returns SHMREG_ESUPERSEDED when it is set: call
 * shmreg_reopen_if_superseded(). (The old file stays correct, only stale.)
 *
 * WHAT THIS READER DOES NOT DO (version 1)
 *
 * - It takes no reader slot in NAME.ctl (the Go reader does). Retired bytes
 *   are not reused yet, so today a key or value pointer stays readable until
 *   shmreg_close() or shmreg_reopen_if_superseded() unmaps the file; once
 *   memory reuse lands, bytes a slot-less reader is viewing may be recycled
 *   under it. Copy values out promptly rather than keeping pointers.
 * - It does not wait for changes (the futex on ctl.notify_seq) and does not
 *   touch the reader/writer lock.
 * - It trusts nothing in the file: every offset, length, height and capacity
 *   is checked against the mapped size, and every walk is bounded, so a
 *   corrupt file yields SHMREG_ECORRUPT rather than a wild read or a hang.
 *   It cannot prevent SIGBUS if someone truncates the file while it is mapped
 *   (the writer never does; it replaces files by rename).
 *
 * THREADS
 *
 * A struct shmreg_region is read-only after shmreg_open(): any number of
 * threads may call shmreg_get*() and iterate on it concurrently.
 * shmreg_reopen_if_superseded() and shmreg_close() replace or unmap it, so the
 * caller must make sure no other thread is using it at that moment.
 *
 * RETURN CODES
 *
 * 0 on success; a negative errno value (e.g. -ENOENT) when a system call
 * fails; or one of the SHMREG_E* codes below. shmreg_strerror() names them.
 *
 * USE
 *
 *     struct shmreg_region r;
 *     const void *val;
 *     size_t len;
 *     int rc = shmreg_open("/dev/shm/shmreg/NAME", &r);
 *     if (rc == 0) {
 *         rc = shmreg_get(&r, "svc/web/1", 9, &val, &len);
 *         if (rc == SHMREG_ESUPERSEDED && shmreg_reopen_if_superseded(&r, "/dev/shm/shmreg/NAME") == 1)
 *             rc = shmreg_get(&r, "svc/web/1", 9, &val, &len);
 *         ... rc is 0 (copy val out), SHMREG_ENOTFOUND, or an error ...
 *         shmreg_close(&r);
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
#include <sys/mman.h>
#include <sys/stat.h>
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

#define SHMREG_LAYOUT_VERSION 1
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
    uint32_t version;      /* SHMREG_LAYOUT_VERSION; anything else is refused */
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
    uint64_t value_alloc;    /* lowest byte used by values (they grow down from file_size) */
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
    uint32_t reserved;
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
    uint32_t version;      /* SHMREG_LAYOUT_VERSION */
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
 * ones. The C reader in this header takes no slot (see above). */
struct shmreg_slot {
    uint64_t owner;         /* 0 = free, else pid << 32 | nonce */
    _Atomic uint64_t epoch; /* 0 = never read; else the generation of the owner's latest
                               read (it stays published between reads); bit 63
                               (SHMREG_EPOCH_FORCED) set by the writer, with the generation
                               at which it forced the slot in the low bits */
    uint32_t pid;           /* informational */
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

    while (len > 0) {
        size_t n = len < 8 ? len : 8;
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++) /* little-endian, zero-extended */
            c |= (uint64_t)p[i] << (8 * i);
        h = (h ^ c) * K2;
        h ^= h >> 29;
        p += n;
        len -= n;
    }
    h ^= h >> 33;
    h *= K3;
    h ^= h >> 33;
    h *= K4;
    h ^= h >> 33;
    return h;
}

/* ---- opening ------------------------------------------------------------- */

/* O_CLOEXEC is POSIX.1-2008; under a strict -std=c11 it may be hidden, and
 * the descriptor is closed before shmreg_open() returns anyway. */
#ifdef O_CLOEXEC
#define SHMREG__O_CLOEXEC O_CLOEXEC
#else
#define SHMREG__O_CLOEXEC 0
#endif

/* A mapped data file. Read-only after shmreg_open(). */
struct shmreg_region {
    const unsigned char *base;       /* the mapping, file_size bytes, PROT_READ */
    const struct shmreg_header *hdr; /* == base */
    const struct shmreg_node *head;
    uint64_t size;                   /* header.file_size: the bound every offset is checked against */
    uint32_t max_height;
    uint64_t step_limit;             /* more links than any walk of a sane file can follow */
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

static inline int shmreg_close(struct shmreg_region *r)
{
    int rc = 0;

    if (r->base != NULL && munmap((void *)r->base, (size_t)r->size) != 0)
        rc = -errno;
    memset(r, 0, sizeof *r);
    return rc;
}

/* Checks the header that is mapped at r->base (r->size bytes of it are
 * readable) and fills in the rest of r. */
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

/* Maps the data file at path read-only and checks its header. On success
 * returns 0 and fills *r; on failure returns a negative code and leaves *r
 * zeroed. */
static inline int shmreg_open(const char *path, struct shmreg_region *r)
{
    struct shmreg_header h;
    struct stat st;
    void *base;
    ssize_t got;
    int fd, rc;

    memset(r, 0, sizeof *r);
    fd = open(path, O_RDONLY | SHMREG__O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    memset(&h, 0, sizeof h);
    got = 0;
    while (got < (ssize_t)sizeof h) { /* read() may return short */
        ssize_t n = read(fd, (char *)&h + got, sizeof h - (size_t)got);
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        if (n > 0)
            got += n;
    }
    /* A stray short file is "not shmreg" rather than "cut short"; the header
     * fields are trusted only once magic and version match. */
    if (got >= SHMREG_MAGIC_SIZE && memcmp(h.magic, SHMREG_MAGIC, SHMREG_MAGIC_SIZE) != 0)
        rc = SHMREG_EMAGIC;
    else if (got < (ssize_t)offsetof(struct shmreg_header, header_size))
        rc = SHMREG_ETRUNCATED;
    else if (h.version != SHMREG_LAYOUT_VERSION)
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
        shmreg_close(r);
out:
    close(fd);
    return rc;
}

static inline int shmreg__superseded(const struct shmreg_region *r)
{
    return (atomic_load_explicit(&r->hdr->state, memory_order_acquire) & SHMREG_STATE_SUPERSEDED) != 0;
}

/* If the file r maps has been replaced at path, maps the new one in its
 * place. Returns 1 if it reopened, 0 if r was current, or a negative code (r
 * then still maps the old file, which stays readable). Not thread-safe. */
static inline int shmreg_reopen_if_superseded(struct shmreg_region *r, const char *path)
{
    struct shmreg_region fresh;
    int rc;

    if (!shmreg__superseded(r))
        return 0;
    rc = shmreg_open(path, &fresh);
    if (rc != 0)
        return rc;
    shmreg_close(r);
    *r = fresh;
    return 1;
}

/* The generation (commit count) the writer last published. */
static inline uint64_t shmreg_generation(const struct shmreg_region *r)
{
    return atomic_load_explicit(&r->hdr->generation, memory_order_acquire);
}

static inline const char *shmreg_strerror(int rc)
{
    switch (rc) {
    case 0: return "success";
    case SHMREG_ENOTFOUND: return "shmreg: not found";
    case SHMREG_EMAGIC: return "shmreg: not a region data file (bad magic)";
    case SHMREG_EVERSION: return "shmreg: unknown layout version";
    case SHMREG_ETRUNCATED: return "shmreg: file shorter than its header says";
    case SHMREG_ECORRUPT: return "shmreg: corrupt region";
    case SHMREG_ESUPERSEDED: return "shmreg: region superseded, reopen it";
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

/* Looks key up through the skiplist alone: O(log n). Returns 0 and the value
 * (valid while the region stays mapped; see the top of this file),
 * SHMREG_ENOTFOUND, SHMREG_ESUPERSEDED or SHMREG_ECORRUPT. */
static inline int shmreg_get_skiplist(const struct shmreg_region *r, const void *key, size_t klen,
                                      const void **val, size_t *vlen)
{
    const struct shmreg_node *n;
    const void *k;
    size_t kl;
    uint64_t off, steps = r->step_limit;
    int rc;

    if (shmreg__superseded(r))
        return SHMREG_ESUPERSEDED;
    rc = shmreg__seek(r, key, klen, &off);
    if (rc != 0)
        return rc;
    /* The first live node with key as a prefix: it is key itself or a longer
     * key. (A deleted node and a re-inserted one for the same key can both be
     * reachable for a moment; walking on finds the live one.) */
    rc = shmreg__walk(r, off, key, klen, &steps, &n, &k, &kl, val, vlen);
    return rc == 0 && kl != klen ? SHMREG_ENOTFOUND : rc;
}

/* Looks key up through the index: O(1). Same results as
 * shmreg_get_skiplist(), which it falls back to if no index is published. */
static inline int shmreg_get(const struct shmreg_region *r, const void *key, size_t klen,
                             const void **val, size_t *vlen)
{
    const struct shmreg_index *t;
    uint64_t off, cap, hash, i;

    if (shmreg__superseded(r))
        return SHMREG_ESUPERSEDED;
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
        int rc;

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

/* ---- iteration ----------------------------------------------------------- */

/* An in-order walk of the live entries on level 0. key/val point into the
 * mapping (see the top of this file for how long they stay valid). A walk
 * that races the writer yields keys in strictly increasing order, each at
 * most once, and every key that stayed live throughout it; keys inserted or
 * deleted meanwhile may or may not appear.
 *
 *     struct shmreg_iter it;
 *     for (rc = shmreg_iter_seek(&r, &it, "svc/", 4); rc == 0; rc = shmreg_iter_next(&it))
 *         use(it.key, it.klen, it.val, it.vlen);
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
    if (shmreg__superseded(r))
        return it->err = SHMREG_ESUPERSEDED;
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
    return shmreg__iter_walk(it, atomic_load_explicit(&it->node->next[0], memory_order_acquire));
}

#endif /* SHMREG_H */
