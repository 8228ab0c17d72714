/*
 * lib_test - checks libshmreg.so through its ABI (libshmreg.h) on the sample
 * region that `selftest --write PATH` writes (see selftest.c):
 *
 *   lib_test PATH
 *
 * open errors; every lookup of the sample, found and not; a short buffer;
 * read sections and their rules; the callback walk and the chunked scan
 * (resumed after each chunk, a record bigger than the buffer); a section
 * held by one thread blocking another's lookup; an evicted section; waits
 * that time out, that are woken by a commit (counted in notify_waiters),
 * and that are cancelled by close; a data file superseded under a reader
 * (inside a section and outside); running out of slots and getting one
 * back; threads sharing a handle.
 *
 * It plays the writer's part by hand where it needs one: shmreg.h gives it
 * the struct layouts (the library gives them to nobody).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "shmreg.h"
#include "libshmreg.h"

static int failures;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "lib_test:%d: FAIL: ", __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            failures++;                                                       \
        }                                                                     \
    } while (0)

#define MUST(cond, ...)                                                       \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "lib_test:%d: FATAL: ", __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

static const char *path;
static char zval[300];

/* The live entries of the sample, in key order. */
static const struct entry {
    const char *key, *val;
    size_t vlen;
} live[] = {
    {"a", "1", 1},          {"b", "two", 3},        {"dup", "again", 5}, {"empty", "", 0},
    {"svc/x/1", "\x01\x02", 2}, {"svc/x/2", "\xff", 1}, {"svc/y/1", "y", 1}, {"z", zval, sizeof zval},
};
#define NLIVE (sizeof live / sizeof live[0])

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    size_t n;

    MUST(in != NULL && out != NULL, "copy %s -> %s: %s", from, to, strerror(errno));
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        MUST(fwrite(buf, 1, n, out) == n, "write %s", to);
    fclose(in);
    MUST(fclose(out) == 0, "close %s", to);
}

/* Maps a file read-write (the test's writer side). */
static unsigned char *map_rw(const char *p, size_t *size)
{
    int fd = open(p, O_RDWR);
    struct stat st;
    void *m;

    MUST(fd >= 0 && fstat(fd, &st) == 0, "open %s: %s", p, strerror(errno));
    m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    MUST(m != MAP_FAILED, "mmap %s", p);
    close(fd);
    *size = (size_t)st.st_size;
    return m;
}

static void check_value(shmreg_reader *r, const char *key, const void *want, size_t wlen)
{
    char buf[512];
    size_t vl = 12345;
    int rc = shmreg_reader_get_copy(r, key, strlen(key), buf, sizeof buf, &vl);

    CHECK(rc == 0 && vl == wlen && memcmp(buf, want, wlen) == 0, "get_copy %s = %s (len %zu)", key,
          shmreg_reader_strerror(rc), vl);
}

static void check_open_errors(void)
{
    char p[4200];
    shmreg_reader *r = (void *)1;
    size_t size;
    unsigned char *m;
    int rc;

    rc = shmreg_reader_open("/nonexistent/shmreg/region", &r);
    CHECK(rc == -ENOENT && r == NULL, "open of a missing region = %d (%s)", rc, shmreg_reader_strerror(rc));
    CHECK(strlen(shmreg_reader_strerror(rc)) > 0, "no message for -ENOENT");

    snprintf(p, sizeof p, "%s.v99", path);
    copy_file(path, p);
    m = map_rw(p, &size);
    ((struct shmreg_header *)(void *)m)->version = 99;
    munmap(m, size);
    rc = shmreg_reader_open(p, &r);
    CHECK(rc == SHMREG_READER_EVERSION, "open of a version-99 file = %s", shmreg_reader_strerror(rc));
    CHECK(strstr(shmreg_reader_strerror(rc), "version") != NULL, "EVERSION message: %s", shmreg_reader_strerror(rc));
    unlink(p);

    snprintf(p, sizeof p, "%s.ctl", path); /* a control file is not a data file */
    rc = shmreg_reader_open(p, &r);
    CHECK(rc == SHMREG_READER_EMAGIC, "open of a control file as data = %s", shmreg_reader_strerror(rc));
    CHECK(shmreg_reader_layout_version() == SHMREG_LAYOUT_VERSION, "layout version %d",
          shmreg_reader_layout_version());
}

