/*
 * libshmreg.c - include/shmreg.h compiled into a shared library behind the
 * opaque handle of libshmreg.h.
 *
 * Every layout and protocol rule stays in shmreg.h; this file adds only:
 *
 * - a handle (the shmreg_region, the path it was opened at, a recursive
 *   mutex), so callers need no struct layout and may share a handle between
 *   threads;
 * - retries in the copying calls: SHMREG_ESUPERSEDED reopens the path
 *   (shmreg_reopen_if_superseded) and SHMREG_EEVICTED reads again, both
 *   bounded, so that an FFI caller never sees either from them;
 * - a chunked prefix scan that copies entries out, one short read section
 *   per chunk, resuming after the last key copied;
 * - the wait for a commit on the control file's futex word.
 *
 * Built with -fvisibility=hidden: only the SHMREG_READER_API functions of
 * libshmreg.h are exported (the Makefile checks it with nm -D).
 */
#define _GNU_SOURCE
#define LIBSHMREG_BUILD
#include <pthread.h>
#include <time.h>

#include "shmreg.h"
#include "libshmreg.h"

_Static_assert(SHMREG_READER_ENOTFOUND == SHMREG_ENOTFOUND && SHMREG_READER_EMAGIC == SHMREG_EMAGIC &&
                   SHMREG_READER_EVERSION == SHMREG_EVERSION && SHMREG_READER_ETRUNCATED == SHMREG_ETRUNCATED &&
                   SHMREG_READER_ECORRUPT == SHMREG_ECORRUPT && SHMREG_READER_ESUPERSEDED == SHMREG_ESUPERSEDED &&
                   SHMREG_READER_EEVICTED == SHMREG_EEVICTED && SHMREG_READER_ENOSLOTS == SHMREG_ENOSLOTS &&
                   SHMREG_READER_ESECTION == SHMREG_ESECTION,
               "libshmreg.h repeats shmreg.h's return codes");

/* How often a copying call reopens or re-reads before it gives up and
 * returns the code: a file superseded again at every reopen, or a section
 * evicted every time, means something is badly wrong with the writer. */
#define RETRIES 16

#define FUTEX_WAIT_OP 0 /* FUTEX_WAIT, shared (never FUTEX_PRIVATE_FLAG: the word is in a file mapping) */
#define FUTEX_WAKE_OP 1 /* FUTEX_WAKE, shared */

struct shmreg_reader {
    struct shmreg_region reg;
    char *path;           /* reopened when the data file is superseded */
    pthread_mutex_t mu;   /* recursive; held by every call, and for a whole section by the thread in it */
    _Atomic uint64_t reopens;
    _Atomic int closing;  /* set by close: waits return -ECANCELED */
    _Atomic int waiting;  /* waits under way; close frees nothing until it is 0 */
};

static _Atomic uint32_t *notify_seq(const shmreg_reader *r)
{
    return &((struct shmreg_ctl *)(void *)r->reg.ctl)->notify_seq;
}

static _Atomic uint32_t *notify_waiters(const shmreg_reader *r)
{
    return &((struct shmreg_ctl *)(void *)r->reg.ctl)->notify_waiters;
}

SHMREG_READER_API int shmreg_reader_layout_version(void) { return SHMREG_LAYOUT_VERSION; }

SHMREG_READER_API int shmreg_reader_open(const char *path, shmreg_reader **out)
{
    pthread_mutexattr_t attr;
    shmreg_reader *r;
    int rc;

    *out = NULL;
    if (path == NULL)
        return -EINVAL;
    if ((r = calloc(1, sizeof *r)) == NULL || (r->path = strdup(path)) == NULL) {
        free(r);
        return -ENOMEM;
    }
    rc = shmreg_open(path, &r->reg);
    if (rc != 0) {
        free(r->path);
        free(r);
        return rc;
    }
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&r->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    *out = r;
    return 0;
}

SHMREG_READER_API int shmreg_reader_close(shmreg_reader *r)
{
    struct timespec ms = {0, 1000000};
    int rc;

    if (r == NULL)
        return 0;
    /* Cancel the waits: each re-checks closing whenever it wakes. Wake again
     * until none is left, since one may have been about to sleep. Other
     * processes sleeping on the same word wake too, see no change and sleep
     * again. */
    atomic_store(&r->closing, 1);
    while (atomic_load(&r->waiting) != 0) {
        syscall(SYS_futex, notify_seq(r), FUTEX_WAKE_OP, INT32_MAX, NULL, NULL, 0);
        nanosleep(&ms, NULL);
    }
    pthread_mutex_lock(&r->mu);
    rc = shmreg_close(&r->reg); /* ends a section of the closing thread's too: the slot goes */
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_destroy(&r->mu);
    free(r->path);
    free(r);
    return rc;
}

