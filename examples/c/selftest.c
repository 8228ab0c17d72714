/*
 * selftest - writes small regions by hand, following docs/LAYOUT.md, and
 * reads them back through shmreg.h: a good one, the in-between states the
 * publication order allows, and corrupt ones that must fail cleanly.
 *
 *   selftest              run every check; exit 0 if all pass
 *   selftest --write PATH write the good sample region to PATH (for `make test`)
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
    CHECK(shmreg_generation(&r) == 1, "generation");
    shmreg_close(&r);
}

/* Runs every read operation over the region; returns the first code that is
 * neither success nor not-found. */
static int exercise(const struct shmreg_region *r)
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

/* ---- corrupt variants --------------------------------------------------- */

static void bad_magic(struct built *b) { hdr(b)->magic[0] = 'X'; }
static void version_2(struct built *b) { hdr(b)->version = 2; }
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
    {"version 2", version_2, SHMREG_EVERSION, 0},
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

    CHECK(shmreg_get(&r, "a", 1, &v, &vl) == SHMREG_ESUPERSEDED, "get on a superseded region");
    CHECK(shmreg_get_skiplist(&r, "a", 1, &v, &vl) == SHMREG_ESUPERSEDED, "get_skiplist on a superseded region");
    CHECK(shmreg_iter_first(&r, &it) == SHMREG_ESUPERSEDED, "iterating a superseded region");
    rc = shmreg_reopen_if_superseded(&r, path);
    CHECK(rc == 1, "reopen: %s", shmreg_strerror(rc));
    rc = shmreg_get(&r, "a", 1, &v, &vl);
    CHECK(rc == 0 && same(v, vl, "new", 3), "get after reopen: %s", shmreg_strerror(rc));
    shmreg_close(&r);
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
    check_good(path);
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
    rmdir(dir);
    if (failures != 0) {
        fprintf(stderr, "selftest: %d checks failed\n", failures);
        return 1;
    }
    printf("selftest: ok (%zu samples, %zu corrupt variants)\n", NSAMPLES, sizeof variants / sizeof variants[0]);
    return 0;
}
