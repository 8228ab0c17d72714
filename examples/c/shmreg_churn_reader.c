/*
 * shmreg_churn_reader - a C reader process for shm/creader_test.go: reads a
 * region the Go writer keeps rewriting, and checks every value it reads.
 *
 *   shmreg_churn_reader PATH N [--seq-cst]
 *       Prints "ready", then reads random keys soak/000000 .. soak/N-1 until
 *       its stdin closes, in read sections: point lookups through the index
 *       and the skiplist, short iterations, and one-shot shmreg_get_copy()
 *       calls. Each value must be the soak format of shm/soak_test.go:
 *       KEY "#" VERSION "#" then (VERSION * 7919) % 600 bytes of 'p', so a
 *       torn, misplaced or recycled value cannot pass. At the end it prints
 *       "reads R evicted E" and exits 0; at the first bad value (or a corrupt
 *       walk) it prints "bad ..." with the key and value and exits 1.
 *       --seq-cst publishes epochs with seq_cst stores, as a process that
 *       could not register for membarrier does.
 *   shmreg_churn_reader PATH --hold KEY
 *       Begins a section, reads KEY, prints "read" and stays inside the
 *       section until its stdin closes (or it is killed).
 *   shmreg_churn_reader PATH --idle KEY
 *       Reads KEY once with shmreg_get_copy(), prints "read" and sits idle,
 *       its slot claimed, until its stdin closes.
 *
 * Exit status 2: a usage error or a region that cannot be opened. Built with
 * _GNU_SOURCE, so the header is also compiled the way most programs use it.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "shmreg.h"

/* What the first bad read saw, copied out of the section for the report. */
struct bad {
    int found;
    char why[64];
    char key[32];
    unsigned char val[96];
    size_t vlen;
};

static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t x = rng_state; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* 0 if v is a whole soak value of key. */
static int check_value(const void *key, size_t klen, const unsigned char *v, size_t vlen)
{
    uint64_t version = 0, pad;
    size_t i = klen + 1, digits = 0;

    if (vlen < i || memcmp(v, key, klen) != 0 || v[klen] != '#')
        return -1;
    for (; i < vlen && v[i] >= '0' && v[i] <= '9' && digits < 18; i++, digits++)
        version = version * 10 + (uint64_t)(v[i] - '0');
    if (digits == 0 || i == vlen || v[i] != '#')
        return -1;
    i++;
    pad = version * 7919 % 600;
    if (vlen - i != pad)
        return -1;
    for (; i < vlen; i++)
        if (v[i] != 'p')
            return -1;
    return 0;
}

static void note_bad(struct bad *b, const char *why, const void *key, size_t klen, const void *v, size_t vlen)
{
    if (b->found)
        return;
    b->found = 1;
    snprintf(b->why, sizeof b->why, "%s", why);
    snprintf(b->key, sizeof b->key, "%.*s", (int)(klen < sizeof b->key - 1 ? klen : sizeof b->key - 1),
             (const char *)key);
    b->vlen = vlen;
    if (v != NULL)
        memcpy(b->val, v, vlen < sizeof b->val ? vlen : sizeof b->val);
}

static void print_bad(const struct bad *b)
{
    size_t n = b->vlen < sizeof b->val ? b->vlen : sizeof b->val;

    printf("bad %s: key %s, value (%zu bytes) \"", b->why, b->key, b->vlen);
    for (size_t i = 0; i < n; i++)
        putchar(b->val[i] >= 0x20 && b->val[i] < 0x7f ? b->val[i] : '?');
    printf("%s\"\n", n < b->vlen ? "..." : "");
}

static void soak_key(char *out, size_t cap, uint64_t n) { snprintf(out, cap, "soak/%06d", (int)(rng() % n)); }

/* A point lookup; a missing key is fine (the churn deletes some). */
static void check_get(struct shmreg_region *r, uint64_t n, int skiplist, struct bad *b)
{
    char key[32];
    const void *v;
    size_t vlen;
    int rc;

    soak_key(key, sizeof key, n);
    rc = skiplist ? shmreg_get_skiplist(r, key, strlen(key), &v, &vlen) : shmreg_get(r, key, strlen(key), &v, &vlen);
    if (rc == 0 && check_value(key, strlen(key), v, vlen) != 0)
        note_bad(b, skiplist ? "torn value (skiplist)" : "torn value (index)", key, strlen(key), v, vlen);
    else if (rc != 0 && rc != SHMREG_ENOTFOUND && rc != SHMREG_ESUPERSEDED)
        note_bad(b, shmreg_strerror(rc), key, strlen(key), NULL, 0);
}

