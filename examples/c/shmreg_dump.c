/*
 * shmreg_dump - print a region's entries using nothing but shmreg.h.
 *
 *   shmreg_dump REGION_PATH            every live entry in key order, one per
 *                                      line: KEY \t HEX(VALUE) \n; each is also
 *                                      looked up by shmreg_get and by
 *                                      shmreg_get_skiplist, which must agree
 *   shmreg_dump REGION_PATH --hex      the same with the key in hex too:
 *                                      HEX(KEY) \t HEX(VALUE) \n, byte for byte
 *                                      what `shmreg ls --format hex` prints
 *   shmreg_dump REGION_PATH --get KEY  HEX(VALUE) \n of one key
 *   shmreg_dump --hash STRING...       HASH \t STRING \n per argument, the hash
 *                                      as 16 lowercase hex digits
 *
 * Keys are printed as their raw bytes; values as lowercase hex. Exit status:
 * 0 success; 1 key not found, or the three lookups disagree; 2 usage error
 * or a region that cannot be opened or read (message on stderr).
 *
 * The cross-check assumes nobody writes the region meanwhile: an update that
 * lands between the walk and the lookups is reported as a disagreement.
 *
 * The dump runs in one read section, so that nothing it walks is reused
 * under it; if it outlives the writer's read lease, it is evicted and the
 * dump exits 2. --get uses the one-shot shmreg_get_copy().
 */
#include <stdio.h>
#include <stdlib.h>

#include "shmreg.h"

static void print_hex(const void *p, size_t len)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < len; i++)
        printf("%02x", b[i]);
    putchar('\n');
}

static int same(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Looks the iterator's key up both other ways; 0 if both agree with it. */
static int cross_check(const struct shmreg_region *r, const struct shmreg_iter *it)
{
    static const char *const how[] = {"shmreg_get", "shmreg_get_skiplist"};
    int bad = 0;

    for (int i = 0; i < 2; i++) {
        const void *v = NULL;
        size_t vlen = 0;
        int rc = i == 0 ? shmreg_get(r, it->key, it->klen, &v, &vlen)
                        : shmreg_get_skiplist(r, it->key, it->klen, &v, &vlen);

        if (rc != 0 || !same(v, vlen, it->val, it->vlen)) {
            fprintf(stderr, "shmreg_dump: key %.*s: %s %s\n", (int)it->klen, (const char *)it->key, how[i],
                    rc != 0 ? shmreg_strerror(rc) : "returned a different value than the iterator");
            bad = 1;
        }
    }
    return bad;
}

static int dump(struct shmreg_region *r, int hex_keys)
{
    struct shmreg_iter it;
    int rc, erc, mismatches = 0;

    if ((rc = shmreg_read_begin(r)) != 0) {
        fprintf(stderr, "shmreg_dump: %s\n", shmreg_strerror(rc));
        return 2;
    }
    for (rc = shmreg_iter_first(r, &it); rc == 0; rc = shmreg_iter_next(&it)) {
        if (hex_keys) {
            for (size_t i = 0; i < it.klen; i++)
                printf("%02x", ((const unsigned char *)it.key)[i]);
        } else {
            fwrite(it.key, 1, it.klen, stdout);
        }
        putchar('\t');
        print_hex(it.val, it.vlen);
        mismatches += cross_check(r, &it);
    }
    erc = shmreg_read_end(r);
    if (rc == SHMREG_ENOTFOUND)
        rc = erc;
    if (rc != 0) {
        fprintf(stderr, "shmreg_dump: %s\n", shmreg_strerror(rc));
        return 2;
    }
    return mismatches != 0;
}

/* Copies the value out with shmreg_get_copy(), growing the buffer when the
 * value does not fit (-ERANGE says how much it needs). */
static int get(struct shmreg_region *r, const char *key)
{
    size_t cap = 64, vlen = 0;
    char *buf = malloc(cap);
    int rc;

    for (;;) {
        if (buf == NULL) {
            rc = -ENOMEM;
            break;
        }
        rc = shmreg_get_copy(r, key, strlen(key), buf, cap, &vlen);
        if (rc != -ERANGE)
            break;
        free(buf);
        cap = vlen; /* the value may grow again before the next try */
        buf = malloc(cap);
    }
    if (rc == 0)
        print_hex(buf, vlen);
    free(buf);
    if (rc == 0)
        return 0;
    fprintf(stderr, "shmreg_dump: %s: %s\n", key, rc == SHMREG_ENOTFOUND ? "not found" : shmreg_strerror(rc));
    return rc == SHMREG_ENOTFOUND ? 1 : 2;
}

int main(int argc, char **argv)
{
    struct shmreg_region r;
    int rc;

    if (argc >= 2 && strcmp(argv[1], "--hash") == 0) {
        for (int i = 2; i < argc; i++)
            printf("%016llx\t%s\n", (unsigned long long)shmreg_hash(argv[i], strlen(argv[i])), argv[i]);
        return 0;
    }
    if (!(argc == 2 || (argc == 3 && strcmp(argv[2], "--hex") == 0) || (argc == 4 && strcmp(argv[2], "--get") == 0))) {
        fprintf(stderr, "usage: shmreg_dump REGION_PATH [--hex | --get KEY]\n"
                        "       shmreg_dump --hash STRING...\n");
        return 2;
    }
    rc = shmreg_open(argv[1], &r);
    if (rc != 0) {
        fprintf(stderr, "shmreg_dump: %s: %s\n", argv[1], shmreg_strerror(rc));
        return 2;
    }
    rc = argc == 4 ? get(&r, argv[3]) : dump(&r, argc == 3);
    shmreg_close(&r);
    if (fflush(stdout) != 0 && rc == 0) {
        perror("shmreg_dump: stdout");
        rc = 2;
    }
    return rc;
}
