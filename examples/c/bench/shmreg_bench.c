/*
 * shmreg_bench - random lookups from C: the shmreg reader (include/shmreg.h)
 * against a private hash table in the process's own heap and against LMDB,
 * on the same entries and the same key sequence (issue 18, item 5).
 *
 *   shmreg_bench [options] [LABEL=]REGION_PATH [[LABEL=]REGION_PATH...]
 *
 * The first region is the reference: its keys are listed (iterated, in one
 * read section) and copied into
 *   - "table": an open-addressing table in this process's heap: FNV-1a 64
 *     over the key bytes, linear probing, a power-of-two capacity at least
 *     twice the entries, each entry holding pointers to malloc'd copies of
 *     its key and value (and their lengths);
 *   - "lmdb" (when built with LMDB): an environment in a fresh directory
 *     under /dev/shm, loaded in key order (MDB_APPEND), removed at exit.
 * Every further region (e.g. the same entries written by another layout
 * version) is timed through shmreg_get only.
 *
 * The keys looked up are those of shm/bench_test.go: 65536 draws
 * svc/service-%04d/instance-%06d of i = rand.New(rand.NewPCG(1, n)).IntN(n)
 * (Go's PCG-DXSM and IntN, reproduced below, so the C and Go benchmarks
 * look up the same keys), cycled. Every lookup adds the value's first and
 * last byte to a sink, so every path touches the value's memory; a key that
 * is not found is fatal. Paths:
 *   shmreg      shmreg_read_begin, shmreg_get, shmreg_read_end per lookup
 *               (a service answering one request)
 *   shmreg-1024 one read section around every 1024 lookups
 *   table       the private table
 *   lmdb-renew  mdb_txn_renew, mdb_get, mdb_txn_reset per lookup
 *   lmdb-txn    one read transaction around 4096 lookups (a slice, below)
 * After one untimed pass of every path over the 65536 keys, a round runs
 * every path in turn (the order rotating from round to round), -l lookups
 * each, timed with CLOCK_MONOTONIC in slices of 4096 lookups. A path's
 * figure for a round is its median slice in ns/lookup (robust to the
 * slices in which the process was descheduled on a shared machine); the
 * mean of all its slices is reported beside it. The 65536 keys' lines
 * (about 16 MiB) fit in a large L3 while one path runs alone, as in the Go
 * benchmark; -i makes the paths take turns slice by slice, so that each
 * finds the caches full of the others' lines (a colder regime). The report is the median over the
 * rounds, the range, and per-round ratios of the median slices (this ÷
 * table; LMDB ÷ this: lmdb-renew for a section per lookup, lmdb-txn for
 * the batched sections).
 *
 * Options:
 *   -l LOOKUPS   lookups per path per round (default 4000000)
 *   -r ROUNDS    rounds (default 5)
 *   -d DIR       where the LMDB environment's directory is made (default
 *                /dev/shm); it is removed at a normal exit
 *   -i           interleave the paths slice by slice (see above)
 *   -m           print only markdown table rows (no header lines)
 *   --only PATH --count N
 *                cachegrind mode: build only what PATH needs, make one pass
 *                over the 65536 keys, then exactly N lookups of PATH, and
 *                print the sink. Two runs with different N, subtracted,
 *                give the cost of the extra lookups without the setup.
 *                PATH is shmreg, shmreg-1024 or table (of the first region).
 *
 * Exit status 0, 1 on any failure (message on stderr), 2 on usage errors.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "shmreg.h"

#ifdef HAVE_LMDB
#include <lmdb.h>
#endif

#define NKEYS (1u << 16) /* distinct draws, cycled, as in shm/bench_test.go */
#define BATCH 1024       /* lookups per read section on the shmreg-1024 path */
#define SLICE 4096       /* lookups a path does before the next path's turn */
#define MAX_REGIONS 4
#define MAX_ROUNDS 101

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "shmreg_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);

    if (p == NULL)
        die("out of memory", NULL);
    return p;
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- the key sequence: Go's rand.New(rand.NewPCG(1, n)).IntN(n) ---------- */

struct pcg {
    uint64_t hi, lo;
};

