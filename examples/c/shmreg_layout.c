/*
 * shmreg_layout - print the layout shmreg.h declares, for shm/layout_test.go
 * to compare with the Go structs.
 *
 * One "NAME VALUE" line each, in decimal:
 *   STRUCT.size          sizeof(struct shmreg_STRUCT)
 *   STRUCT.FIELD         offsetof(struct shmreg_STRUCT, FIELD)
 *   const.NAME           a layout constant
 * STRUCT is header, node, index, ctl or slot; FIELD is the name docs/LAYOUT.md
 * uses. Reserved fields are not listed.
 */
#include <stdio.h>

#include "shmreg.h"

#define SIZE(s) printf(#s ".size %zu\n", sizeof(struct shmreg_##s))
#define OFF(s, f) printf(#s "." #f " %zu\n", offsetof(struct shmreg_##s, f))
#define CONST(name, v) printf("const." name " %llu\n", (unsigned long long)(v))

int main(void)
{
    SIZE(header);
    OFF(header, magic);
    OFF(header, version);
    OFF(header, header_size);
    OFF(header, file_size);
    OFF(header, pool_start);
    OFF(header, created_ns);
    OFF(header, max_height);
    OFF(header, head);
    OFF(header, state);
    OFF(header, generation);
    OFF(header, index);
    OFF(header, alloc);
    OFF(header, entries);
    OFF(header, live_bytes);
    OFF(header, garbage_bytes);
    OFF(header, writer_pid);
    OFF(header, compactions);
    OFF(header, place_revision);
    OFF(header, value_alloc);
    OFF(header, retired_bytes);
    OFF(header, reusable_bytes);
    OFF(header, oldest_epoch);
    OFF(header, free_by_class);
    OFF(header, place_center);

    SIZE(node);
    OFF(node, value);
    OFF(node, key);
    OFF(node, height);
    OFF(node, inline_size);
    OFF(node, next);

    SIZE(index);
    OFF(index, capacity);
    OFF(index, used);
    OFF(index, tombstones);
    OFF(index, slots);

    SIZE(ctl);
    OFF(ctl, magic);
    OFF(ctl, version);
    OFF(ctl, slot_count);
    OFF(ctl, file_size);
    OFF(ctl, created_ns);
    OFF(ctl, notify_seq);
    OFF(ctl, notify_waiters);
    OFF(ctl, slots_forced);
    OFF(ctl, slots_reaped);

    SIZE(slot);
    OFF(slot, owner);
    OFF(slot, epoch);
    OFF(slot, pid);

    CONST("layout_version", SHMREG_LAYOUT_VERSION);
    CONST("ctl_version", SHMREG_CTL_VERSION);
    CONST("header_size", SHMREG_HEADER_SIZE);
    CONST("max_height", SHMREG_MAX_HEIGHT);
    CONST("pair_offset_bits", SHMREG_PAIR_OFFSET_BITS);
    CONST("state_superseded", SHMREG_STATE_SUPERSEDED);
    CONST("state_committing", SHMREG_STATE_COMMITTING);
    CONST("index_empty", SHMREG_INDEX_EMPTY);
    CONST("index_tombstone", SHMREG_INDEX_TOMBSTONE);
    CONST("ctl_lock_offset", SHMREG_CTL_LOCK_OFFSET);
    CONST("ctl_slots_offset", SHMREG_CTL_SLOTS_OFFSET);
    CONST("epoch_forced", SHMREG_EPOCH_FORCED);
    return fflush(stdout) != 0;
}