/* Reopens a superseded data file (the mutex held, outside a section). */
static int refresh_locked(shmreg_reader *r)
{
    int rc = 0, did = 0;

    for (int i = 0; i < RETRIES; i++) {
        rc = shmreg_reopen_if_superseded(&r->reg, r->path);
        if (rc <= 0)
            break;
        did = 1;
        atomic_fetch_add(&r->reopens, 1);
    }
    return rc < 0 ? rc : did;
}

SHMREG_READER_API int shmreg_reader_refresh(shmreg_reader *r)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    rc = r->reg.in_section ? -EBUSY : refresh_locked(r);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

SHMREG_READER_API uint64_t shmreg_reader_reopens(const shmreg_reader *r) { return atomic_load(&r->reopens); }

SHMREG_READER_API uint64_t shmreg_reader_generation(shmreg_reader *r)
{
    uint64_t g;

    pthread_mutex_lock(&r->mu);
    if (!r->reg.in_section)
        refresh_locked(r);
    g = shmreg_generation(&r->reg);
    pthread_mutex_unlock(&r->mu);
    return g;
}

/* ---- sections ------------------------------------------------------------ */

/* begin leaves the mutex held (the section's own hold), end releases it:
 * another thread's calls wait for the section to end. */
SHMREG_READER_API int shmreg_reader_read_begin(shmreg_reader *r)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    if (r->reg.in_section) {
        pthread_mutex_unlock(&r->mu);
        return SHMREG_ESECTION;
    }
    if ((rc = refresh_locked(r)) >= 0)
        rc = shmreg_read_begin(&r->reg);
    if (rc != 0)
        pthread_mutex_unlock(&r->mu);
    return rc;
}

SHMREG_READER_API int shmreg_reader_read_end(shmreg_reader *r)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    if (!r->reg.in_section) {
        pthread_mutex_unlock(&r->mu);
        return SHMREG_ESECTION;
    }
    rc = shmreg_read_end(&r->reg);
    pthread_mutex_unlock(&r->mu); /* ours */
    pthread_mutex_unlock(&r->mu); /* the section's */
    return rc;
}

SHMREG_READER_API int shmreg_reader_get(shmreg_reader *r, const void *key, size_t klen, const void **val, size_t *vlen)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    rc = shmreg_get(&r->reg, key, klen, val, vlen); /* ESECTION outside a section */
    pthread_mutex_unlock(&r->mu);
    return rc;
}