static uint64_t pcg_uint64(struct pcg *p)
{
    const unsigned __int128 mul = ((unsigned __int128)UINT64_C(2549297995355413924) << 64) |
                                  UINT64_C(4865540595714422341);
    const unsigned __int128 inc = ((unsigned __int128)UINT64_C(6364136223846793005) << 64) |
                                  UINT64_C(1442695040888963407);
    unsigned __int128 s = ((unsigned __int128)p->hi << 64) | p->lo;
    uint64_t hi, lo;

    s = s * mul + inc;
    p->hi = hi = (uint64_t)(s >> 64);
    p->lo = lo = (uint64_t)s;
    hi ^= hi >> 32; /* DXSM */
    hi *= UINT64_C(0xda942042e4dd58b5);
    hi ^= hi >> 48;
    hi *= lo | 1;
    return hi;
}

/* Rand.IntN for n > 0 on a 64-bit machine (Lemire's method, as Go does it). */
static uint64_t pcg_intn(struct pcg *p, uint64_t n)
{
    unsigned __int128 m;

    if ((n & (n - 1)) == 0)
        return pcg_uint64(p) & (n - 1);
    m = (unsigned __int128)pcg_uint64(p) * n;
    if ((uint64_t)m < n) {
        uint64_t thresh = -n % n;
        while ((uint64_t)m < thresh)
            m = (unsigned __int128)pcg_uint64(p) * n;
    }
    return (uint64_t)(m >> 64);
}

/* One cache line a key, so that reading the key list costs every path
 * exactly one (sequential) line a lookup. */
struct key {
    char s[56];
    size_t len;
};
_Static_assert(sizeof(struct key) == 64, "a key is one cache line");

static struct key *make_keys(uint64_t n)
{
    struct key *keys = aligned_alloc(64, NKEYS * sizeof *keys);
    struct pcg p = {1, n};

    if (keys == NULL)
        die("out of memory", NULL);
    for (size_t i = 0; i < NKEYS; i++) {
        uint64_t k = pcg_intn(&p, n);
        int len = snprintf(keys[i].s, sizeof keys[i].s, "svc/service-%04d/instance-%06llu", (int)(k % 10000),
                           (unsigned long long)k);
        keys[i].len = (size_t)len;
    }
    return keys;
}

/* ---- the private table ---------------------------------------------------- */

struct entry {
    char *key; /* NULL: empty slot */
    char *val;
    uint32_t klen, vlen;
};

struct table {
    struct entry *slots;
    uint64_t mask;
};

