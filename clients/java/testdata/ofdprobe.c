/*
 * ofdprobe: what the Go writer and the C reader see of a Java reader's slot
 * lock, through the same open-file-description lock calls they make.
 *
 *   ofdprobe lock CTLPATH SLOT   F_OFD_GETLK on the slot's byte: prints
 *                                "free", or "locked pid=N" (N is the pid of
 *                                a POSIX lock's holder, -1 for an OFD lock)
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
    fprintf(stderr, "usage: ofdprobe lock CTLPATH SLOT | ofdprobe claim PATH\n");
    return 2;
}