static void check_lookups(shmreg_reader *r)
{
    static const char *const absent[] = {"gone", "pending", "zz", "svc/", "svc/x", "", "dup2"};
    char small[100];
    size_t vl;
    int rc;

    for (size_t i = 0; i < NLIVE; i++)
        check_value(r, live[i].key, live[i].val, live[i].vlen);
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        vl = 99;
        rc = shmreg_reader_get_copy(r, absent[i], strlen(absent[i]), small, sizeof small, &vl);
        CHECK(rc == SHMREG_READER_ENOTFOUND && vl == 0, "get_copy %s = %s, %zu", absent[i],
              shmreg_reader_strerror(rc), vl);
    }
    rc = shmreg_reader_get_copy(r, "z", 1, small, sizeof small, &vl);
    CHECK(rc == -ERANGE && vl == sizeof zval, "get_copy z into 100 bytes = %s, %zu", shmreg_reader_strerror(rc), vl);
    CHECK(shmreg_reader_generation(r) == 1, "generation %llu", (unsigned long long)shmreg_reader_generation(r));
}

struct collected {
    char keys[16][32];
    size_t n;
    int stop_after;
};

static int collect(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct collected *c = ctx;

    (void)val;
    (void)vlen;
    if (c->n < 16 && klen < 32) {
        memcpy(c->keys[c->n], key, klen);
        c->keys[c->n][klen] = 0;
    }
    c->n++;
    return c->stop_after != 0 && (int)c->n == c->stop_after ? 7 : 0;
}

static void check_sections(shmreg_reader *r)
{
    struct collected c;
    const void *v;
    size_t vl;
    char buf[8];
    int rc;

    rc = shmreg_reader_get(r, "a", 1, &v, &vl);
    CHECK(rc == SHMREG_READER_ESECTION, "zero-copy get outside a section = %s", shmreg_reader_strerror(rc));
    memset(&c, 0, sizeof c);
    rc = shmreg_reader_foreach(r, "", 0, collect, &c);
    CHECK(rc == SHMREG_READER_ESECTION && c.n == 0, "foreach outside a section = %s", shmreg_reader_strerror(rc));
    CHECK(shmreg_reader_read_end(r) == SHMREG_READER_ESECTION, "end without begin");

    MUST(shmreg_reader_read_begin(r) == 0, "read_begin");
    CHECK(shmreg_reader_read_begin(r) == SHMREG_READER_ESECTION, "nested begin accepted");
    rc = shmreg_reader_get(r, "b", 1, &v, &vl);
    CHECK(rc == 0 && vl == 3 && memcmp(v, "two", 3) == 0, "zero-copy get b = %s", shmreg_reader_strerror(rc));
    rc = shmreg_reader_get(r, "gone", 4, &v, &vl);
    CHECK(rc == SHMREG_READER_ENOTFOUND, "zero-copy get gone = %s", shmreg_reader_strerror(rc));
    rc = shmreg_reader_get_copy(r, "dup", 3, buf, sizeof buf, &vl);
    CHECK(rc == 0 && vl == 5 && memcmp(buf, "again", 5) == 0, "get_copy inside a section = %s",
          shmreg_reader_strerror(rc));

    memset(&c, 0, sizeof c);
    rc = shmreg_reader_foreach(r, "svc/", 4, collect, &c);
    CHECK(rc == 0 && c.n == 3 && strcmp(c.keys[0], "svc/x/1") == 0 && strcmp(c.keys[1], "svc/x/2") == 0 &&
              strcmp(c.keys[2], "svc/y/1") == 0,
          "foreach svc/ = %s, %zu keys", shmreg_reader_strerror(rc), c.n);
    memset(&c, 0, sizeof c);
    rc = shmreg_reader_foreach(r, NULL, 0, collect, &c);
    CHECK(rc == 0 && c.n == NLIVE, "foreach everything = %s, %zu keys", shmreg_reader_strerror(rc), c.n);
    for (size_t i = 0; i < NLIVE && i < c.n; i++)
        CHECK(strcmp(c.keys[i], live[i].key) == 0, "foreach key %zu = %s, want %s", i, c.keys[i], live[i].key);
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    rc = shmreg_reader_foreach(r, "", 0, collect, &c);
    CHECK(rc == 7 && c.n == 2, "foreach stopped by the callback = %d after %zu", rc, c.n);
    memset(&c, 0, sizeof c);
    rc = shmreg_reader_foreach(r, "nothing/", 8, collect, &c);
    CHECK(rc == 0 && c.n == 0, "foreach of an absent prefix = %s, %zu", shmreg_reader_strerror(rc), c.n);
    CHECK(shmreg_reader_read_end(r) == 0, "read_end");
    CHECK(shmreg_reader_read_end(r) == SHMREG_READER_ESECTION, "second read_end accepted");
    /* A scan in a section of the caller's is refused: it runs its own. */
    MUST(shmreg_reader_read_begin(r) == 0, "read_begin");
    {
        size_t used, count;
        char sbuf[64];
        rc = shmreg_reader_scan_copy(r, "", 0, NULL, 0, sbuf, sizeof sbuf, &used, &count);
        CHECK(rc == SHMREG_READER_ESECTION, "scan_copy inside a section = %s", shmreg_reader_strerror(rc));
    }
    CHECK(shmreg_reader_read_end(r) == 0, "read_end");
}