/* Up to 8 entries of the 100 keys that share a random key's prefix. */
static void check_walk(struct shmreg_region *r, uint64_t n, struct bad *b)
{
    struct shmreg_iter it;
    char prefix[32];
    int rc, i = 0;

    soak_key(prefix, sizeof prefix, n);
    prefix[strlen(prefix) - 2] = '\0';
    for (rc = shmreg_iter_seek(r, &it, prefix, strlen(prefix)); rc == 0 && i < 8; rc = shmreg_iter_next(&it), i++)
        if (check_value(it.key, it.klen, it.val, it.vlen) != 0)
            note_bad(b, "torn value (iterator)", it.key, it.klen, it.val, it.vlen);
    if (rc != 0 && rc != SHMREG_ENOTFOUND && rc != SHMREG_ESUPERSEDED)
        note_bad(b, shmreg_strerror(rc), prefix, strlen(prefix), NULL, 0);
}

static int stdin_closed(void)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    char buf[64];

    if (poll(&p, 1, 0) <= 0)
        return 0;
    return read(0, buf, sizeof buf) <= 0;
}

static int churn(struct shmreg_region *r, const char *path, uint64_t n)
{
    static unsigned char copy[1024];
    unsigned long long reads = 0, evicted = 0;
    struct bad b;

    printf("ready\n");
    fflush(stdout);
    for (unsigned long batch = 0;; batch++) {
        int rc;

        if (batch % 16 == 0 && stdin_closed())
            break;
        memset(&b, 0, sizeof b);
        if ((rc = shmreg_read_begin(r)) != 0) {
            fprintf(stderr, "shmreg_churn_reader: begin: %s\n", shmreg_strerror(rc));
            return 2;
        }
        for (int i = 0; i < 16; i++)
            check_get(r, n, 0, &b);
        check_get(r, n, 1, &b);
        check_walk(r, n, &b);
        rc = shmreg_read_end(r);
        if (rc == SHMREG_EEVICTED) {
            evicted++; /* what the section saw may have been reused: it proves nothing */
            continue;
        }
        if (b.found) {
            print_bad(&b);
            return 1;
        }
        reads += 18;
        if (batch % 8 == 0) { /* the one-shot form: its own section, a copy */
            char key[32];
            size_t vlen;

            soak_key(key, sizeof key, n);
            rc = shmreg_get_copy(r, key, strlen(key), copy, sizeof copy, &vlen);
            if (rc == 0 && check_value(key, strlen(key), copy, vlen) != 0) {
                note_bad(&b, "torn value (get_copy)", key, strlen(key), copy, vlen);
                print_bad(&b);
                return 1;
            }
            if (rc == SHMREG_EEVICTED)
                evicted++;
            else if (rc != 0 && rc != SHMREG_ENOTFOUND && rc != SHMREG_ESUPERSEDED) {
                note_bad(&b, shmreg_strerror(rc), key, strlen(key), NULL, 0);
                print_bad(&b);
                return 1;
            }
            reads++;
        }
        if (shmreg_reopen_if_superseded(r, path) < 0) {
            fprintf(stderr, "shmreg_churn_reader: reopen failed\n");
            return 2;
        }
    }
    printf("reads %llu evicted %llu\n", reads, evicted);
    return 0;
}

static void wait_stdin(void)
{
    char buf[64];

    while (read(0, buf, sizeof buf) > 0)
        ;
}

int main(int argc, char **argv)
{
    struct shmreg_region r;
    char buf[1024];
    const void *v;
    size_t vlen;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: shmreg_churn_reader PATH N [--seq-cst] | PATH --hold KEY | PATH --idle KEY\n");
        return 2;
    }
    rc = shmreg_open(argv[1], &r);
    if (rc != 0) {
        fprintf(stderr, "shmreg_churn_reader: %s: %s\n", argv[1], shmreg_strerror(rc));
        return 2;
    }
    rng_state = (uint64_t)getpid() * UINT64_C(0x9E3779B97F4A7C15) | 1;
    if (argc == 4 && strcmp(argv[2], "--hold") == 0) {
        rc = shmreg_read_begin(&r);
        if (rc == 0)
            rc = shmreg_get(&r, argv[3], strlen(argv[3]), &v, &vlen);
        if (rc != 0) {
            fprintf(stderr, "shmreg_churn_reader: %s: %s\n", argv[3], shmreg_strerror(rc));
            return 2;
        }
        printf("read\n");
        fflush(stdout);
        wait_stdin();
        rc = shmreg_read_end(&r);
    } else if (argc == 4 && strcmp(argv[2], "--idle") == 0) {
        rc = shmreg_get_copy(&r, argv[3], strlen(argv[3]), buf, sizeof buf, &vlen);
        if (rc != 0) {
            fprintf(stderr, "shmreg_churn_reader: %s: %s\n", argv[3], shmreg_strerror(rc));
            return 2;
        }
        printf("read\n");
        fflush(stdout);
        wait_stdin();
    } else {
        uint64_t n = strtoull(argv[2], NULL, 10);
        if (n == 0 || (argc == 4 && strcmp(argv[3], "--seq-cst") != 0) || argc > 4) {
            fprintf(stderr, "shmreg_churn_reader: bad arguments\n");
            return 2;
        }
        if (argc == 4)
            r.plain_epoch = 0;
        rc = churn(&r, argv[1], n);
    }
    shmreg_close(&r);
    fflush(stdout);
    return rc < 0 ? 2 : rc;
}
