/*
 * selftest - writes small regions by hand, following docs/LAYOUT.md, and
 * reads them back through shmreg.h: a good one, the in-between states the
 * publication order allows, and corrupt ones that must fail cleanly; and the
 * reader-slot protocol: claiming and releasing slots, read sections, a slot
 * forced by the writer, control files that must be refused.
 *
 *   selftest              run every check; exit 0 if all pass
 *   selftest --write PATH write the good sample region to PATH and its control
 *                         file to PATH.ctl (for `make test`)
 *
 * It asks for POSIX.1-2008 only, not _GNU_SOURCE, so that the header is
 * built the way a strict program would build it.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "shmreg.h"

#define REGION_SIZE (64 * 1024)
#define INDEX_CAP 32

/* The sample: in key order, as the list links them. NULL value = value word
 * 0 (deleted, or inserted and not yet published). "dup" appears twice: a
 * deleted node still linked, then its live re-insertion. */
static const struct sample {
    const char *key, *val;
    unsigned height;
} samples[] = {
    {"a", "1", 1},
    {"b", "two", 3},          /* updated: its value word points away from the node */
    {"dup", NULL, 2},
    {"dup", "again", 1},
    {"empty", "", 1},
    {"gone", NULL, 16},       /* deleted: value 0, index slot a tombstone */
    {"pending", NULL, 1},     /* linked and indexed, value not stored yet */
    {"svc/x/1", "\x01\x02", 4},
    {"svc/x/2", "\xff", 1},
    {"svc/y/1", "y", 2},
    {"z", NULL, 1},           /* value set below: 300 bytes */
};
#define NSAMPLES (sizeof samples / sizeof samples[0])
static char zval[300];

/* A region under construction, in memory. */
struct built {
    union {
        unsigned char bytes[REGION_SIZE];
        uint64_t align; /* the atomic words inside must be 8-aligned */
    } mem;
    uint64_t alloc;
    uint64_t node[NSAMPLES];
    uint64_t head, index;
};

static struct shmreg_header *hdr(struct built *b) { return (void *)b->mem.bytes; }
static struct shmreg_node *node(struct built *b, uint64_t off) { return (void *)(b->mem.bytes + off); }
static struct shmreg_index *table(struct built *b) { return (void *)(b->mem.bytes + b->index); }

static uint64_t alloc(struct built *b, uint64_t size)
{
    uint64_t off = b->alloc;

    b->alloc += (size + SHMREG_ALIGN - 1) & ~(uint64_t)(SHMREG_ALIGN - 1);
    if (b->alloc > REGION_SIZE) {
        fprintf(stderr, "selftest: sample region too small\n");
        exit(2);
    }
    return off;
}

static uint64_t put_bytes(struct built *b, const void *p, size_t len)
{
    uint64_t off = alloc(b, len);
    memcpy(b->mem.bytes + off, p, len);
    return off;
}

/* A node, its key and its first value, back to back in one allocation. */
static uint64_t new_node(struct built *b, const char *key, size_t klen, const char *val, size_t vlen, unsigned height)
{
    uint64_t tower = sizeof(struct shmreg_node) + 8 * (uint64_t)height;
    uint64_t off = alloc(b, tower + klen + vlen);
    struct shmreg_node *n = node(b, off);

    n->height = height;
    n->key = shmreg_pair(off + tower, klen);
    memcpy(b->mem.bytes + off + tower, key, klen);
    if (val != NULL) /* memcpy from NULL, even of 0 bytes, would let the compiler drop the test below */
        memcpy(b->mem.bytes + off + tower + klen, val, vlen);
    atomic_store(&n->value, val != NULL ? shmreg_pair(off + tower + klen, vlen) : 0);
    return off;
}

static void index_put(struct built *b, uint64_t word, uint64_t hash)
{
    struct shmreg_index *t = table(b);
    uint64_t i = hash;

    while (atomic_load(&t->slots[i & (INDEX_CAP - 1)]) != SHMREG_INDEX_EMPTY)
        i++;
    atomic_store(&t->slots[i & (INDEX_CAP - 1)], word);
    if (word == SHMREG_INDEX_TOMBSTONE)
        t->tombstones++;
    else
        t->used++;
}

static const char *sample_val(size_t i, size_t *len)
{
    if (strcmp(samples[i].key, "z") == 0) {
        *len = sizeof zval;
        return zval;
    }
    *len = samples[i].val != NULL ? strlen(samples[i].val) : 0;
    return samples[i].val;
}

static int live(size_t i)
{
    size_t len;
    return sample_val(i, &len) != NULL;
}