static uint64_t fnv1a64(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = UINT64_C(14695981039346656037);

    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static void table_init(struct table *t, uint64_t n)
{
    uint64_t cap = 16;

    while (cap < 2 * n) /* at most half full */
        cap <<= 1;
    t->slots = calloc(cap, sizeof *t->slots);
    if (t->slots == NULL)
        die("out of memory", NULL);
    t->mask = cap - 1;
}

static void table_put(struct table *t, const void *key, size_t klen, const void *val, size_t vlen)
{
    uint64_t i = fnv1a64(key, klen) & t->mask;

    while (t->slots[i].key != NULL) {
        if (t->slots[i].klen == klen && memcmp(t->slots[i].key, key, klen) == 0)
            die("duplicate key in the region", NULL);
        i = (i + 1) & t->mask;
    }
    t->slots[i].key = xmalloc(klen);
    memcpy(t->slots[i].key, key, klen);
    t->slots[i].val = xmalloc(vlen > 0 ? vlen : 1);
    memcpy(t->slots[i].val, val, vlen);
    t->slots[i].klen = (uint32_t)klen;
    t->slots[i].vlen = (uint32_t)vlen;
}

static const struct entry *table_get(const struct table *t, const void *key, size_t klen)
{
    uint64_t i = fnv1a64(key, klen) & t->mask;

    for (;;) {
        const struct entry *e = &t->slots[i];

        if (e->key == NULL)
            return NULL;
        if (e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
        i = (i + 1) & t->mask;
    }
}

static void table_free(struct table *t)
{
    for (uint64_t i = 0; i <= t->mask; i++) {
        free(t->slots[i].key);
        free(t->slots[i].val);
    }
    free(t->slots);
}

/* ---- LMDB ------------------------------------------------------------------- */

#ifdef HAVE_LMDB
struct lmdb {
    char dir[256];
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *rtxn; /* the read transaction, reset between uses */
    MDB_txn *wtxn;
    uint64_t pending;
};

static void lmdb_check(int rc, const char *what)
{
    if (rc != 0)
        die(what, mdb_strerror(rc));
}

static void lmdb_open(struct lmdb *l, const char *parent, uint64_t n)
{
    if (snprintf(l->dir, sizeof l->dir, "%s/shmreg-bench-lmdb-XXXXXX", parent) >= (int)sizeof l->dir)
        die("-d: directory name too long", parent);
    if (mkdtemp(l->dir) == NULL)
        die(l->dir, strerror(errno));
    lmdb_check(mdb_env_create(&l->env), "mdb_env_create");
    /* Generous: the file is sparse, only the pages written take memory. */
    lmdb_check(mdb_env_set_mapsize(l->env, (size_t)(n * 1024 + (256u << 20))), "mdb_env_set_mapsize");
    lmdb_check(mdb_env_open(l->env, l->dir, MDB_NOSYNC | MDB_NOMETASYNC, 0600), "mdb_env_open");
    lmdb_check(mdb_txn_begin(l->env, NULL, 0, &l->wtxn), "mdb_txn_begin");
    lmdb_check(mdb_dbi_open(l->wtxn, NULL, 0, &l->dbi), "mdb_dbi_open");
    l->pending = 0;
}

/* Keys arrive in the region's order (memcmp, then shorter first), which is
 * LMDB's default order too, so MDB_APPEND applies: full leaf pages. */
static void lmdb_put(struct lmdb *l, const void *key, size_t klen, const void *val, size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};

    lmdb_check(mdb_put(l->wtxn, l->dbi, &k, &v, MDB_APPEND), "mdb_put");
    if (++l->pending == 65536) {
        lmdb_check(mdb_txn_commit(l->wtxn), "mdb_txn_commit");
        lmdb_check(mdb_txn_begin(l->env, NULL, 0, &l->wtxn), "mdb_txn_begin");
        l->pending = 0;
    }
}

static void lmdb_done_loading(struct lmdb *l)
{
    MDB_envinfo info;
    MDB_stat st;

    lmdb_check(mdb_txn_commit(l->wtxn), "mdb_txn_commit");
    lmdb_check(mdb_env_info(l->env, &info), "mdb_env_info");
    lmdb_check(mdb_env_stat(l->env, &st), "mdb_env_stat");
    fprintf(stderr, "shmreg_bench: LMDB %llu entries, B-tree depth %u, %llu leaf pages, %llu MiB used\n",
            (unsigned long long)st.ms_entries, st.ms_depth, (unsigned long long)st.ms_leaf_pages,
            (unsigned long long)((info.me_last_pgno + 1) * st.ms_psize) >> 20);
    l->wtxn = NULL;
    lmdb_check(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &l->rtxn), "mdb_txn_begin (read)");
    mdb_txn_reset(l->rtxn);
}

