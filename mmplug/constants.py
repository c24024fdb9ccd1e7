"""Kernel constants the model shares with the kernel.

Values follow x86-64 v4.19 (CMP-1): include/linux/mmzone.h, include/linux/migrate_mode.h,
include/linux/compaction.h, include/linux/gfp.h, include/uapi/asm-generic/errno-base.h,
mm/internal.h.
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
    """enum migrate_reason (include/linux/migrate.h:20-29, v4.19)."""

    COMPACTION = 0
    MEMORY_FAILURE = 1
    MEMORY_HOTPLUG = 2
    SYSCALL = 3
    MEMPOLICY_MBIND = 4
    NUMA_MISPLACED = 5
    CONTIG_RANGE = 6


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
    """enum compact_result (include/linux/compaction.h:21-58, v4.19).

    COMPACT_INACTIVE is COMPACT_DEFERRED's other name, not a value of its own:
    the numbering, and so every `max()` and `<=` over results, is the kernel's.
    """

    NOT_SUITABLE_ZONE = 0
    SKIPPED = 1
    DEFERRED = 2
    INACTIVE = 2       # alias of DEFERRED
    NO_SUITABLE_PAGE = 3
    CONTINUE = 4
    COMPLETE = 5
    PARTIAL_SKIPPED = 6
    CONTENDED = 7
    SUCCESS = 8


class CompactPriority(IntEnum):
    """enum compact_priority (include/linux/compaction.h:9-17): lower is harder."""

    SYNC_FULL = 0      #: MIN_COMPACT_PRIORITY: whole zone, skip bits and block suitability ignored
    SYNC_LIGHT = 1     #: MIN_COMPACT_COSTLY_PRIORITY, DEF_COMPACT_PRIORITY
    ASYNC = 2          #: INIT_COMPACT_PRIORITY


MIN_COMPACT_PRIORITY = CompactPriority.SYNC_FULL
MIN_COMPACT_COSTLY_PRIORITY = CompactPriority.SYNC_LIGHT
DEF_COMPACT_PRIORITY = CompactPriority.SYNC_LIGHT
INIT_COMPACT_PRIORITY = CompactPriority.ASYNC


def compaction_made_progress(result: int) -> bool:
    """compaction_made_progress() (include/linux/compaction.h)."""
    return result == CompactResult.SUCCESS


def compaction_failed(result: int) -> bool:
    """compaction_failed(): the whole zone was scanned in vain."""
    return result == CompactResult.COMPLETE


def compaction_withdrawn(result: int) -> bool:
    """compaction_withdrawn(): it backed off (watermarks, deferral, contention, a partial scan)."""
    return result in (CompactResult.SKIPPED, CompactResult.DEFERRED, CompactResult.CONTENDED,
                      CompactResult.PARTIAL_SKIPPED)


# gfp flags: the v4.19 bit values (include/linux/gfp.h:19-41, 291-305)
GFP_HIGHMEM = 0x02
GFP_MOVABLE = 0x08
GFP_RECLAIMABLE = 0x10
GFP_HIGH = 0x20
GFP_IO = 0x40
GFP_FS = 0x80
GFP_NOWARN = 0x200
GFP_RETRY_MAYFAIL = 0x400
GFP_NOFAIL = 0x800
GFP_NORETRY = 0x1000
GFP_MEMALLOC = 0x2000
GFP_COMP = 0x4000
GFP_NOMEMALLOC = 0x10000
GFP_HARDWALL = 0x20000
GFP_ATOMIC_BIT = 0x80000          #: __GFP_ATOMIC
GFP_DIRECT_RECLAIM = 0x200000
GFP_KSWAPD_RECLAIM = 0x400000
GFP_RECLAIM = GFP_DIRECT_RECLAIM | GFP_KSWAPD_RECLAIM
GFP_ATOMIC = GFP_HIGH | GFP_ATOMIC_BIT | GFP_KSWAPD_RECLAIM
GFP_KERNEL = GFP_RECLAIM | GFP_IO | GFP_FS
GFP_NOIO = GFP_RECLAIM
GFP_NOFS = GFP_RECLAIM | GFP_IO
GFP_USER = GFP_RECLAIM | GFP_IO | GFP_FS | GFP_HARDWALL
GFP_HIGHUSER_MOVABLE = GFP_USER | GFP_HIGHMEM | GFP_MOVABLE


#: include/linux/gfp.h:308-309: the mobility bits, and how far they are shifted to a migratetype
GFP_MOVABLE_MASK = GFP_RECLAIMABLE | GFP_MOVABLE
GFP_MOVABLE_SHIFT = 3
_GFP_MIGRATETYPES = (MigrateType.UNMOVABLE, MigrateType.MOVABLE, MigrateType.RECLAIMABLE,
                     MigrateType.HIGHATOMIC)


def gfp_migratetype(gfp: int) -> MigrateType:
    """gfpflags_to_migratetype() (include/linux/gfp.h:311-322): the two mobility bits,
    shifted down, are the migratetype.  Both set is 3, MIGRATE_HIGHATOMIC: a caller's
    mistake the kernel only VM_WARN_ONs (the allocator records the warning)."""
    return _GFP_MIGRATETYPES[(gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT]


#: CMP-1 constants (x86-64).
PAGEBLOCK_ORDER = 9
MAX_ORDER = 11
COMPACT_CLUSTER_MAX = 32
SWAP_CLUSTER_MAX = 32
PAGE_ALLOC_COSTLY_ORDER = 3
EXTFRAG_THRESHOLD = 500
COMPACT_MAX_DEFER_SHIFT = 6
#: mm/page_alloc.c:3998: compaction retries with progress before the allocator gives up.
MAX_COMPACT_RETRIES = 16
#: mm/internal.h:100: reclaim rounds without progress before the allocator gives up.
MAX_RECLAIM_RETRIES = 16
#: mm/migrate.c: migrate_pages() gives up after this many passes (MIG-1).
MIGRATE_PASSES = 10
#: include/linux/poison.h: LIST_POISON2, what a deleted list entry's prev holds (BUG-1).
LIST_POISON2 = 0x122
