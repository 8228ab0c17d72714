/*
 * ofdprobe: what the Go writer and the C reader see of a Java reader's slot
 * lock, through the same open-file-description lock calls they make.
 *
 *   ofdprobe lock CTLPATH SLOT   F_OFD_GETLK on the slot's byte: prints
 *                                "free", or "locked pid=N" (N is the pid of
 *                                a POSIX lock's holder, -1 for an OFD lock)
 *   ofdprobe reap CTLPATH SLOT   what the writer does to a dead reader's
 *                                slot: if no one holds its lock, swap its
 *                                owner word to 0; prints "reaped" or "alive"
 *   ofdprobe claim PATH          opens the region with include/shmreg.h
 *                                (which skips slots held by live readers)
 *                                and prints the slot index it claimed
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include "../../../include/shmreg.h"

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "lock") == 0) {
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        struct flock lk;
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        memset(&lk, 0, sizeof lk);
        lk.l_type = F_WRLCK;
        lk.l_whence = SEEK_SET;
        lk.l_start = SHMREG_CTL_SLOTS_OFFSET + 64 * atol(argv[3]);
        lk.l_len = 1;
        if (fcntl(fd, F_OFD_GETLK, &lk) != 0) {
            perror("F_OFD_GETLK");
            return 1;
        }
        if (lk.l_type == F_UNLCK)
            printf("free\n");
        else
            printf("locked pid=%d\n", (int)lk.l_pid);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "reap") == 0) {
        int fd = open(argv[2], O_RDWR | O_CLOEXEC);
        long slot = atol(argv[3]);
        off_t at = SHMREG_CTL_SLOTS_OFFSET + 64 * slot;
        struct flock lk;
        unsigned char *m;
        _Atomic uint64_t *owner;
        uint64_t o;
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        memset(&lk, 0, sizeof lk);
        lk.l_type = F_WRLCK;
        lk.l_whence = SEEK_SET;
        lk.l_start = at;
        lk.l_len = 1;
        if (fcntl(fd, F_OFD_GETLK, &lk) != 0) {
            perror("F_OFD_GETLK");
            return 1;
        }
        if (lk.l_type != F_UNLCK) {
            printf("alive\n");
            return 0;
        }
        m = mmap(NULL, (size_t)at + 64, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        owner = (_Atomic uint64_t *)(void *)(m + at);
        o = atomic_load(owner);
        printf(o != 0 && atomic_compare_exchange_strong(owner, &o, 0) ? "reaped\n" : "free\n");
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "claim") == 0) {
        struct shmreg_region r;
        int rc = shmreg_open(argv[2], &r);
        if (rc != 0) {
            fprintf(stderr, "%s: %s\n", argv[2], shmreg_strerror(rc));
            return 1;
        }
        printf("%u\n", r.slot_index);
        shmreg_close(&r);
        return 0;
    }
    fprintf(stderr, "usage: ofdprobe lock|reap CTLPATH SLOT | ofdprobe claim PATH\n");
    return 2;
}