static void lmdb_close(struct lmdb *l)
{
    char path[300];

    mdb_txn_abort(l->rtxn);
    mdb_env_close(l->env);
    snprintf(path, sizeof path, "%s/data.mdb", l->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", l->dir);
    unlink(path);
    rmdir(l->dir);
}
#endif

/* ---- the lookup loops ----------------------------------------------------- */

static uint64_t sink;

enum path { P_SHMREG, P_SHMREG_BATCH, P_TABLE, P_LMDB_RENEW, P_LMDB_TXN };

struct bench {
    const struct key *keys;
    struct shmreg_region *regions[MAX_REGIONS];
    const char *labels[MAX_REGIONS];
    int nregions;
    struct table table;
#ifdef HAVE_LMDB
    struct lmdb lmdb;
#endif
};

static void shm_fail(const char *what, int rc, const struct key *k)
{
    fprintf(stderr, "shmreg_bench: %s %.*s: %s\n", what, k ? (int)k->len : 0, k ? k->s : "", shmreg_strerror(rc));
    exit(1);
}

static void run_shmreg(struct shmreg_region *r, const struct key *keys, uint64_t start, uint64_t n)
{
    uint64_t s = 0;

    for (uint64_t i = 0; i < n; i++) {
        const struct key *k = &keys[(start + i) & (NKEYS - 1)];
        const unsigned char *v;
        size_t vlen;
        int rc;

        if ((rc = shmreg_read_begin(r)) != 0)
            shm_fail("shmreg_read_begin", rc, NULL);
        if ((rc = shmreg_get(r, k->s, k->len, (const void **)&v, &vlen)) != 0 || vlen == 0)
            shm_fail("shmreg_get", rc, k);
        s += v[0] + v[vlen - 1];
        if ((rc = shmreg_read_end(r)) != 0)
            shm_fail("shmreg_read_end", rc, NULL);
    }
    sink += s;
}

static void run_shmreg_batch(struct shmreg_region *r, const struct key *keys, uint64_t start, uint64_t n)
{
    uint64_t s = 0;
    int rc;

    for (uint64_t i = 0; i < n; i++) {
        const struct key *k = &keys[(start + i) & (NKEYS - 1)];
        const unsigned char *v;
        size_t vlen;

        if (i % BATCH == 0) {
            if (i > 0 && (rc = shmreg_read_end(r)) != 0)
                shm_fail("shmreg_read_end", rc, NULL);
            if ((rc = shmreg_read_begin(r)) != 0)
                shm_fail("shmreg_read_begin", rc, NULL);
        }
        if ((rc = shmreg_get(r, k->s, k->len, (const void **)&v, &vlen)) != 0 || vlen == 0)
            shm_fail("shmreg_get", rc, k);
        s += v[0] + v[vlen - 1];
    }
    if (n > 0 && (rc = shmreg_read_end(r)) != 0)
        shm_fail("shmreg_read_end", rc, NULL);
    sink += s;
}

static void run_table(const struct table *t, const struct key *keys, uint64_t start, uint64_t n)
{
    uint64_t s = 0;

    for (uint64_t i = 0; i < n; i++) {
        const struct key *k = &keys[(start + i) & (NKEYS - 1)];
        const struct entry *e = table_get(t, k->s, k->len);

        if (e == NULL || e->vlen == 0)
            die("table: key not found", k->s);
        s += (unsigned char)e->val[0] + (unsigned char)e->val[e->vlen - 1];
    }
    sink += s;
}

#ifdef HAVE_LMDB
static void run_lmdb(struct lmdb *l, const struct key *keys, uint64_t start, uint64_t n, int renew_each)
{
    uint64_t s = 0;

    if (!renew_each)
        lmdb_check(mdb_txn_renew(l->rtxn), "mdb_txn_renew");
    for (uint64_t i = 0; i < n; i++) {
        const struct key *k = &keys[(start + i) & (NKEYS - 1)];
        MDB_val kv = {k->len, (void *)k->s}, v;
        int rc;

        if (renew_each)
            lmdb_check(mdb_txn_renew(l->rtxn), "mdb_txn_renew");
        if ((rc = mdb_get(l->rtxn, l->dbi, &kv, &v)) != 0 || v.mv_size == 0)
            die("mdb_get", rc ? mdb_strerror(rc) : "empty value");
        s += ((const unsigned char *)v.mv_data)[0] + ((const unsigned char *)v.mv_data)[v.mv_size - 1];
        if (renew_each)
            mdb_txn_reset(l->rtxn);
    }
    if (!renew_each)
        mdb_txn_reset(l->rtxn);
    sink += s;
}
#endif

/* One timed path: which loop, on which region; where it is in the key
 * list; the median slice of each round and each round's mean. */
struct job {
    enum path path;
    int region;
    char name[80];
    uint64_t cursor;
    double *slice; /* this round's slices, ns/lookup */
    double ns[MAX_ROUNDS], mean[MAX_ROUNDS];
};

static void run_job(struct bench *b, struct job *j, uint64_t n)
{
    switch (j->path) {
    case P_SHMREG: run_shmreg(b->regions[j->region], b->keys, j->cursor, n); break;
    case P_SHMREG_BATCH: run_shmreg_batch(b->regions[j->region], b->keys, j->cursor, n); break;
    case P_TABLE: run_table(&b->table, b->keys, j->cursor, n); break;
#ifdef HAVE_LMDB
    case P_LMDB_RENEW: run_lmdb(&b->lmdb, b->keys, j->cursor, n, 1); break;
    case P_LMDB_TXN: run_lmdb(&b->lmdb, b->keys, j->cursor, n, 0); break;
#else
    case P_LMDB_RENEW:
    case P_LMDB_TXN: break;
#endif
    }
    j->cursor += n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];

    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The median of n values, on a sorted copy. */
static double median_n(const double *v, uint64_t n)
{
    double *s = xmalloc(n * sizeof *s), m;

    memcpy(s, v, n * sizeof *v);
    qsort(s, n, sizeof *s, cmp_double);
    m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    free(s);
    return m;
}

static void minmax(const double *v, int n, double *lo, double *hi)
{
    *lo = *hi = v[0];
    for (int i = 1; i < n; i++) {
        if (v[i] < *lo)
            *lo = v[i];
        if (v[i] > *hi)
            *hi = v[i];
    }
}

/* "1.23x (1.10–1.40)": the median and range of a[i]/b[i] over the rounds. */
static void ratio(char *out, size_t cap, const double *a, const double *b, int n)
{
    double r[MAX_ROUNDS] = {0}, lo, hi;

    for (int i = 0; i < n; i++)
        r[i] = a[i] / b[i];
    minmax(r, n, &lo, &hi);
    snprintf(out, cap, "%.2fx (%.2f–%.2f)", median(r, n), lo, hi);
}

/* ---- setup ---------------------------------------------------------------- */

/* Lists the first region's entries into the table and LMDB (what they need:
 * want_table, want_lmdb); returns the number of entries. */
static uint64_t load(struct bench *b, int want_table, int want_lmdb, const char *lmdb_parent)
{
    struct shmreg_region *r = b->regions[0];
    struct shmreg_iter it;
    uint64_t n = 0, entries = r->hdr->entries;
    int rc, erc;

    if (entries == 0)
        die("the first region is empty", NULL);
    if (want_table)
        table_init(&b->table, entries);
#ifdef HAVE_LMDB
    if (want_lmdb)
        lmdb_open(&b->lmdb, lmdb_parent, entries);
#else
    (void)want_lmdb;
    (void)lmdb_parent;
#endif
    if ((rc = shmreg_read_begin(r)) != 0)
        shm_fail("shmreg_read_begin", rc, NULL);
    for (rc = shmreg_iter_first(r, &it); rc == 0; rc = shmreg_iter_next(&it)) {
        if (want_table)
            table_put(&b->table, it.key, it.klen, it.val, it.vlen);
#ifdef HAVE_LMDB
        if (want_lmdb)
            lmdb_put(&b->lmdb, it.key, it.klen, it.val, it.vlen);
#endif
        n++;
    }
    erc = shmreg_read_end(r);
    if (rc != SHMREG_ENOTFOUND)
        shm_fail("iterating the region", rc, NULL);
    if (erc != 0)
        shm_fail("shmreg_read_end", erc, NULL);
#ifdef HAVE_LMDB
    if (want_lmdb)
        lmdb_done_loading(&b->lmdb);
#endif
    if (n != entries)
        fprintf(stderr, "shmreg_bench: warning: iterated %llu entries, the header says %llu\n",
                (unsigned long long)n, (unsigned long long)entries);
    return n;
}

static void usage(void)
{
    fprintf(stderr, "usage: shmreg_bench [-l LOOKUPS] [-r ROUNDS] [-i] [-d DIR] [-m] [--only PATH --count N] "
                    "[LABEL=]REGION_PATH...\n");
    exit(2);
}

static uint64_t parse_u64(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    if (*s == '\0' || *end != '\0')
        usage();
    return v;
}

static const char *path_name(enum path p)
{
    static const char *const names[] = {"shmreg", "shmreg-1024", "table", "lmdb-renew", "lmdb-txn"};
    return names[p];
}

int main(int argc, char **argv)
{
    struct bench b;
    struct job jobs[3 * MAX_REGIONS + 3];
    uint64_t lookups = 4000000, count = 0, n, slices;
    int rounds = 5, md = 0, njobs = 0, only = -1, have_lmdb = 0, interleave = 0;
    const char *paths[MAX_REGIONS], *lmdb_parent = "/dev/shm";

    memset(&b, 0, sizeof b);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) {
            lookups = parse_u64(argv[++i]);
        } else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            rounds = (int)parse_u64(argv[++i]);
            if (rounds < 1 || rounds > MAX_ROUNDS)
                usage();
        } else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
            lmdb_parent = argv[++i];
        } else if (strcmp(argv[i], "-i") == 0) {
            interleave = 1;
        } else if (strcmp(argv[i], "-m") == 0) {
            md = 1;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            i++;
            for (int p = P_SHMREG; p <= P_TABLE; p++)
                if (strcmp(argv[i], path_name((enum path)p)) == 0)
                    only = p;
            if (only < 0)
                usage();
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = parse_u64(argv[++i]);
        } else if (argv[i][0] == '-' || b.nregions == MAX_REGIONS) {
            usage();
        } else {
            char *eq = strchr(argv[i], '=');

            b.labels[b.nregions] = eq ? argv[i] : "";
            if (eq)
                *eq = '\0';
            paths[b.nregions++] = eq ? eq + 1 : argv[i];
        }
    }
    if (b.nregions == 0 || (only >= 0) != (count > 0) || lookups < SLICE)
        usage();
    lookups -= lookups % SLICE;

    for (int i = 0; i < b.nregions; i++) {
        int rc;

        b.regions[i] = xmalloc(sizeof *b.regions[i]);
        if ((rc = shmreg_open(paths[i], b.regions[i])) != 0) {
            fprintf(stderr, "shmreg_bench: %s: %s\n", paths[i], shmreg_strerror(rc));
            return 1;
        }
    }
