/*
 * libshmreg.h - the ABI of libshmreg.so, a shared-library reader of shmreg
 * regions for programs that cannot include a C header (Python through
 * ctypes, other languages through their FFI).
 *
 * The library is include/shmreg.h compiled once (libshmreg.c): the layout and
 * the read protocol live there alone (docs/LAYOUT.md). What the library adds
 * is an opaque handle, so the ABI does not depend on struct layouts, and the
 * conveniences an FFI caller wants: lookups that reopen a superseded file and
 * retry an evicted read section by themselves, a prefix scan that copies
 * entries chunk by chunk (one short read section per chunk), and a wait for
 * the next commit on the control file's futex word.
 *
 * Only the functions below are exported (-fvisibility=hidden); `nm -D
 * libshmreg.so` lists exactly these. Build: `make -C examples/c lib`; link
 * with `pkg-config --cflags --libs shmreg` (see examples/c/README.md).
 *
 * RETURN CODES
 *
 * 0 (or a documented positive value) on success; a negative errno value when
 * a system call fails; or one of the SHMREG_E* codes of include/shmreg.h,
 * repeated here so that this header stands alone. shmreg_reader_strerror()
 * names every one.
 *
 * THREADS
 *
 * A handle holds one reader slot and runs one read section at a time. Its
 * calls may come from several threads: the handle serializes them (a
 * recursive mutex), and a read section belongs to the thread that began it
 * until that thread ends it. shmreg_reader_wait() takes no lock and may
 * run beside anything; shmreg_reader_close() cancels waits under way
 * (they return -ECANCELED) but must not race any other call. After fork(),
 * the child must not use or close its parent's handles (they share the
 * parent's slot lock); it opens its own.
 */
#ifndef LIBSHMREG_H
#define LIBSHMREG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMREG_READER_ENOTFOUND (-30800)   /* no such key */
#define SHMREG_READER_EMAGIC (-30801)      /* not a shmreg data (or control) file */
#define SHMREG_READER_EVERSION (-30802)    /* a layout version this library does not know */
#define SHMREG_READER_ETRUNCATED (-30803)  /* a file shorter than its header says */
#define SHMREG_READER_ECORRUPT (-30804)    /* an offset, length or link that cannot be right */
#define SHMREG_READER_ESUPERSEDED (-30805) /* the file was replaced (only inside the caller's own section) */
#define SHMREG_READER_EEVICTED (-30806)    /* the read section outlived the writer's lease: discard what it read */
#define SHMREG_READER_ENOSLOTS (-30807)    /* every reader slot is held by a live reader */
#define SHMREG_READER_ESECTION (-30808)    /* a zero-copy call outside a section, or a nested begin */

/* Only what is marked SHMREG_READER_API is exported from libshmreg.so. */
#if defined(LIBSHMREG_BUILD) && defined(__GNUC__)
#define SHMREG_READER_API __attribute__((visibility("default")))
#else
#define SHMREG_READER_API
#endif

typedef struct shmreg_reader shmreg_reader; /* opaque */

/* The layout version this library reads (SHMREG_LAYOUT_VERSION). */
SHMREG_READER_API int shmreg_reader_layout_version(void);

/* Opens the region at path (path and path.ctl) and claims a reader slot.
 * Returns 0 and sets *out, or a negative code (-ENOENT if there is no
 * region; SHMREG_READER_EVERSION, _EMAGIC, _ENOSLOTS, ...) with *out NULL. */
SHMREG_READER_API int shmreg_reader_open(const char *path, shmreg_reader **out);

/* Gives the slot back, unmaps both files and frees r. Waits under way are
 * woken and return -ECANCELED before it frees anything. NULL is a no-op. */
SHMREG_READER_API int shmreg_reader_close(shmreg_reader *r);

/* The one-shot lookup: copies key's value into buf (cap bytes). Returns 0
 * with *vlen set; SHMREG_READER_ENOTFOUND; -ERANGE if the value needs more
 * than cap bytes (*vlen says how many, nothing is copied); or an error. A
 * superseded file is reopened and an evicted section retried inside the
 * call. Called inside the caller's own section, it reads in that section
 * and retries nothing. */