static void build(struct built *b)
{
    struct shmreg_header *h = hdr(b);
    uint64_t prev[SHMREG_MAX_HEIGHT];

    memset(b, 0, sizeof *b);
    memcpy(h->magic, SHMREG_MAGIC, SHMREG_MAGIC_SIZE);
    h->version = SHMREG_LAYOUT_VERSION;
    h->header_size = SHMREG_HEADER_SIZE;
    h->file_size = REGION_SIZE;
    h->pool_start = SHMREG_HEADER_SIZE;
    h->max_height = SHMREG_MAX_HEIGHT;
    b->alloc = SHMREG_HEADER_SIZE;
    b->head = h->head = new_node(b, "", 0, NULL, 0, SHMREG_MAX_HEIGHT);

    for (size_t i = 0; i < NSAMPLES; i++) {
        size_t vlen;
        const char *v = sample_val(i, &vlen);
        int updated = strcmp(samples[i].key, "b") == 0;

        b->node[i] = new_node(b, samples[i].key, strlen(samples[i].key), updated ? "old" : v,
                              updated ? 3 : vlen, samples[i].height);
        if (updated) /* fresh bytes, then one word swapped */
            atomic_store(&node(b, b->node[i])->value, shmreg_pair(put_bytes(b, v, vlen), vlen));
    }
    /* Link each level in key order. */
    for (unsigned l = 0; l < SHMREG_MAX_HEIGHT; l++)
        prev[l] = b->head;
    for (size_t i = 0; i < NSAMPLES; i++)
        for (unsigned l = 0; l < samples[i].height; l++) {
            atomic_store(&node(b, prev[l])->next[l], b->node[i]);
            prev[l] = b->node[i];
        }

    b->index = alloc(b, sizeof(struct shmreg_index) + 8 * INDEX_CAP);
    table(b)->capacity = INDEX_CAP;
    /* A tombstone on b's home slot, so that finding b means probing past it. */
    index_put(b, SHMREG_INDEX_TOMBSTONE, shmreg_hash("b", 1));
    for (size_t i = 0; i < NSAMPLES; i++) {
        const char *k = samples[i].key;
        uint64_t hash = shmreg_hash(k, strlen(k));
        index_put(b, strcmp(k, "gone") == 0 ? SHMREG_INDEX_TOMBSTONE : shmreg_index_word(b->node[i], hash), hash);
    }
    atomic_store(&h->index, b->index);
    atomic_store(&h->generation, 1);
    h->alloc = b->alloc;
}

static uint64_t find(struct built *b, const char *key, int want_live)
{
    for (size_t i = 0; i < NSAMPLES; i++)
        if (strcmp(samples[i].key, key) == 0 && (!want_live || live(i)))
            return b->node[i];
    abort();
}

static void write_file(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");

    if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* ---- control files ------------------------------------------------------ */

#define CTL_SLOTS 4
#define CTL_SIZE (SHMREG_CTL_SLOTS_OFFSET + CTL_SLOTS * sizeof(struct shmreg_slot))

/* A control file as a writer creates it: the header, the lock area (left
 * zero: this reader never touches it) and CTL_SLOTS free slots. */
static union {
    unsigned char bytes[CTL_SIZE];
    uint64_t align;
} ctl_image;

static struct shmreg_ctl *ctl_header(void) { return (void *)ctl_image.bytes; }

static void build_ctl(void)
{
    struct shmreg_ctl *c = ctl_header();

    memset(&ctl_image, 0, sizeof ctl_image);
    memcpy(c->magic, SHMREG_CTL_MAGIC, SHMREG_MAGIC_SIZE);
    c->version = SHMREG_CTL_VERSION;
    c->slot_count = CTL_SLOTS;
    c->file_size = CTL_SIZE;
}

static void ctl_path(char *out, size_t cap, const char *path) { snprintf(out, cap, "%s.ctl", path); }

static void write_ctl(const char *path, const void *p, size_t len)
{
    char cpath[4200];

    ctl_path(cpath, sizeof cpath, path);
    write_file(cpath, p, len);
}

/* ---- checks ------------------------------------------------------------- */

static int failures;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (!(cond)) {                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);  \
            fprintf(stderr, __VA_ARGS__);                         \
            fputc('\n', stderr);                                  \
            failures++;                                           \
        }                                                         \
    } while (0)

