"""Kernel constants the model shares with the kernel.

Values follow x86-64 v4.19 (CMP-1): include/linux/mmzone.h, include/linux/migrate_mode.h,
include/uapi/asm-generic/errno-base.h, mm/internal.h.
"""

from enum import IntEnum

# errno (include/uapi/asm-generic/errno-base.h, errno.h)
EPERM = 1
ENOENT = 2
EIO = 5
EAGAIN = 11
ENOMEM = 12
EBUSY = 16
EINVAL = 22
ENOSPC = 28
ENOSYS = 38

#: mm/migrate.h: what ->migratepage returns on success.
MIGRATEPAGE_SUCCESS = 0

ERRNO_NAMES = {
    EPERM: "EPERM", ENOENT: "ENOENT", EIO: "EIO", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM",
    EBUSY: "EBUSY", EINVAL: "EINVAL", ENOSPC: "ENOSPC", ENOSYS: "ENOSYS",
}


def errno_name(rc: int) -> str:
    """`-11` -> `-EAGAIN`, `0` -> `MIGRATEPAGE_SUCCESS`."""
    if rc == 0:
        return "MIGRATEPAGE_SUCCESS"
    if rc < 0 and -rc in ERRNO_NAMES:
        return "-" + ERRNO_NAMES[-rc]
    return str(rc)


class MigrateMode(IntEnum):
    """enum migrate_mode (include/linux/migrate_mode.h, v4.19)."""

    ASYNC = 0         #: never block
    SYNC_LIGHT = 1    #: may block, but not on writeback
    SYNC = 2          #: may block on everything
    SYNC_NO_COPY = 3  #: v4.19: like SYNC, but the caller copies (DMA); drivers return -EINVAL


class MigrateReason(IntEnum):
    """enum migrate_reason (include/linux/migrate.h)."""

    COMPACTION = 0
    MEMORY_FAILURE = 1
    MEMORY_HOTPLUG = 2
    SYSCALL = 3
    MEMPOLICY_MBIND = 4
    NUMA_MISPLACED = 5
    CMA = 6


# isolate_mode_t bits (include/linux/mmzone.h, v4.19)
ISOLATE_UNMAPPED = 0x2
ISOLATE_ASYNC_MIGRATE = 0x4
ISOLATE_UNEVICTABLE = 0x8


class MigrateType(IntEnum):
    """Pageblock migratetypes (include/linux/mmzone.h)."""

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3
    CMA = 4
    ISOLATE = 5


NR_MIGRATETYPES = 6
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")


class CompactResult(IntEnum):
    """enum compact_result (include/linux/compaction.h, v4.19)."""

    NOT_SUITABLE_ZONE = 0
    SKIPPED = 1
    DEFERRED = 2
    INACTIVE = 3       # unused here; kept for numbering
    NO_SUITABLE_PAGE = 4
    CONTINUE = 5
    COMPLETE = 6
    PARTIAL_SKIPPED = 7
    CONTENDED = 8
    SUCCESS = 9


# gfp flags, reduced to what decides migratetype and compaction context (include/linux/gfp.h)
GFP_MOVABLE = 0x08
GFP_RECLAIMABLE = 0x10
GFP_FS = 0x80
GFP_COMP = 0x4000
GFP_KERNEL = 0x400 | 0x800 | 0x40 | GFP_FS   # reclaim | IO | FS
GFP_HIGHUSER_MOVABLE = GFP_KERNEL | GFP_MOVABLE | 0x02  # + __GFP_HIGHMEM


def gfp_migratetype(gfp: int) -> MigrateType:
    """gfpflags_to_migratetype(): the two mobility bits pick the free list."""
    if gfp & GFP_MOVABLE:
        return MigrateType.MOVABLE
    if gfp & GFP_RECLAIMABLE:
        return MigrateType.RECLAIMABLE
    return MigrateType.UNMOVABLE


#: CMP-1 constants (x86-64).
PAGEBLOCK_ORDER = 9
MAX_ORDER = 11
COMPACT_CLUSTER_MAX = 32
SWAP_CLUSTER_MAX = 32
PAGE_ALLOC_COSTLY_ORDER = 3
EXTFRAG_THRESHOLD = 500
COMPACT_MAX_DEFER_SHIFT = 6
#: mm/migrate.c: migrate_pages() gives up after this many passes (MIG-1).
MIGRATE_PASSES = 10
#: include/linux/poison.h: LIST_POISON2, what a deleted list entry's prev holds (BUG-1).
LIST_POISON2 = 0x122