/* Scans prefix with a cap-byte buffer, growing it when a record does not
 * fit, and checks the result against want (n entries of live[]). */
static void check_scan(shmreg_reader *r, const char *prefix, size_t cap, size_t first, size_t n)
{
    char last[64] = {0};
    size_t lastlen = 0, got = 0, calls = 0;
    int have_last = 0, rc;

    for (;;) {
        unsigned char *buf = malloc(cap);
        size_t used = 0, count = 0, at = 0;

        MUST(buf != NULL, "malloc");
        rc = shmreg_reader_scan_copy(r, prefix, strlen(prefix), have_last ? last : NULL, lastlen, buf, cap,
                                     &used, &count);
        calls++;
        if (rc == -ERANGE) {
            CHECK(count == 0 && used > cap, "ERANGE with count %zu, need %zu of %zu", count, used, cap);
            cap = used;
            free(buf);
            continue;
        }
        CHECK(rc == 0 || rc == 1, "scan_copy %s = %s", prefix, shmreg_reader_strerror(rc));
        for (size_t i = 0; i < count; i++) {
            uint32_t kl, vl;
            const struct entry *e = &live[first + got];

            memcpy(&kl, buf + at, 4);
            memcpy(&vl, buf + at + 4, 4);
            CHECK(got < n && kl == strlen(e->key) && memcmp(buf + at + 8, e->key, kl) == 0 && vl == e->vlen &&
                      memcmp(buf + at + 8 + kl, e->val, vl) == 0,
                  "scan %s record %zu: %.*s", prefix, got, (int)kl, buf + at + 8);
            MUST(kl < sizeof last, "key too long");
            memcpy(last, buf + at + 8, kl);
            lastlen = kl;
            have_last = 1;
            at += 8 + kl + vl;
            got++;
        }
        CHECK(at == used, "scan used %zu, records end at %zu", used, at);
        free(buf);
        if (rc != 1)
            break;
        MUST(calls < 100, "scan does not end");
    }
    CHECK(got == n, "scan %s with %zu bytes: %zu entries, want %zu", prefix, cap, got, n);
}

static void check_scans(shmreg_reader *r)
{
    size_t used, count;
    char buf[64];
    int rc;

    check_scan(r, "", 1 << 16, 0, NLIVE); /* one chunk */
    check_scan(r, "", 20, 0, NLIVE);      /* one or two per chunk; z needs a bigger buffer */
    check_scan(r, "svc/x/", 20, 4, 2);
    check_scan(r, "svc/", 1 << 16, 4, 3);
    rc = shmreg_reader_scan_copy(r, "svc/", 4, "svc/zzz", 7, buf, sizeof buf, &used, &count);
    CHECK(rc == 0 && count == 0 && used == 0, "scan after the last key = %s, %zu", shmreg_reader_strerror(rc), count);
    rc = shmreg_reader_scan_copy(r, "svc/", 4, "a", 1, buf, sizeof buf, &used, &count);
    CHECK(rc == 0 && count == 3, "scan after a key before the prefix = %s, %zu", shmreg_reader_strerror(rc), count);
    rc = shmreg_reader_scan_copy(r, "svc/", 4, "svc/x/1", 7, buf, sizeof buf, &used, &count);
    CHECK(rc == 0 && count == 2, "scan after svc/x/1 = %s, %zu", shmreg_reader_strerror(rc), count);
}