static int same(const void *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static void check_found(const struct shmreg_region *r, const char *key, const char *want, size_t wlen)
{
    const void *v = NULL;
    size_t vl = 0;
    int rc = shmreg_get(r, key, strlen(key), &v, &vl);

    CHECK(rc == 0 && same(v, vl, want, wlen), "get(%s): %s", key, shmreg_strerror(rc));
    v = NULL;
    rc = shmreg_get_skiplist(r, key, strlen(key), &v, &vl);
    CHECK(rc == 0 && same(v, vl, want, wlen), "get_skiplist(%s): %s", key, shmreg_strerror(rc));
}

static void check_missing(const struct shmreg_region *r, const char *key, size_t klen)
{
    const void *v;
    size_t vl;
    int rc = shmreg_get(r, key, klen, &v, &vl);

    CHECK(rc == SHMREG_ENOTFOUND, "get(%.*s) = %s, want not found", (int)klen, key, shmreg_strerror(rc));
    rc = shmreg_get_skiplist(r, key, klen, &v, &vl);
    CHECK(rc == SHMREG_ENOTFOUND, "get_skiplist(%.*s) = %s, want not found", (int)klen, key, shmreg_strerror(rc));
}

/* Walks the entries under prefix and checks they are exactly the live
 * samples with that prefix, in order. */
static void check_scan(const struct shmreg_region *r, const char *prefix)
{
    struct shmreg_iter it;
    size_t i = 0;
    int rc;

    for (rc = shmreg_iter_seek(r, &it, prefix, strlen(prefix)); rc == 0; rc = shmreg_iter_next(&it)) {
        size_t vlen;
        const char *v;

        while (i < NSAMPLES && (!live(i) || strncmp(samples[i].key, prefix, strlen(prefix)) != 0))
            i++;
        if (i == NSAMPLES) {
            CHECK(0, "scan(%s): extra key %.*s", prefix, (int)it.klen, (const char *)it.key);
            return;
        }
        v = sample_val(i, &vlen);
        CHECK(same(it.key, it.klen, samples[i].key, strlen(samples[i].key)) && same(it.val, it.vlen, v, vlen),
              "scan(%s): got %.*s, want %s", prefix, (int)it.klen, (const char *)it.key, samples[i].key);
        i++;
    }
    CHECK(rc == SHMREG_ENOTFOUND, "scan(%s) ended with %s", prefix, shmreg_strerror(rc));
    while (i < NSAMPLES && (!live(i) || strncmp(samples[i].key, prefix, strlen(prefix)) != 0))
        i++;
    CHECK(i == NSAMPLES, "scan(%s): missed %s", prefix, i < NSAMPLES ? samples[i].key : "");
    CHECK(shmreg_iter_next(&it) == rc, "a finished iterator must stay finished");
}

static void check_good(const char *path)
{
    struct shmreg_region r;
    int rc = shmreg_open(path, &r);

    CHECK(rc == 0, "open good region: %s", shmreg_strerror(rc));
    if (rc != 0)
        return;
    rc = shmreg_read_begin(&r);
    CHECK(rc == 0, "begin: %s", shmreg_strerror(rc));
    for (size_t i = 0; i < NSAMPLES; i++) {
        size_t vlen;
        const char *v = sample_val(i, &vlen);
        if (v != NULL)
            check_found(&r, samples[i].key, v, vlen);
    }
    check_missing(&r, "gone", 4);
    check_missing(&r, "pending", 7);
    check_missing(&r, "", 0);
    check_missing(&r, "c", 1);
    check_missing(&r, "svc/", 4);
    check_missing(&r, "zz", 2);
    check_missing(&r, "a\0", 2);
    check_scan(&r, "");
    check_scan(&r, "svc/x/");
    check_scan(&r, "svc/");
    check_scan(&r, "q");
    check_scan(&r, "zzz");
    rc = shmreg_read_end(&r);
    CHECK(rc == 0, "end: %s", shmreg_strerror(rc));
    CHECK(shmreg_generation(&r) == 1, "generation");
    shmreg_close(&r);
}

/* Runs every read operation over the region, in one read section; returns
 * the first code that is neither success nor not-found. */
static int exercise_section(const struct shmreg_region *r)
{
    struct shmreg_iter it;
    const char *extra[] = {"", "c", "zz", "zzzz"};
    const void *v;
    size_t vl;
    int rc;

    for (rc = shmreg_iter_first(r, &it); rc == 0; rc = shmreg_iter_next(&it))
        ;
    if (rc != SHMREG_ENOTFOUND)
        return rc;
    for (size_t i = 0; i < NSAMPLES + 4; i++) {
        const char *k = i < NSAMPLES ? samples[i].key : extra[i - NSAMPLES];
        if ((rc = shmreg_get(r, k, strlen(k), &v, &vl)) != 0 && rc != SHMREG_ENOTFOUND)
            return rc;
        if ((rc = shmreg_get_skiplist(r, k, strlen(k), &v, &vl)) != 0 && rc != SHMREG_ENOTFOUND)
            return rc;
    }
    return 0;
}

static int exercise(struct shmreg_region *r)
{
    int rc = shmreg_read_begin(r), erc;

    if (rc != 0)
        return rc;
    rc = exercise_section(r);
    erc = shmreg_read_end(r);
    return rc != 0 ? rc : erc;
}

/* ---- corrupt variants --------------------------------------------------- */

static void bad_magic(struct built *b) { hdr(b)->magic[0] = 'X'; }
static void version_3(struct built *b) { hdr(b)->version = 3; }
static void version_1(struct built *b) { hdr(b)->version = 1; }
static void version_0(struct built *b) { hdr(b)->version = 0; }
static void bad_header_size(struct built *b) { hdr(b)->header_size = 512; }
static void head_past_end(struct built *b) { hdr(b)->head = REGION_SIZE - 8; }
static void head_too_short(struct built *b) { node(b, b->head)->height = 3; }
static void index_past_end(struct built *b) { atomic_store(&hdr(b)->index, REGION_SIZE + 4096); }
static void index_misaligned(struct built *b) { atomic_store(&hdr(b)->index, b->index + 4); }
static void index_not_pow2(struct built *b) { table(b)->capacity = 24; }
static void index_too_big(struct built *b) { table(b)->capacity = 1u << 20; }
static void slot_past_end(struct built *b)
{
    uint64_t hash = shmreg_hash("a", 1);
    atomic_store(&table(b)->slots[hash & (INDEX_CAP - 1)], shmreg_index_word(REGION_SIZE + 64, hash));
}
static void index_no_empty_slot(struct built *b)
{
    for (int i = 0; i < INDEX_CAP; i++)
        if (atomic_load(&table(b)->slots[i]) == SHMREG_INDEX_EMPTY)
            atomic_store(&table(b)->slots[i], SHMREG_INDEX_TOMBSTONE);
}
static void next_past_end(struct built *b) { atomic_store(&node(b, find(b, "empty", 1))->next[0], REGION_SIZE); }
static void next_misaligned(struct built *b) { atomic_store(&node(b, find(b, "a", 1))->next[0], find(b, "b", 1) + 1); }
static void next_into_header(struct built *b) { atomic_store(&node(b, find(b, "a", 1))->next[0], 64); }
static void height_zero(struct built *b) { node(b, find(b, "svc/x/2", 1))->height = 0; }
static void height_too_tall(struct built *b) { node(b, find(b, "svc/x/2", 1))->height = 17; }
static void link_on_short_node(struct built *b) { atomic_store(&node(b, b->head)->next[5], find(b, "a", 1)); }
static void key_past_end(struct built *b) { node(b, find(b, "svc/x/1", 1))->key = shmreg_pair(REGION_SIZE - 2, 7); }
static void value_past_end(struct built *b)
{
    atomic_store(&node(b, find(b, "svc/y/1", 1))->value, shmreg_pair(REGION_SIZE - 1, 1000));
}
static void value_in_header(struct built *b) { atomic_store(&node(b, find(b, "a", 1))->value, shmreg_pair(8, 4)); }
static void cycle_level0(struct built *b) { atomic_store(&node(b, find(b, "z", 0))->next[0], find(b, "a", 1)); }
static void cycle_self(struct built *b) { atomic_store(&node(b, find(b, "gone", 0))->next[15], find(b, "gone", 0)); }

static const struct variant {
    const char *name;
    void (*mutate)(struct built *);
    int open_rc; /* what shmreg_open must return */
    int use_rc;  /* then what exercise() must return */
} variants[] = {
    {"bad magic", bad_magic, SHMREG_EMAGIC, 0},
    {"version 3", version_3, SHMREG_EVERSION, 0},
    {"version 0", version_0, SHMREG_EVERSION, 0},
    {"version 1 (reads like 2)", version_1, 0, 0},
    {"header size", bad_header_size, SHMREG_ECORRUPT, 0},
    {"head past end", head_past_end, SHMREG_ECORRUPT, 0},
    {"head too short", head_too_short, SHMREG_ECORRUPT, 0},
    {"index past end", index_past_end, 0, SHMREG_ECORRUPT},
    {"index misaligned", index_misaligned, 0, SHMREG_ECORRUPT},
    {"index capacity not a power of two", index_not_pow2, 0, SHMREG_ECORRUPT},
    {"index capacity past end", index_too_big, 0, SHMREG_ECORRUPT},
    {"index slot past end", slot_past_end, 0, SHMREG_ECORRUPT},
    {"index without an empty slot", index_no_empty_slot, 0, SHMREG_ECORRUPT},
    {"next past end", next_past_end, 0, SHMREG_ECORRUPT},
    {"next misaligned", next_misaligned, 0, SHMREG_ECORRUPT},
    {"next into the header", next_into_header, 0, SHMREG_ECORRUPT},
    {"height 0", height_zero, 0, SHMREG_ECORRUPT},
    {"height above max", height_too_tall, 0, SHMREG_ECORRUPT},
    {"linked above its height", link_on_short_node, 0, SHMREG_ECORRUPT},
    {"key past end", key_past_end, 0, SHMREG_ECORRUPT},
    {"value past end", value_past_end, 0, SHMREG_ECORRUPT},
    {"value in the header", value_in_header, 0, SHMREG_ECORRUPT},
    {"cycle on level 0", cycle_level0, 0, SHMREG_ECORRUPT},
    {"cycle on the top level", cycle_self, 0, SHMREG_ECORRUPT},
};

static void check_variant(const char *path, struct built *b, const struct variant *v)
{
    struct shmreg_region r;
    int rc;

    build(b);
    v->mutate(b);
    write_file(path, b->mem.bytes, REGION_SIZE);
    rc = shmreg_open(path, &r);
    CHECK(rc == v->open_rc, "%s: open = %s, want %s", v->name, shmreg_strerror(rc), shmreg_strerror(v->open_rc));
    if (rc != 0)
        return;
    rc = exercise(&r);
    CHECK(rc == v->use_rc, "%s: use = %s, want %s", v->name, shmreg_strerror(rc), shmreg_strerror(v->use_rc));
    shmreg_close(&r);
}

static void check_open_rc(const char *path, const void *p, size_t len, int want, const char *what)
{
    struct shmreg_region r;
    int rc;

    write_file(path, p, len);
    rc = shmreg_open(path, &r);
    CHECK(rc == want, "%s: open = %s, want %s", what, shmreg_strerror(rc), shmreg_strerror(want));
    if (rc == 0)
        shmreg_close(&r);
}

/* Random damage to the used part of the pool and the header's hot words:
 * whatever the reads return, they must return (no crash, no hang). */
static void check_random_damage(const char *path, struct built *b)
{
    uint64_t x = 0x2545F4914F6CDD1D; /* xorshift64: the same damage every run */

    for (int round = 0; round < 500; round++) {
        struct shmreg_region r;

        build(b);
        for (int i = 0; i < 1 + round % 8; i++) {
            uint64_t at;
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            at = x % (b->alloc - SHMREG_HEADER_SIZE + 24);
            /* the last 24 picks hit state, generation and index instead */
            at = at < b->alloc - SHMREG_HEADER_SIZE ? SHMREG_HEADER_SIZE + at : 64 + (at - (b->alloc - SHMREG_HEADER_SIZE));
            b->mem.bytes[at] ^= (unsigned char)(x >> 56 | 1);
        }
        write_file(path, b->mem.bytes, REGION_SIZE);
        if (shmreg_open(path, &r) == 0) {
            (void)exercise(&r);
            shmreg_close(&r);
        }
    }
}

/* The index is optional to readers: with none published, shmreg_get walks
 * the list. */
static void check_no_index(const char *path, struct built *b)
{
    build(b);
    atomic_store(&hdr(b)->index, 0);
    write_file(path, b->mem.bytes, REGION_SIZE);
    check_good(path);
}

/* A writer that compacts renames a new file over the path, then sets
 * SUPERSEDED in the old one; a reader still mapping the old one must be told,
 * and must find the new one by reopening the path. */
static void check_superseded(const char *path, struct built *b)
{
    const uint64_t superseded = SHMREG_STATE_SUPERSEDED;
    struct shmreg_region r;
    struct shmreg_iter it;
    char next[4200];
    const void *v;
    size_t vl;
    int rc, old;

    build(b);
    write_file(path, b->mem.bytes, REGION_SIZE);
    old = open(path, O_RDWR); /* the writer's handle on the old file */
    if (old < 0 || shmreg_open(path, &r) != 0) {
        CHECK(0, "superseded: open");
        return;
    }
    CHECK(shmreg_reopen_if_superseded(&r, path) == 0, "a current region needs no reopen");

    atomic_store(&node(b, find(b, "a", 1))->value, shmreg_pair(put_bytes(b, "new", 3), 3));
    snprintf(next, sizeof next, "%s.next", path);
    write_file(next, b->mem.bytes, REGION_SIZE);
    CHECK(rename(next, path) == 0, "rename");
    CHECK(lseek(old, (off_t)offsetof(struct shmreg_header, state), SEEK_SET) >= 0 &&
              write(old, &superseded, 8) == 8, "mark the old file superseded");
    close(old);

    CHECK(shmreg_read_begin(&r) == 0, "begin");
    CHECK(shmreg_get(&r, "a", 1, &v, &vl) == SHMREG_ESUPERSEDED, "get on a superseded region");
    CHECK(shmreg_get_skiplist(&r, "a", 1, &v, &vl) == SHMREG_ESUPERSEDED, "get_skiplist on a superseded region");
    CHECK(shmreg_iter_first(&r, &it) == SHMREG_ESUPERSEDED, "iterating a superseded region");
    /* The section may be reading the old mapping: no reopen under it. */
    CHECK(shmreg_reopen_if_superseded(&r, path) == -EBUSY, "reopen inside a section");
    CHECK(shmreg_read_end(&r) == 0, "end");
    {
        /* The control file is not replaced, so the slot is kept. */
        const unsigned char *ctl = r.ctl;
        struct shmreg_slot *slot = r.slot;
        uint64_t owner = atomic_load(&slot->owner);

        rc = shmreg_reopen_if_superseded(&r, path);
        CHECK(rc == 1, "reopen: %s", shmreg_strerror(rc));
        CHECK(r.ctl == ctl && r.slot == slot && atomic_load(&slot->owner) == owner,
              "reopen must keep the control mapping and the slot");
    }
    CHECK(shmreg_read_begin(&r) == 0, "begin after reopen");
    rc = shmreg_get(&r, "a", 1, &v, &vl);
    CHECK(rc == 0 && same(v, vl, "new", 3), "get after reopen: %s", shmreg_strerror(rc));
    CHECK(shmreg_read_end(&r) == 0, "end after reopen");
    shmreg_close(&r);
}

/* ---- reader slots and read sections ------------------------------------- */

/* A second view of the control file, as the writer has it: the slots, and a
 * descriptor of its own for F_OFD_GETLK (locks of one open file description
 * never conflict with each other, so the reader's own would not see them). */
struct ctl_view {
    int fd;
    unsigned char *mem;
};

static int ctl_view_open(const char *path, struct ctl_view *cv)
{
    char cpath[4200];

    ctl_path(cpath, sizeof cpath, path);
    cv->fd = open(cpath, O_RDWR);
    if (cv->fd < 0)
        return -1;
    cv->mem = mmap(NULL, CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, cv->fd, 0);
    if (cv->mem == MAP_FAILED) {
        close(cv->fd);
        return -1;
    }
    return 0;
}

static void ctl_view_close(struct ctl_view *cv)
{
    munmap(cv->mem, CTL_SIZE);
    close(cv->fd);
}

static struct shmreg_slot *view_slot(struct ctl_view *cv, unsigned i)
{
    return (void *)(cv->mem + SHMREG_CTL_SLOTS_OFFSET + sizeof(struct shmreg_slot) * i);
}

/* Whether some other open file description holds slot i's liveness lock,
 * as the writer asks. */
static int slot_locked(struct ctl_view *cv, unsigned i)
{
    struct flock lk;

    memset(&lk, 0, sizeof lk);
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    lk.l_start = (off_t)(SHMREG_CTL_SLOTS_OFFSET + sizeof(struct shmreg_slot) * i);
    lk.l_len = 1;
    if (fcntl(cv->fd, SHMREG__F_OFD_GETLK, &lk) != 0)
        return -1;
    return lk.l_type != F_UNLCK;
}

/* Takes slot i's lock from the view's descriptor, as a racing reader that
 * has not yet written its owner word would hold it. */
static int slot_lock(struct ctl_view *cv, unsigned i, short type)
{
    struct flock lk;

    memset(&lk, 0, sizeof lk);
    lk.l_type = type;
    lk.l_whence = SEEK_SET;
    lk.l_start = (off_t)(SHMREG_CTL_SLOTS_OFFSET + sizeof(struct shmreg_slot) * i);
    lk.l_len = 1;
    return fcntl(cv->fd, SHMREG__F_OFD_SETLK, &lk);
}

static void check_slots(const char *path, struct built *b)
{
    struct shmreg_region r[CTL_SLOTS + 1];
    struct ctl_view cv;
    uint64_t pid = (uint64_t)getpid();
    int rc;

    build(b);
    write_file(path, b->mem.bytes, REGION_SIZE);
    build_ctl();
    write_ctl(path, ctl_image.bytes, CTL_SIZE);
    if (ctl_view_open(path, &cv) != 0) {
        CHECK(0, "slots: map the control file");
        return;
    }

    /* A claim: lock, epoch 0, pid, owner = pid << 32 | nonce. */
    rc = shmreg_open(path, &r[0]);
    CHECK(rc == 0 && r[0].slot_index == 0, "first open takes slot 0: %s", shmreg_strerror(rc));
    CHECK(atomic_load(&view_slot(&cv, 0)->owner) >> 32 == pid && (uint32_t)atomic_load(&view_slot(&cv, 0)->owner) != 0,
          "slot 0 owner is pid << 32 | nonce: %llx", (unsigned long long)atomic_load(&view_slot(&cv, 0)->owner));
    CHECK(view_slot(&cv, 0)->pid == pid, "slot 0 pid");
    CHECK(atomic_load(&view_slot(&cv, 0)->epoch) == 0, "an open reader that is not reading holds epoch 0");
    CHECK(slot_locked(&cv, 0) == 1, "slot 0's liveness byte must be locked");
    CHECK(slot_locked(&cv, 1) == 0, "slot 1's liveness byte must be free");

    /* A live owner's slot is skipped; so is one whose lock is held by a
     * reader that has not written its owner yet. */
    CHECK(slot_lock(&cv, 1, F_WRLCK) == 0, "lock slot 1 from the view");
    rc = shmreg_open(path, &r[1]);
    CHECK(rc == 0 && r[1].slot_index == 2, "second open skips live slots 0 and 1: %s, slot %u", shmreg_strerror(rc),
          r[1].slot_index);
    CHECK(atomic_load(&view_slot(&cv, 1)->owner) == 0, "a locked slot is left alone");
    CHECK(slot_lock(&cv, 1, F_UNLCK) == 0, "unlock slot 1 from the view");
    CHECK(atomic_load(&view_slot(&cv, 0)->owner) != atomic_load(&view_slot(&cv, 2)->owner),
          "two claims of one process have different owner words");

    /* A slot whose owner died (owner set, nobody holds the lock) is taken. */
    atomic_store(&view_slot(&cv, 1)->owner, UINT64_C(0xdead) << 32 | 7);
    atomic_store(&view_slot(&cv, 1)->epoch, 3);
    rc = shmreg_open(path, &r[2]);
    CHECK(rc == 0 && r[2].slot_index == 1, "a dead reader's slot is claimed: %s, slot %u", shmreg_strerror(rc),
          r[2].slot_index);
    CHECK(atomic_load(&view_slot(&cv, 1)->owner) >> 32 == pid && atomic_load(&view_slot(&cv, 1)->epoch) == 0,
          "a reclaimed slot gets our owner and epoch 0");

    /* Every slot held: refused. */
    rc = shmreg_open(path, &r[3]);
    CHECK(rc == 0 && r[3].slot_index == 3, "fourth open: %s", shmreg_strerror(rc));
    rc = shmreg_open(path, &r[4]);
    CHECK(rc == SHMREG_ENOSLOTS, "open with every slot live = %s, want %s", shmreg_strerror(rc),
          shmreg_strerror(SHMREG_ENOSLOTS));
    CHECK(r[4].ctl == NULL && r[4].base == NULL, "a failed open leaves the struct zeroed");

    /* A release: epoch 0, owner 0, lock dropped; the slot is free again. */
    CHECK(shmreg_read_begin(&r[0]) == 0, "begin before close");
    CHECK(shmreg_close(&r[0]) == 0, "close");
    CHECK(atomic_load(&view_slot(&cv, 0)->owner) == 0 && atomic_load(&view_slot(&cv, 0)->epoch) == 0,
          "close clears owner and epoch");
    CHECK(slot_locked(&cv, 0) == 0, "close drops the slot's lock");
    CHECK(shmreg_close(&r[0]) == 0, "closing twice is harmless");
    rc = shmreg_open(path, &r[4]);
    CHECK(rc == 0 && r[4].slot_index == 0, "a released slot is claimed again: %s", shmreg_strerror(rc));
    for (int i = 1; i < CTL_SLOTS + 1; i++)
        shmreg_close(&r[i]);
    for (unsigned i = 0; i < CTL_SLOTS; i++)
        CHECK(atomic_load(&view_slot(&cv, i)->owner) == 0 && slot_locked(&cv, i) == 0, "slot %u left held", i);
    ctl_view_close(&cv);
}

static void check_sections(const char *path, struct built *b)
{
    struct shmreg_region r;
    struct shmreg_iter it;
    struct ctl_view cv;
    struct shmreg_slot *slot;
    char buf[8];
    const void *v;
    size_t vl;
    int rc;

    build(b);
    atomic_store(&hdr(b)->generation, 42);
    write_file(path, b->mem.bytes, REGION_SIZE);
    build_ctl();
    write_ctl(path, ctl_image.bytes, CTL_SIZE);
    if (ctl_view_open(path, &cv) != 0 || shmreg_open(path, &r) != 0) {
        CHECK(0, "sections: open");
        return;
    }
    slot = view_slot(&cv, r.slot_index);

    /* Lookups outside a section are refused, not silently unprotected. */
    CHECK(shmreg_get(&r, "a", 1, &v, &vl) == SHMREG_ESECTION, "get outside a section");
    CHECK(shmreg_get_skiplist(&r, "a", 1, &v, &vl) == SHMREG_ESECTION, "get_skiplist outside a section");
    CHECK(shmreg_iter_first(&r, &it) == SHMREG_ESECTION, "iterating outside a section");
    CHECK(shmreg_read_end(&r) == SHMREG_ESECTION, "end without begin");

    /* begin publishes the generation; end sets the slot idle. Both ways of
     * publishing: relaxed under membarrier, or seq_cst without it. */
    for (int plain = 0; plain < 2; plain++) {
        int was = r.plain_epoch;

        if (plain == 0)
            r.plain_epoch = 0;
        rc = shmreg_read_begin(&r);
        CHECK(rc == 0 && atomic_load(&slot->epoch) == 42, "begin (plain_epoch %d) publishes the generation: %s, %llu",
              r.plain_epoch, shmreg_strerror(rc), (unsigned long long)atomic_load(&slot->epoch));
        CHECK(shmreg_read_begin(&r) == SHMREG_ESECTION, "sections do not nest");
        rc = shmreg_get(&r, "b", 1, &v, &vl);
        CHECK(rc == 0 && same(v, vl, "two", 3), "get inside a section: %s", shmreg_strerror(rc));
        rc = shmreg_read_end(&r);
        CHECK(rc == 0 && atomic_load(&slot->epoch) == 0, "end returns the slot to 0: %s", shmreg_strerror(rc));
        r.plain_epoch = was;
    }

    /* The writer forces a section that outlived the lease: end reports it,
     * the slot goes idle, and the next section works. */
    CHECK(shmreg_read_begin(&r) == 0, "begin before forcing");
    {
        uint64_t e = 42;
        CHECK(atomic_compare_exchange_strong(&slot->epoch, &e, SHMREG_EPOCH_FORCED | 43), "force the slot");
    }
    rc = shmreg_read_end(&r);
    CHECK(rc == SHMREG_EEVICTED, "end of a forced section = %s, want %s", shmreg_strerror(rc),
          shmreg_strerror(SHMREG_EEVICTED));
    CHECK(atomic_load(&slot->epoch) == 0, "an evicted section still leaves its slot idle");
    CHECK(shmreg_read_begin(&r) == 0 && shmreg_read_end(&r) == 0, "a section after an eviction");

    /* The one-shot copy: its own section outside one, none inside one. */
    rc = shmreg_get_copy(&r, "b", 1, buf, sizeof buf, &vl);
    CHECK(rc == 0 && same(buf, vl, "two", 3), "get_copy: %s", shmreg_strerror(rc));
    CHECK(atomic_load(&slot->epoch) == 0, "get_copy ends its section");
    vl = 0;
    rc = shmreg_get_copy(&r, "z", 1, buf, sizeof buf, &vl);
    CHECK(rc == -ERANGE && vl == sizeof zval, "get_copy into a short buffer = %s, %zu", shmreg_strerror(rc), vl);
    rc = shmreg_get_copy(&r, "gone", 4, buf, sizeof buf, &vl);
    CHECK(rc == SHMREG_ENOTFOUND, "get_copy of a deleted key: %s", shmreg_strerror(rc));
    rc = shmreg_get_copy(&r, "empty", 5, NULL, 0, &vl);
    CHECK(rc == 0 && vl == 0, "get_copy of an empty value: %s", shmreg_strerror(rc));
    CHECK(shmreg_read_begin(&r) == 0, "begin around get_copy");
    rc = shmreg_get_copy(&r, "a", 1, buf, sizeof buf, &vl);
    CHECK(rc == 0 && same(buf, vl, "1", 1) && r.in_section && atomic_load(&slot->epoch) == 42,
          "get_copy inside a section leaves it open: %s", shmreg_strerror(rc));
    {
        uint64_t e = 42;
        CHECK(atomic_compare_exchange_strong(&slot->epoch, &e, SHMREG_EPOCH_FORCED | 43), "force the slot");
    }
    CHECK(shmreg_read_end(&r) == SHMREG_EEVICTED, "the caller's end reports the eviction");
    CHECK(shmreg_read_begin(&r) == 0, "begin, then close inside the section");
    shmreg_close(&r);
    CHECK(atomic_load(&slot->owner) == 0 && atomic_load(&slot->epoch) == 0, "close inside a section releases the slot");
    ctl_view_close(&cv);
}

/* Control files that must be refused, next to a good data file. */
static void ctl_bad_magic(void) { ctl_header()->magic[6] = 'D'; }
static void ctl_version_2(void) { ctl_header()->version = 2; }
static void ctl_too_many_slots(void) { ctl_header()->slot_count = CTL_SLOTS + 1; }
static void ctl_huge_slot_count(void) { ctl_header()->slot_count = UINT32_MAX; }
static void ctl_no_slots(void) { ctl_header()->slot_count = 0; }
static void ctl_zeroed(void) { memset(&ctl_image, 0, sizeof ctl_image); }

static const struct ctl_case {
    const char *name;
    size_t len; /* bytes of the image written */
    void (*mutate)(void);
    int want;
} ctl_cases[] = {
    {"good", CTL_SIZE, NULL, 0},
    {"bad magic", CTL_SIZE, ctl_bad_magic, SHMREG_EMAGIC},
    {"zeroed", CTL_SIZE, ctl_zeroed, SHMREG_EMAGIC},
    {"version 2", CTL_SIZE, ctl_version_2, SHMREG_EVERSION},
    {"more slots than the file holds", CTL_SIZE, ctl_too_many_slots, SHMREG_ETRUNCATED},
    {"slot count 2^32-1", CTL_SIZE, ctl_huge_slot_count, SHMREG_ETRUNCATED},
    {"no slots", CTL_SIZE, ctl_no_slots, SHMREG_ENOSLOTS},
    {"cut inside the last slot", CTL_SIZE - 1, NULL, SHMREG_ETRUNCATED},
    {"header only", SHMREG_CTL_LOCK_OFFSET, NULL, SHMREG_ETRUNCATED},
    {"cut inside the header", 100, NULL, SHMREG_ETRUNCATED},
    {"5 bytes", 5, NULL, SHMREG_ETRUNCATED},
    {"empty", 0, NULL, SHMREG_ETRUNCATED},
};

static void check_ctl_files(const char *path, struct built *b)
{
    struct shmreg_region r;
    char cpath[4200];
    int rc;

    build(b);
    write_file(path, b->mem.bytes, REGION_SIZE);
    for (size_t i = 0; i < sizeof ctl_cases / sizeof ctl_cases[0]; i++) {
        const struct ctl_case *c = &ctl_cases[i];

        build_ctl();
        if (c->mutate != NULL)
            c->mutate();
        write_ctl(path, ctl_image.bytes, c->len);
        rc = shmreg_open(path, &r);
        CHECK(rc == c->want, "control file %s: open = %s, want %s", c->name, shmreg_strerror(rc),
              shmreg_strerror(c->want));
        if (rc == 0)
            shmreg_close(&r);
        else
            CHECK(r.ctl == NULL && r.base == NULL, "control file %s: a failed open leaves the struct zeroed", c->name);
    }
    write_ctl(path, "hello, world\n", 13);
    rc = shmreg_open(path, &r);
    CHECK(rc == SHMREG_EMAGIC, "a text file as control file: %s", shmreg_strerror(rc));
    ctl_path(cpath, sizeof cpath, path);
    unlink(cpath);
    rc = shmreg_open(path, &r);
    CHECK(rc == -ENOENT, "no control file: %s", shmreg_strerror(rc));
    build_ctl();
    write_ctl(path, ctl_image.bytes, CTL_SIZE);
}

static void check_hash(void)
{
    /* Known answers, computed independently from LAYOUT.md's definition
     * (testdata/hash_vectors.txt holds the same, for the Go side). */
    static const struct { const char *s; uint64_t h; } kat[] = {
        {"", UINT64_C(0x9ca066f1a4ab2eea)},
        {"a", UINT64_C(0x91b372fdca98fbfe)},
        {"abcdefg", UINT64_C(0xf92ee13e5d497b09)},
        {"abcdefgh", UINT64_C(0x54c4ba2af813fa6a)},
        {"abcdefghi", UINT64_C(0xfa69033065b4e8c6)},
        {"svc/payments/10.0.0.1:8080", UINT64_C(0x941c53045419dce2)},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++)
        CHECK(shmreg_hash(kat[i].s, strlen(kat[i].s)) == kat[i].h, "hash(%s)", kat[i].s);
}

int main(int argc, char **argv)
{
    static struct built b;
    char dir[] = "/tmp/shmreg-selftest-XXXXXX", path[4096];

    memset(zval, 'z', sizeof zval);
    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        build(&b);
        write_file(argv[2], b.mem.bytes, REGION_SIZE);
        build_ctl();
        write_ctl(argv[2], ctl_image.bytes, CTL_SIZE);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: selftest [--write PATH]\n");
        return 2;
    }
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(path, sizeof path, "%s/region", dir);

    check_hash();
    build(&b);
    write_file(path, b.mem.bytes, REGION_SIZE);
    build_ctl();
    write_ctl(path, ctl_image.bytes, CTL_SIZE);
    check_good(path);
    check_slots(path, &b);
    check_sections(path, &b);
    check_ctl_files(path, &b);
    check_no_index(path, &b);
    check_superseded(path, &b);
    check_random_damage(path, &b);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        check_variant(path, &b, &variants[i]);

    build(&b);
    check_open_rc(path, b.mem.bytes, REGION_SIZE - 100, SHMREG_ETRUNCATED, "truncated pool");
    check_open_rc(path, b.mem.bytes, 2000, SHMREG_ETRUNCATED, "truncated header");
    check_open_rc(path, b.mem.bytes, 5, SHMREG_ETRUNCATED, "5-byte file");
    check_open_rc(path, b.mem.bytes, 0, SHMREG_ETRUNCATED, "empty file");
    check_open_rc(path, "hello, world\n", 13, SHMREG_EMAGIC, "a text file");
    memset(b.mem.bytes, 0, SHMREG_HEADER_SIZE);
    check_open_rc(path, b.mem.bytes, REGION_SIZE, SHMREG_EMAGIC, "zeroed header");
    {
        struct shmreg_region r;
        CHECK(shmreg_open(dir, &r) < 0, "a directory");
        CHECK(shmreg_open("/nonexistent/shmreg", &r) == -ENOENT, "a missing file");
    }

    unlink(path);
    snprintf(path, sizeof path, "%s/region.ctl", dir);
    unlink(path);
    rmdir(dir);
    if (failures != 0) {
        fprintf(stderr, "selftest: %d checks failed\n", failures);
        return 1;
    }
    printf("selftest: ok (%zu samples, %zu corrupt variants, %zu control files)\n", NSAMPLES,
           sizeof variants / sizeof variants[0], sizeof ctl_cases / sizeof ctl_cases[0] + 2);
    return 0;
}