SHMREG_READER_API int shmreg_reader_foreach(shmreg_reader *r, const void *prefix, size_t plen,
                                            shmreg_reader_visit_fn fn, void *ctx)
{
    struct shmreg_iter it;
    int rc;

    pthread_mutex_lock(&r->mu);
    for (rc = shmreg_iter_seek(&r->reg, &it, prefix, plen); rc == 0; rc = shmreg_iter_next(&it)) {
        int stop = fn(ctx, it.key, it.klen, it.val, it.vlen);
        if (stop != 0) {
            rc = stop;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc == SHMREG_ENOTFOUND ? 0 : rc;
}

/* ---- copying calls -------------------------------------------------------- */

/* After a copying call's own section failed: reopen for SUPERSEDED and
 * retry, retry for EEVICTED; anything else is the answer. */
static int should_retry(shmreg_reader *r, int rc)
{
    if (rc == SHMREG_ESUPERSEDED) {
        int rr = refresh_locked(r);
        return rr >= 0; /* 0: someone reopened already; read again */
    }
    return rc == SHMREG_EEVICTED;
}

SHMREG_READER_API int shmreg_reader_get_copy(shmreg_reader *r, const void *key, size_t klen, void *buf, size_t cap,
                                             size_t *vlen)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    if (r->reg.in_section) { /* the caller's own section (it holds the mutex) */
        rc = shmreg_get_copy(&r->reg, key, klen, buf, cap, vlen);
    } else {
        for (int i = 0; i < RETRIES; i++) {
            rc = shmreg_get_copy(&r->reg, key, klen, buf, cap, vlen);
            if (!should_retry(r, rc))
                break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* One chunk of shmreg_reader_scan_copy, in one section of its own. */
static int scan_once(shmreg_reader *r, const unsigned char *prefix, size_t plen, const void *after, size_t alen,
                     unsigned char *buf, size_t cap, size_t *used, size_t *count)
{
    const void *target = prefix;
    size_t tlen = plen;
    struct shmreg_iter it;
    uint64_t off;
    int rc, erc;

    *used = 0;
    *count = 0;
    if ((rc = shmreg_read_begin(&r->reg)) != 0)
        return rc;
    if (after != NULL && shmreg__cmp(after, alen, prefix, plen) > 0) {
        target = after;
        tlen = alen;
    }
    /* shmreg_iter_seek() seeks to the prefix it filters by; resuming needs
     * the two apart (seek to `after`, keep filtering by prefix), so set the
     * iterator up by hand with the header's own seek and walk. */
    memset(&it, 0, sizeof it);
    it.r = &r->reg;
    it.prefix = prefix;
    it.plen = plen;
    it.steps = r->reg.step_limit;
    if ((rc = shmreg__check(&r->reg)) == 0 && (rc = shmreg__seek(&r->reg, target, tlen, &off)) == 0)
        rc = shmreg__iter_walk(&it, off);
    if (rc == 0 && after != NULL && target == after && it.klen == alen && memcmp(it.key, after, alen) == 0)
        rc = shmreg_iter_next(&it);
    for (; rc == 0; rc = shmreg_iter_next(&it)) {
        size_t need = 8 + it.klen + it.vlen;
        uint32_t lens[2] = {(uint32_t)it.klen, (uint32_t)it.vlen};

        if (need > cap - *used) {
            if (*count == 0) {
                *used = need;
                rc = -ERANGE;
            } else {
                rc = 1;
            }
            break;
        }
        memcpy(buf + *used, lens, 8);
        memcpy(buf + *used + 8, it.key, it.klen);
        if (it.vlen > 0)
            memcpy(buf + *used + 8 + it.klen, it.val, it.vlen);
        *used += need;
        (*count)++;
    }
    if (rc == SHMREG_ENOTFOUND)
        rc = 0;
    if ((erc = shmreg_read_end(&r->reg)) != 0)
        rc = erc;
    if (rc < 0 && rc != -ERANGE) { /* nothing copied is usable */
        *count = 0;
        *used = 0;
    }
    return rc;
}

SHMREG_READER_API int shmreg_reader_scan_copy(shmreg_reader *r, const void *prefix, size_t plen, const void *after,
                                              size_t alen, void *buf, size_t cap, size_t *used, size_t *count)
{
    int rc = SHMREG_ESECTION;

    if (prefix == NULL)
        prefix = "";
    pthread_mutex_lock(&r->mu);
    if (!r->reg.in_section) {
        for (int i = 0; i < RETRIES; i++) {
            rc = scan_once(r, prefix, plen, after, alen, buf, cap, used, count);
            if (!should_retry(r, rc))
                break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- waiting --------------------------------------------------------------- */

SHMREG_READER_API uint32_t shmreg_reader_notify_seq(const shmreg_reader *r) { return atomic_load(notify_seq(r)); }

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The writer adds to notify_seq, then FUTEX_WAKEs if notify_waiters != 0;
 * a waiter adds to notify_waiters, then re-checks notify_seq inside
 * FUTEX_WAIT. All four are sequentially consistent, so either the writer
 * sees the waiter counted or the waiter's FUTEX_WAIT sees the new value (and
 * returns EAGAIN at once): no commit is slept through. */
SHMREG_READER_API int shmreg_reader_wait(shmreg_reader *r, uint32_t seen, int64_t timeout_ns, uint32_t *now)
{
    int64_t deadline = timeout_ns < 0 ? -1 : now_ns() + timeout_ns;
    _Atomic uint32_t *seq = notify_seq(r);
    int rc = -ETIMEDOUT, use_futex = 1;
    uint32_t cur;

    *now = seen;
    atomic_fetch_add(&r->waiting, 1);
    if (atomic_load(&r->closing)) {
        atomic_fetch_sub(&r->waiting, 1);
        return -ECANCELED;
    }
    atomic_fetch_add(notify_waiters(r), 1);
    for (;;) {
        int64_t left = 0;
        struct timespec ts;

        if ((cur = atomic_load(seq)) != seen) {
            *now = cur;
            rc = 0;
            break;
        }
        if (atomic_load(&r->closing)) {
            rc = -ECANCELED;
            break;
        }
        if (deadline >= 0 && (left = deadline - now_ns()) <= 0) {
            rc = -ETIMEDOUT;
            break;
        }
        if (use_futex) {
            ts.tv_sec = deadline < 0 ? 3600 : left / 1000000000;
            ts.tv_nsec = deadline < 0 ? 0 : left % 1000000000;
            if (syscall(SYS_futex, seq, FUTEX_WAIT_OP, seen, &ts, NULL, 0) != 0) {
                if (errno == ENOSYS) {
                    use_futex = 0;
                } else if (errno == EINTR) { /* a signal handler ran: let the caller look */
                    rc = -EINTR;
                    break;
                }
            }
        } else {
            ts.tv_sec = 0;
            ts.tv_nsec = deadline >= 0 && left < 1000000 ? left : 1000000;
            nanosleep(&ts, NULL);
        }
    }
    atomic_fetch_sub(notify_waiters(r), 1);
    atomic_fetch_sub(&r->waiting, 1);
    return rc;
}

SHMREG_READER_API const char *shmreg_reader_strerror(int rc)
{
    switch (rc) {
    case SHMREG_ESUPERSEDED: return "shmreg: region superseded (inside your own read section: end it and read again)";
    case -ECANCELED: return "shmreg: the reader was closed while waiting";
    case -ETIMEDOUT: return "shmreg: timed out waiting for a change";
    default: return shmreg_strerror(rc);
    }
}