SHMREG_READER_API int shmreg_reader_get_copy(shmreg_reader *r, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);

/* Read sections, for zero-copy reads. begin reopens a superseded file first,
 * so a section always starts on the current one. Every pointer that get and
 * foreach hand out is valid until end. end returns SHMREG_READER_EEVICTED
 * if the section outlived the writer's read lease: discard what it read. */
SHMREG_READER_API int shmreg_reader_read_begin(shmreg_reader *r);
SHMREG_READER_API int shmreg_reader_read_end(shmreg_reader *r);

/* Inside a section begun by this thread: the value of key, zero-copy.
 * 0, SHMREG_READER_ENOTFOUND, _ESUPERSEDED, _ESECTION or _ECORRUPT. */
SHMREG_READER_API int shmreg_reader_get(shmreg_reader *r, const void *key, size_t klen, const void **val, size_t *vlen);

/* Inside a section begun by this thread: calls fn for every live entry
 * whose key starts with prefix (plen may be 0), in key order, until fn
 * returns non-zero (foreach then returns that value). Returns 0 at the end,
 * or a negative code. */
typedef int (*shmreg_reader_visit_fn)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen);
SHMREG_READER_API int shmreg_reader_foreach(shmreg_reader *r, const void *prefix, size_t plen, shmreg_reader_visit_fn fn, void *ctx);

/* Copies entries whose key starts with prefix and, if after is not NULL,
 * sorts strictly after `after`, in key order, into buf as records
 *
 *     uint32 klen, uint32 vlen (host order), klen key bytes, vlen value bytes
 *
 * back to back, in one read section of its own. *used is the bytes written,
 * *count the records. Returns 0 if the scan reached the end of the prefix;
 * 1 if buf is full (call again with after = the last key copied); -ERANGE if
 * not even the first record fits (*used = the bytes it needs, *count 0); or
 * an error. Superseded files and evicted sections are handled inside, as by
 * get_copy. A scan made of several calls yields keys in strictly increasing
 * order, each at most once, and every key that stayed live throughout. */
SHMREG_READER_API int shmreg_reader_scan_copy(shmreg_reader *r, const void *prefix, size_t plen, const void *after, size_t alen,
                            void *buf, size_t cap, size_t *used, size_t *count);

/* The change counter of the control file (notify_seq): the writer adds 1
 * after every commit. It lives in NAME.ctl, which a rebuild keeps. */
SHMREG_READER_API uint32_t shmreg_reader_notify_seq(const shmreg_reader *r);

/* Waits until notify_seq differs from seen or timeout_ns passes (< 0:
 * forever). Returns 0 with *now = the new value; -ETIMEDOUT (*now = seen);
 * -EINTR if a signal handler ran meanwhile (call again with the time left:
 * it lets an interpreter act on Ctrl-C); -ECANCELED if r is being closed.
 * It sleeps in FUTEX_WAIT on notify_seq,
 * counted in notify_waiters as docs/LAYOUT.md asks, so the writer's
 * FUTEX_WAKE ends it at once; where futex(2) is refused (ENOSYS) it polls
 * every millisecond instead. */
SHMREG_READER_API int shmreg_reader_wait(shmreg_reader *r, uint32_t seen, int64_t timeout_ns, uint32_t *now);

/* The generation (commits ever made) of the current file, reopening a
 * superseded one first. */
SHMREG_READER_API uint64_t shmreg_reader_generation(shmreg_reader *r);

/* Reopens the data file if it was superseded: 1 if it did, 0 if current,
 * -EBUSY inside a section, or an error (r keeps the old file). */
SHMREG_READER_API int shmreg_reader_refresh(shmreg_reader *r);

/* How many times r has reopened a superseded data file. */
SHMREG_READER_API uint64_t shmreg_reader_reopens(const shmreg_reader *r);

/* A static message for any code this library returns. */
SHMREG_READER_API const char *shmreg_reader_strerror(int rc);

#ifdef __cplusplus
}
#endif

#endif /* LIBSHMREG_H */