#ifdef HAVE_LMDB
    have_lmdb = only < 0;
#endif
    n = load(&b, only < 0 || only == P_TABLE, have_lmdb, lmdb_parent);
    b.keys = make_keys(n);

    if (only >= 0) { /* cachegrind mode: one path, exactly count lookups */
        struct job j = {.path = (enum path)only, .region = 0};

        run_job(&b, &j, NKEYS);
        sink = 0;
        run_job(&b, &j, count);
        printf("%s: %llu lookups of %llu entries, sink %llu, epochs published %s\n", path_name(j.path),
               (unsigned long long)count, (unsigned long long)n, (unsigned long long)sink,
               b.regions[0]->plain_epoch ? "plainly (membarrier registered)" : "seq_cst (no membarrier)");
        return 0;
    }

    for (int i = 0; i < b.nregions; i++) {
        for (int p = P_SHMREG; p <= P_SHMREG_BATCH; p++) {
            struct job *j = &jobs[njobs++];

            j->path = (enum path)p;
            j->region = i;
            snprintf(j->name, sizeof j->name, "%s%s%s", path_name(j->path), *b.labels[i] ? " " : "",
                     b.labels[i]);
        }
    }
    for (int p = P_TABLE; p <= (have_lmdb ? P_LMDB_TXN : P_TABLE); p++) {
        struct job *j = &jobs[njobs++];

        j->path = (enum path)p;
        snprintf(j->name, sizeof j->name, "%s", path_name(j->path));
    }

    /* One round: each path in turn (the order rotating from round to
     * round) does `lookups` lookups, timed in slices of SLICE. A round's
     * figure for a path is its median slice (a slice in which the process
     * was descheduled, on a shared machine, is an outlier, not the
     * median); the mean of all its slices is kept too. With -i the paths
     * take turns slice by slice instead, so that each finds the caches
     * full of the others' lines. lmdb-txn holds one read transaction for
     * each of its slices (LMDB allows a thread one at a time, and
     * lmdb-renew's is reset between its lookups, not closed). */
    slices = lookups / SLICE;
    for (int k = 0; k < njobs; k++)
        jobs[k].slice = xmalloc(slices * sizeof *jobs[k].slice);
    for (int k = 0; k < njobs; k++) /* fault everything in, warm the caches */
        run_job(&b, &jobs[k], NKEYS);
    for (int r = 0; r < rounds; r++) {
        if (interleave) {
            for (uint64_t sl = 0; sl < slices; sl++) {
                for (int k = 0; k < njobs; k++) {
                    struct job *j = &jobs[(k + sl + (uint64_t)r) % (uint64_t)njobs];
                    double t0 = now_ns();

                    run_job(&b, j, SLICE);
                    j->slice[sl] = (now_ns() - t0) / SLICE;
                }
            }
        } else {
            for (int k = 0; k < njobs; k++) {
                struct job *j = &jobs[(k + r) % njobs];

                for (uint64_t sl = 0; sl < slices; sl++) {
                    double t0 = now_ns();

                    run_job(&b, j, SLICE);
                    j->slice[sl] = (now_ns() - t0) / SLICE;
                }
            }
        }
        for (int k = 0; k < njobs; k++) {
            double sum = 0;

            for (uint64_t sl = 0; sl < slices; sl++)
                sum += jobs[k].slice[sl];
            jobs[k].mean[r] = sum / (double)slices;
            jobs[k].ns[r] = median_n(jobs[k].slice, slices);
        }
    }

    if (!md) {
        printf("# %llu entries; %d rounds of %llu lookups per path in slices of %d%s (65536 keys cycled); sink %llu\n",
               (unsigned long long)n, rounds, (unsigned long long)lookups, SLICE,
               interleave ? ", the paths taking turns slice by slice" : "", (unsigned long long)sink);
        for (int i = 0; i < b.nregions; i++)
            printf("# region%s%s: %s, layout version %u, %llu bytes, epochs published %s\n", *b.labels[i] ? " " : "",
                   b.labels[i], paths[i], b.regions[i]->hdr->version, (unsigned long long)b.regions[i]->size,
                   b.regions[i]->plain_epoch ? "plainly (membarrier registered)" : "seq_cst (no membarrier)");
#ifndef HAVE_LMDB
        printf("# LMDB: not built (no lmdb.h / pkg-config lmdb when compiled): apt-get install liblmdb-dev\n");
#endif
        printf("| entries | path | ns/lookup: median slice (range over rounds) | ns/lookup: mean (range) "
               "| ÷ table, per round | LMDB ÷ this, per round |\n");
        printf("| ---: | --- | ---: | ---: | ---: | ---: |\n");
    }
    for (int k = 0; k < njobs; k++) {
        const struct job *j = &jobs[k];
        char tr[64] = "", lr[64] = "—";
        double lo, hi, mlo, mhi;

        minmax(j->ns, rounds, &lo, &hi);
        minmax(j->mean, rounds, &mlo, &mhi);
        ratio(tr, sizeof tr, j->ns, jobs[b.nregions * 2].ns, rounds);
        if (have_lmdb && j->path <= P_SHMREG_BATCH)
            ratio(lr, sizeof lr, jobs[b.nregions * 2 + (j->path == P_SHMREG ? 1 : 2)].ns, j->ns, rounds);
        printf("| %llu | %s | %.0f (%.0f–%.0f) | %.0f (%.0f–%.0f) | %s | %s |\n", (unsigned long long)n, j->name,
               median(j->ns, rounds), lo, hi, median(j->mean, rounds), mlo, mhi, tr, lr);
    }
#ifndef HAVE_LMDB
    if (md)
        printf("| %llu | lmdb | not built (liblmdb-dev missing) | | | |\n", (unsigned long long)n);
#endif

    for (int i = 0; i < b.nregions; i++) {
        shmreg_close(b.regions[i]);
        free(b.regions[i]);
    }
    for (int k = 0; k < njobs; k++)
        free(jobs[k].slice);
    table_free(&b.table);
#ifdef HAVE_LMDB
    lmdb_close(&b.lmdb);
#endif
    free((void *)b.keys);
    return 0;
}