/* ---- threads ---- */

struct getter {
    shmreg_reader *r;
    _Atomic int done;
    int rc;
};

static void *get_in_thread(void *arg)
{
    struct getter *g = arg;
    char buf[8];
    size_t vl;

    g->rc = shmreg_reader_get_copy(g->r, "a", 1, buf, sizeof buf, &vl);
    atomic_store(&g->done, 1);
    return NULL;
}

/* A section belongs to its thread: another thread's lookup waits for it. */
static void check_section_blocks_others(shmreg_reader *r)
{
    struct getter g = {r, 0, -1};
    pthread_t t;

    MUST(shmreg_reader_read_begin(r) == 0, "read_begin");
    pthread_create(&t, NULL, get_in_thread, &g);
    sleep_ms(100);
    CHECK(!atomic_load(&g.done), "another thread's get_copy ran inside this thread's section");
    CHECK(shmreg_reader_read_end(r) == 0, "read_end");
    pthread_join(t, NULL);
    CHECK(g.done && g.rc == 0, "the waiting get_copy = %s", shmreg_reader_strerror(g.rc));
}

struct hammer {
    shmreg_reader *r;
    int bad;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    char buf[512];

    for (int i = 0; i < 20000; i++) {
        const struct entry *e = &live[i % NLIVE];
        size_t vl;
        int rc = shmreg_reader_get_copy(h->r, e->key, strlen(e->key), buf, sizeof buf, &vl);
        if (rc != 0 || vl != e->vlen || memcmp(buf, e->val, vl) != 0)
            h->bad++;
    }
    return NULL;
}

static void check_shared_handle(shmreg_reader *r)
{
    struct hammer h[4];
    pthread_t t[4];

    for (int i = 0; i < 4; i++) {
        h[i].r = r;
        h[i].bad = 0;
        pthread_create(&t[i], NULL, hammer, &h[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(h[i].bad == 0, "thread %d: %d bad lookups on a shared handle", i, h[i].bad);
    }
}

/* ---- eviction ---- */

static struct shmreg_slot *find_busy_slot(unsigned char *ctl, size_t size)
{
    uint32_t n = ((struct shmreg_ctl *)(void *)ctl)->slot_count;

    for (uint32_t i = 0; i < n && SHMREG_CTL_SLOTS_OFFSET + 64 * (size_t)(i + 1) <= size; i++) {
        struct shmreg_slot *s = (void *)(ctl + SHMREG_CTL_SLOTS_OFFSET + 64 * (size_t)i);
        if (atomic_load(&s->owner) >> 32 == (uint64_t)getpid() && atomic_load(&s->epoch) != 0)
            return s;
    }
    return NULL;
}

static void check_evicted(shmreg_reader *r, unsigned char *ctl, size_t ctl_size)
{
    struct shmreg_slot *s;
    int rc;

    MUST(shmreg_reader_read_begin(r) == 0, "read_begin");
    s = find_busy_slot(ctl, ctl_size);
    MUST(s != NULL, "no slot of ours holds an epoch inside a section");
    CHECK(atomic_load(&s->epoch) == 1, "section epoch %llu, want generation 1",
          (unsigned long long)atomic_load(&s->epoch));
    atomic_fetch_or(&s->epoch, SHMREG_EPOCH_FORCED); /* what the writer does after the lease */
    rc = shmreg_reader_read_end(r);
    CHECK(rc == SHMREG_READER_EEVICTED, "read_end of a forced section = %s", shmreg_reader_strerror(rc));
    CHECK(atomic_load(&s->epoch) == 0, "slot not idle after the evicted section");
    check_value(r, "a", "1", 1);
}

/* ---- waiting ---- */

struct committer {
    struct shmreg_ctl *c;
    int saw_waiter;
};

/* The writer's notify: wait until a waiter is counted, then add 1 and wake. */
static void *commit_when_waited(void *arg)
{
    struct committer *w = arg;
    int64_t give_up = now_ns() + 3000000000LL;

    while (atomic_load(&w->c->notify_waiters) == 0 && now_ns() < give_up)
        sleep_ms(1);
    w->saw_waiter = atomic_load(&w->c->notify_waiters) == 1;
    sleep_ms(50); /* let it sleep in the kernel */
    atomic_fetch_add(&w->c->notify_seq, 1);
    if (atomic_load(&w->c->notify_waiters) != 0)
        syscall(SYS_futex, &w->c->notify_seq, 1 /* FUTEX_WAKE */, INT32_MAX, NULL, NULL, 0);
    return NULL;
}

struct waiter {
    shmreg_reader *r;
    int rc;
    int64_t took;
};

static void *wait_forever(void *arg)
{
    struct waiter *w = arg;
    uint32_t now;
    int64_t t0 = now_ns();

    w->rc = shmreg_reader_wait(w->r, shmreg_reader_notify_seq(w->r), -1, &now);
    w->took = now_ns() - t0;
    return NULL;
}

static void check_wait(shmreg_reader *r, struct shmreg_ctl *c)
{
    struct committer w = {c, 0};
    struct waiter wf;
    shmreg_reader *r2;
    uint32_t seen = shmreg_reader_notify_seq(r), now = 0;
    int64_t t0 = now_ns(), took;
    pthread_t t;
    int rc;

    rc = shmreg_reader_wait(r, seen, 100000000, &now);
    took = now_ns() - t0;
    CHECK(rc == -ETIMEDOUT && now == seen, "wait without a commit = %s", shmreg_reader_strerror(rc));
    CHECK(took >= 100000000 && took < 1000000000, "a 100 ms wait took %lld ns", (long long)took);
    CHECK(atomic_load(&c->notify_waiters) == 0, "notify_waiters %u after a wait", atomic_load(&c->notify_waiters));

    rc = shmreg_reader_wait(r, seen - 1, 100000000, &now);
    CHECK(rc == 0 && now == seen, "wait on a value already passed = %s", shmreg_reader_strerror(rc));

    pthread_create(&t, NULL, commit_when_waited, &w);
    t0 = now_ns();
    rc = shmreg_reader_wait(r, seen, 5000000000LL, &now);
    took = now_ns() - t0;
    pthread_join(t, NULL);
    CHECK(w.saw_waiter, "the waiter was not counted in notify_waiters");
    CHECK(rc == 0 && now == seen + 1, "wait for a commit = %s, now %u", shmreg_reader_strerror(rc), now);
    CHECK(took < 2000000000LL, "woken after %lld ns", (long long)took);
    CHECK(atomic_load(&c->notify_waiters) == 0, "notify_waiters %u after a wait", atomic_load(&c->notify_waiters));

    /* close cancels a wait under way, then frees. */
    MUST(shmreg_reader_open(path, &r2) == 0, "open a second handle");
    wf.r = r2;
    wf.rc = 1;
    pthread_create(&t, NULL, wait_forever, &wf);
    sleep_ms(100);
    CHECK(shmreg_reader_close(r2) == 0, "close while waiting");
    pthread_join(t, NULL);
    CHECK(wf.rc == -ECANCELED, "a wait cut by close = %s", shmreg_reader_strerror(wf.rc));
    CHECK(wf.took < 2000000000LL, "close took %lld ns to end the wait", (long long)wf.took);
    CHECK(atomic_load(&c->notify_waiters) == 0, "notify_waiters %u after a cancelled wait",
          atomic_load(&c->notify_waiters));
}

/* ---- supersession ---- */

/* The offset of key's value bytes, found with the header-only reader. */
static uint64_t value_offset(const char *key)
{
    struct shmreg_region hr;
    const void *v;
    size_t vl;
    uint64_t off;

    MUST(shmreg_open(path, &hr) == 0 && shmreg_read_begin(&hr) == 0, "header-only open");
    MUST(shmreg_get(&hr, key, strlen(key), &v, &vl) == 0, "header-only get %s", key);
    off = (uint64_t)((const unsigned char *)v - hr.base);
    shmreg_read_end(&hr);
    shmreg_close(&hr);
    return off;
}

static void check_superseded(shmreg_reader *r)
{
    char next[4200];
    unsigned char *old, *fresh;
    size_t osize, fsize, vl;
    uint64_t off = value_offset("a");
    const void *v;
    char buf[8];
    int rc;

    /* The replacement: the same entries, a's value now "9". */
    snprintf(next, sizeof next, "%s.next", path);
    copy_file(path, next);
    fresh = map_rw(next, &fsize);
    fresh[off] = '9';
    munmap(fresh, fsize);

    old = map_rw(path, &osize);
    MUST(shmreg_reader_read_begin(r) == 0, "read_begin");
    MUST(rename(next, path) == 0, "rename: %s", strerror(errno));
    atomic_fetch_or(&((struct shmreg_header *)(void *)old)->state, SHMREG_STATE_SUPERSEDED);

    rc = shmreg_reader_get(r, "a", 1, &v, &vl);
    CHECK(rc == SHMREG_READER_ESUPERSEDED, "zero-copy get on a superseded file = %s", shmreg_reader_strerror(rc));
    rc = shmreg_reader_get_copy(r, "a", 1, buf, sizeof buf, &vl);
    CHECK(rc == SHMREG_READER_ESUPERSEDED, "get_copy inside a section on a superseded file = %s",
          shmreg_reader_strerror(rc));
    CHECK(shmreg_reader_refresh(r) == -EBUSY, "refresh inside a section");
    CHECK(shmreg_reader_read_end(r) == 0, "read_end");
    CHECK(shmreg_reader_reopens(r) == 0, "reopened inside a section");

    check_value(r, "a", "9", 1); /* reopens by itself */
    CHECK(shmreg_reader_reopens(r) == 1, "reopens = %llu, want 1", (unsigned long long)shmreg_reader_reopens(r));
    check_value(r, "b", "two", 3);
    CHECK(shmreg_reader_refresh(r) == 0, "refresh of a current file");
    munmap(old, osize);
}

static void check_slots_run_out(void)
{
    shmreg_reader *h[16];
    int n = 0, rc;

    for (;;) {
        MUST(n < 16, "more handles than the sample has slots");
        rc = shmreg_reader_open(path, &h[n]);
        if (rc != 0)
            break;
        n++;
    }
    CHECK(rc == SHMREG_READER_ENOSLOTS && n >= 1, "open with every slot taken = %s after %d",
          shmreg_reader_strerror(rc), n);
    CHECK(shmreg_reader_close(h[--n]) == 0, "close");
    rc = shmreg_reader_open(path, &h[n]);
    CHECK(rc == 0, "open after a close gave a slot back = %s", shmreg_reader_strerror(rc));
    if (rc == 0)
        n++;
    while (n > 0)
        shmreg_reader_close(h[--n]);
}

int main(int argc, char **argv)
{
    char cpath[4200];
    shmreg_reader *r;
    unsigned char *ctl;
    size_t ctl_size;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: lib_test PATH   (a region written by selftest --write PATH)\n");
        return 2;
    }
    path = argv[1];
    memset(zval, 'z', sizeof zval);
    snprintf(cpath, sizeof cpath, "%s.ctl", path);

    check_open_errors();
    rc = shmreg_reader_open(path, &r);
    MUST(rc == 0, "open %s: %s", path, shmreg_reader_strerror(rc));
    ctl = map_rw(cpath, &ctl_size);

    check_lookups(r);
    check_sections(r);
    check_scans(r);
    check_section_blocks_others(r);
    check_shared_handle(r);
    check_evicted(r, ctl, ctl_size);
    check_wait(r, (struct shmreg_ctl *)(void *)ctl);
    check_superseded(r);
    CHECK(shmreg_reader_close(r) == 0, "close");
    CHECK(shmreg_reader_close(NULL) == 0, "close(NULL)");
    check_slots_run_out();
    munmap(ctl, ctl_size);

    if (failures != 0) {
        fprintf(stderr, "lib_test: %d failures\n", failures);
        return 1;
    }
    printf("lib_test: ok\n");
    return 0;
}
