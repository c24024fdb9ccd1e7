"""Compaction of one zone: mm/compaction.c, v4.19 (CMP-1..CMP-7).

The migrate scanner walks pageblocks up from the zone start isolating
movable pages; the free scanner walks down from the last pageblock isolating
free pages as migration targets; compaction ends when they meet or, for a
request of a given order, when a free block of that order exists.

Three callers are modelled: a whole-zone run (`compact_memory`, what writing
/proc/sys/vm/compact_memory does: SYNC, skip bits ignored), direct
compaction from the allocator's slow path (`alloc_pages_compact`: the
priorities ASYNC, SYNC_LIGHT and SYNC_FULL with should_compact_retry) and
kcompactd (`kcompactd_do_work`: SYNC_LIGHT).

A compaction backs off (cc->contended, COMPACT_CONTENDED) where the kernel's
does: on a pending fatal signal, on need_resched() in ASYNC mode, and when
too many LRU pages are isolated (ASYNC aborts, the others wait).  Not
modelled: zone->lock and lru_lock contention (the model's critical sections
under those locks contain no schedule point, so no other simulated CPU can
find them held) and the per-CPU page lists that compaction drains.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from attrs import define, field

from .constants import (
    COMPACT_CLUSTER_MAX,
    COMPACT_MAX_DEFER_SHIFT,
    DEF_COMPACT_PRIORITY,
    ENOMEM,
    EXTFRAG_THRESHOLD,
    GFP_COMP,
    GFP_DIRECT_RECLAIM,
    GFP_HIGHUSER_MOVABLE,
    GFP_IO,
    GFP_KERNEL,
    GFP_KSWAPD_RECLAIM,
    GFP_MEMALLOC,
    GFP_NOMEMALLOC,
    GFP_NORETRY,
    GFP_RETRY_MAYFAIL,
    INIT_COMPACT_PRIORITY,
    ISOLATE_ASYNC_MIGRATE,
    ISOLATE_UNEVICTABLE,
    MAX_COMPACT_RETRIES,
    MAX_RECLAIM_RETRIES,
    MIN_COMPACT_COSTLY_PRIORITY,
    MIN_COMPACT_PRIORITY,
    PAGE_ALLOC_COSTLY_ORDER,
    SWAP_CLUSTER_MAX,
    CompactPriority,
    CompactResult,
    MigrateMode,
    MigrateReason,
    MigrateType,
    compaction_failed,
    compaction_made_progress,
    compaction_withdrawn,
    gfp_migratetype,
)
from .cpus.backend import PF_MEMALLOC, Task
from .errors import Deadlock
from .migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from .page import (
    BUDDY,
    COMPOUND,
    ISOLATED,
    LRU,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_MOVABLE,
    UNEVICTABLE,
    WRITEBACK,
    Page,
)
from .vmstat import fragmentation_index

if TYPE_CHECKING:
    from .vm import VM
    from .zone import Zone


class IsolateMigrate(IntEnum):
    """isolate_migrate_t (mm/compaction.c:1210-1214): what isolate_migratepages found."""

    ISOLATE_ABORT = 0     #: abort compaction now (COMPACT_CONTENDED)
    ISOLATE_NONE = 1      #: nothing isolated, continue scanning
    ISOLATE_SUCCESS = 2   #: pages isolated, migrate them


ISOLATE_ABORT = IsolateMigrate.ISOLATE_ABORT
ISOLATE_NONE = IsolateMigrate.ISOLATE_NONE
ISOLATE_SUCCESS = IsolateMigrate.ISOLATE_SUCCESS


@define(slots=True, eq=False)
class CompactControl:
    """struct compact_control (mm/internal.h:196-220)."""

    zone: Zone
    order: int = -1
    mode: MigrateMode = MigrateMode.SYNC
    gfp_mask: int = GFP_KERNEL
    migratetype: int = MigrateType.MOVABLE
    whole_zone: bool = False
    ignore_skip_hint: bool = False
    no_set_skip_hint: bool = False
    ignore_block_suitable: bool = False
    direct_compaction: bool = False
    finishing_block: bool = False
    #: the migrate scanner is back in the pageblock it last migrated from (VMConfig.rescan_block)
    rescan: bool = False
    contended: bool = False
    migrate_pfn: int = 0
    free_pfn: int = 0
    last_migrated_pfn: int = 0
    migratepages: PageList = field(factory=lambda: PageList("cc->migratepages"))
    freepages: list[Page] = field(factory=list)
    nr_migratepages: int = 0
    nr_freepages: int = 0
    total_migrate_scanned: int = 0
    total_free_scanned: int = 0


def pageblock_start_pfn(zone: Zone, pfn: int) -> int:
    return pfn & ~(zone.pageblock_nr_pages - 1)


def pageblock_end_pfn(zone: Zone, pfn: int) -> int:
    return pageblock_start_pfn(zone, pfn) + zone.pageblock_nr_pages


def block_end_pfn(pfn: int, order: int) -> int:
    return (pfn & ~((1 << order) - 1)) + (1 << order)


# --- backing off (cc->contended) -------------------------------------------------------------

def fatal_signal_pending(vm: VM) -> bool:
    """fatal_signal_pending(current): a SIGKILL is pending for the running task."""
    return vm.cpus.current().sigkill_pending


def cond_resched(vm: VM, task: Task) -> None:
    """cond_resched(): the task gives the CPU away, and need_resched() is answered."""
    task.need_resched = False
    vm.cpus.point("cond_resched")


def congestion_wait(vm: VM, task: Task, zone: Zone) -> None:
    """congestion_wait(BLK_RW_ASYNC, HZ/10): the task sleeps; its schedule() answers
    need_resched()."""
    task.need_resched = False
    vm.cpus.point("congestion_wait", zone)


def compact_should_abort(vm: VM, cc: CompactControl, task: Task) -> bool:
    """compact_should_abort() (mm/compaction.c:413-426): ASYNC gives up on need_resched(),
    the other modes reschedule and go on."""
    if task.need_resched:
        if cc.mode == MigrateMode.ASYNC:
            cc.contended = True
            return True
        cond_resched(vm, task)
    return False


def compact_unlock_should_abort(vm: VM, cc: CompactControl, task: Task) -> bool:
    """compact_unlock_should_abort() (mm/compaction.c:380-402) without the lock: a fatal
    signal stops every mode, need_resched() stops ASYNC."""
    if task.sigkill_pending:
        cc.contended = True
        return True
    return compact_should_abort(vm, cc, task)


def too_many_isolated(zone: Zone) -> bool:
    """too_many_isolated() (mm/compaction.c:659-671): more LRU pages isolated than half of
    those still on the LRU lists (non-LRU movable pages never count, BUG-3)."""
    return zone.nr_isolated_lru > zone.nr_lru // 2


#: congestion_wait()s with nothing changing before a multi-CPU model calls it a deadlock.
CONGESTION_WAITS_MAX = 1000


def _wait_while_too_many_isolated(vm: VM, cc: CompactControl, task: Task) -> bool:
    """The throttle at the top of isolate_migratepages_block (mm/compaction.c:713-722).

    Returns False when the block must not be scanned: ASYNC gives up at once,
    the other modes sleep in congestion_wait() until the isolated pages are
    back or a fatal signal arrives.  One CPU cannot wait for anybody: that is
    reported as the deadlock the kernel would sit in.
    """
    zone = cc.zone
    waits = 0
    while too_many_isolated(zone):
        if cc.mode == MigrateMode.ASYNC:
            return False
        state = (zone.nr_isolated_lru, zone.nr_lru)
        if getattr(vm.cpus, "nr_cpus", 1) == 1 or waits >= CONGESTION_WAITS_MAX:
            raise Deadlock(f"compaction waits in congestion_wait() for {zone.nr_isolated_lru} "
                           f"isolated LRU pages to go back ({zone.nr_lru} on the LRU) and no "
                           "other CPU can put them back (too_many_isolated)")
        congestion_wait(vm, task, zone)
        if task.sigkill_pending:
            return False
        waits = 0 if (zone.nr_isolated_lru, zone.nr_lru) != state else waits + 1
    return True


# --- deferral (CMP-7) --------------------------------------------------------------------

def defer_compaction(zone: Zone, order: int) -> None:
    """defer_compaction() (mm/compaction.c:141-153): back off exponentially after a failure."""
    zone.compact_considered = 0
    zone.compact_defer_shift += 1
    if order < zone.compact_order_failed:
        zone.compact_order_failed = order
    if zone.compact_defer_shift > COMPACT_MAX_DEFER_SHIFT:
        zone.compact_defer_shift = COMPACT_MAX_DEFER_SHIFT


def compaction_deferred(zone: Zone, order: int) -> bool:
    """compaction_deferred() (mm/compaction.c:156-173): skip this attempt while under the
    1 << shift limit."""
    defer_limit = 1 << zone.compact_defer_shift
    if order < zone.compact_order_failed:
        return False
    zone.compact_considered += 1
    if zone.compact_considered > defer_limit:
        zone.compact_considered = defer_limit
    if zone.compact_considered >= defer_limit:
        return False
    return True


def compaction_defer_reset(zone: Zone, order: int, alloc_success: bool) -> None:
    """compaction_defer_reset() (mm/compaction.c:180-191): a success forgets the back-off."""
    if alloc_success:
        zone.compact_considered = 0
        zone.compact_defer_shift = 0
    if order >= zone.compact_order_failed:
        zone.compact_order_failed = order + 1


def compaction_restarting(zone: Zone, order: int) -> bool:
    """compaction_restarting() (mm/compaction.c:194-201): deferred to the limit; time to
    forget skip bits."""
    if order < zone.compact_order_failed:
        return False
    return (zone.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
            and zone.compact_considered >= 1 << zone.compact_defer_shift)


# --- skip bits (CMP-5) --------------------------------------------------------------------

def pageblock_skip_persistent(zone: Zone, pfn: int) -> bool:
    """pageblock_skip_persistent() (mm/compaction.c:226-237): a compound page of pageblock
    order or more covers the block; its skip bit stays until the page is freed."""
    page = zone.pages[pfn - zone.start_pfn]
    if not page.flags & COMPOUND:
        return False
    return zone.compound_order(zone.compound_head(page)) >= zone.pageblock_order


def reset_isolation_suitable(zone: Zone, vm: VM | None = None) -> None:
    """__reset_isolation_suitable() (mm/compaction.c:244-270): clear the skip bits of every
    pageblock but the persistent ones, and the cached scanner positions.

    The walk steps a pageblock at a time from zone_start_pfn (253): in a zone
    that begins further into its first pageblock than it reaches into its last,
    the last one keeps its bit.  Called by a compacting task (`vm` given), it
    passes a cond_resched() at every step (256): a pending need_resched() is
    answered before compaction starts.
    """
    zone.compact_blockskip_flush = False
    skip = zone.pageblock_skip
    task = vm.cpus.current() if vm is not None else None
    for pfn in range(zone.zone_start_pfn, zone.zone_end_pfn, zone.pageblock_nr_pages):
        if vm is not None and task is not None and task.need_resched:
            cond_resched(vm, task)
        i = (pfn - zone.start_pfn) >> zone.pageblock_order
        if skip[i] and not pageblock_skip_persistent(zone, pfn):
            skip[i] = 0
    reset_cached_positions(zone)


def reset_cached_positions(zone: Zone) -> None:
    """reset_cached_positions() (mm/compaction.c:213-219)."""
    zone.compact_cached_migrate_pfn[0] = zone.zone_start_pfn
    zone.compact_cached_migrate_pfn[1] = zone.zone_start_pfn
    zone.compact_cached_free_pfn = pageblock_start_pfn(zone, zone.zone_end_pfn - 1)


def isolation_suitable(cc: CompactControl, pfn: int) -> bool:
    """isolation_suitable() (mm/compaction.c:204-211): the block's skip bit, unless ignored."""
    if cc.ignore_skip_hint:
        return True
    zone = cc.zone
    return not zone.pageblock_skip[(pfn - zone.start_pfn) >> zone.pageblock_order]


def update_pageblock_skip(cc: CompactControl, page: Page | None, nr_isolated: int,
                          migrate_scanner: bool) -> None:
    """update_pageblock_skip() (mm/compaction.c:291-322): nothing isolated from a whole
    block: skip it next time, and move the cached scanner position past it."""
    if cc.no_set_skip_hint or page is None or nr_isolated:
        return
    zone = cc.zone
    pfn = page.pfn
    zone.pageblock_skip[(pfn - zone.start_pfn) >> zone.pageblock_order] = 1
    if migrate_scanner:
        if pfn > zone.compact_cached_migrate_pfn[0]:
            zone.compact_cached_migrate_pfn[0] = pfn
        if cc.mode != MigrateMode.ASYNC and pfn > zone.compact_cached_migrate_pfn[1]:
            zone.compact_cached_migrate_pfn[1] = pfn
    elif pfn < zone.compact_cached_free_pfn:
        zone.compact_cached_free_pfn = pfn


# --- the migrate scanner (CMP-2, CMP-3) ------------------------------------------------------

def _isolate_lru_page(vm: VM, page: Page, isolate_mode: int) -> bool:
    """__isolate_lru_page() (mm/vmscan.c:1621-1666) + del_page_from_lru_list(): take an LRU
    page off the LRU with a reference."""
    flags = page.flags
    if not flags & LRU:
        return False
    if flags & UNEVICTABLE and not isolate_mode & ISOLATE_UNEVICTABLE:
        return False
    if isolate_mode & ISOLATE_ASYNC_MIGRATE and flags & WRITEBACK:
        return False
    if not vm.cpus.get_page_unless_zero(page):
        return False
    page.zone.lru_del(page)
    return True


def isolate_migratepages_block(vm: VM, cc: CompactControl, low_pfn: int, end_pfn: int,
                               isolate_mode: int) -> int:
    """isolate_migratepages_block() (mm/compaction.c:695-962): isolate from [low_pfn, end_pfn)
    of one pageblock.

    Returns the first pfn not scanned, or 0 when compaction must abort (too
    many LRU pages isolated in ASYNC mode, a fatal signal, need_resched() in
    ASYNC mode).  Free blocks and compound pages are stepped over by their
    order; non-LRU pages go to isolate_movable_page if they look movable and
    are not isolated yet (ISO-5); each isolated page goes to the head of
    cc->migratepages (list_add), so the list runs from the highest pfn down;
    at 32 isolated pages the block is left for the next round.
    """
    zone = cc.zone
    task = vm.cpus.current()
    if not _wait_while_too_many_isolated(vm, cc, task):
        return 0
    if task.need_resched and compact_should_abort(vm, cc, task):
        return 0
    pages = zone.pages
    start = zone.start_pfn
    nr_scanned = nr_isolated = 0
    first_pfn = low_pfn
    skip_on_failure = False
    next_skip_pfn = 0
    migratepages = cc.migratepages
    if cc.direct_compaction and cc.mode == MigrateMode.ASYNC:
        skip_on_failure = True
        next_skip_pfn = block_end_pfn(low_pfn, cc.order)
    max_order = zone.max_order
    cluster = SWAP_CLUSTER_MAX - 1
    # 6.1 (rescan_block): a block come back to is taken whole, not 32 pages a round
    round_max = 0 if cc.rescan else COMPACT_CLUSTER_MAX
    # Only an isolation attempt can run other code (a schedule point, a driver callback)
    # that raises need_resched or a signal: the flags are read again after each.
    watch = task.sigkill_pending or task.need_resched
    while low_pfn < end_pfn:
        if skip_on_failure and low_pfn >= next_skip_pfn:
            # The previous order-aligned block was all isolated: migrate it now.
            if nr_isolated:
                break
            next_skip_pfn = block_end_pfn(low_pfn, cc.order)
        # Every SWAP_CLUSTER_MAX pfns: drop the lru_lock, back off if asked to.
        if watch and not low_pfn & cluster and compact_unlock_should_abort(vm, cc, task):
            break
        nr_scanned += 1
        page = pages[low_pfn - start]
        flags = page.flags
        # (`flags and`: a page in use mostly has none, and testing an int costs less than &)
        if flags and flags & BUDDY:
            order = page.private
            if 0 < order < max_order:
                low_pfn += (1 << order) - 1
            low_pfn += 1
            continue
        isolated = False
        if flags and flags & COMPOUND:
            order = zone.compound_order(page)
            if order < max_order:
                low_pfn += (1 << order) - 1 if order else 0
        elif not flags or not flags & LRU:
            # __PageMovable may be a false positive: verified under the page lock.
            if (page.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE
                    and (not flags or not flags & ISOLATED)):
                isolated = isolate_movable_page(vm, page, isolate_mode) == 0
                watch = task.sigkill_pending or task.need_resched
        elif page._refcount <= 1:
            # (a page with more references than mappings is pinned: not worth it)
            if _isolate_lru_page(vm, page, isolate_mode):
                zone.nr_isolated_lru += 1
                isolated = True
            watch = task.sigkill_pending or task.need_resched
        if isolated:
            migratepages.pages.insert(0, page)     # migratepages.add_head(page), in place
            page.lru = migratepages
            cc.nr_migratepages += 1
            nr_isolated += 1
            if not cc.last_migrated_pfn:
                cc.last_migrated_pfn = low_pfn
            if cc.nr_migratepages == round_max:
                low_pfn += 1
                break
            low_pfn += 1
            continue
        # isolate_fail:
        if skip_on_failure:
            # We cannot form the cc->order block anyway: give back what we have.
            if nr_isolated:
                putback_movable_pages(vm, migratepages)
                cc.nr_migratepages = 0
                cc.last_migrated_pfn = 0
                nr_isolated = 0
            if low_pfn < next_skip_pfn:
                low_pfn = next_skip_pfn - 1
                next_skip_pfn += 1 << cc.order
        low_pfn += 1
    # valid_page: the first page scanned, which the first pass of the loop scans unless it
    # backs off first (found after the loop rather than tested for at every pfn)
    valid_page = pages[first_pfn - start] if nr_scanned else None
    low_pfn = _end_of_block_scan(vm, cc, low_pfn, end_pfn, valid_page, nr_isolated, True)
    cc.total_migrate_scanned += nr_scanned
    return low_pfn


def _end_of_block_scan(vm: VM, cc: CompactControl, pfn: int, end_pfn: int,
                       valid_page: Page | None, nr_isolated: int, migrate_scanner: bool) -> int:
    """What both scanners do after a block: clamp the pfn a free block's order may have
    carried past the end, set the skip bit of a block scanned in vain, count isolations."""
    if pfn > end_pfn:
        pfn = end_pfn
    if pfn == end_pfn:
        update_pageblock_skip(cc, valid_page, nr_isolated, migrate_scanner)
    if nr_isolated:
        vm.vmstat.events["compact_isolated"] += nr_isolated
    return pfn


def suitable_migration_source(cc: CompactControl, pfn: int) -> bool:
    """suitable_migration_source() (mm/compaction.c:1013-1027): async direct compaction
    only takes from blocks of the wanted migratetype."""
    if cc.mode != MigrateMode.ASYNC or not cc.direct_compaction:
        return True
    block_mt = cc.zone.get_pageblock_migratetype(pfn)
    if cc.migratetype == MigrateType.MOVABLE:
        return block_mt in (MigrateType.MOVABLE, MigrateType.CMA)
    return block_mt == cc.migratetype


def isolate_migratepages(vm: VM, cc: CompactControl) -> IsolateMigrate:
    """isolate_migratepages() (mm/compaction.c:1234-1311): the candidates of the next
    suitable pageblock below the free scanner."""
    zone = cc.zone
    pb = zone.pageblock_nr_pages
    isolate_mode = ISOLATE_UNEVICTABLE | \
        (ISOLATE_ASYNC_MIGRATE if cc.mode != MigrateMode.SYNC else 0)
    task = vm.cpus.current()
    low_pfn = cc.migrate_pfn
    block_start = max(pageblock_start_pfn(zone, low_pfn), zone.zone_start_pfn)
    block_end = pageblock_end_pfn(zone, low_pfn)
    check = SWAP_CLUSTER_MAX * pb
    while block_end <= cc.free_pfn:
        if not low_pfn % check and task.need_resched and compact_should_abort(vm, cc, task):
            break
        if isolation_suitable(cc, block_start) and suitable_migration_source(cc, block_start):
            low_pfn = isolate_migratepages_block(vm, cc, low_pfn, block_end, isolate_mode)
            if not low_pfn or cc.contended:
                return ISOLATE_ABORT
            break
        low_pfn = block_end
        block_start = block_end
        block_end += pb
    cc.migrate_pfn = low_pfn
    return ISOLATE_SUCCESS if cc.nr_migratepages else ISOLATE_NONE


# --- the free scanner (CMP-2, CMP-4) ----------------------------------------------------------

def suitable_migration_target(cc: CompactControl, pfn: int) -> bool:
    """suitable_migration_target() (mm/compaction.c:1030-1053): never a block that is one
    free block of pageblock order or more, even at full priority; otherwise only
    MOVABLE/CMA blocks, unless block suitability is ignored."""
    zone = cc.zone
    page = zone.pages[pfn - zone.start_pfn]
    if page.flags & BUDDY and page.private >= zone.pageblock_order:
        return False
    if cc.ignore_block_suitable:
        return True
    return zone.get_pageblock_migratetype(pfn) in (MigrateType.MOVABLE, MigrateType.CMA)


def isolate_freepages_block(vm: VM, cc: CompactControl, start_pfn: int, end_pfn: int,
                            freelist: list[tuple[Page, int]], stride: int = 1) -> int:
    """isolate_freepages_block() (mm/compaction.c:433-575), not strict: free blocks of
    [start_pfn, end_pfn); returns where it stopped.

    v4.19 looks at every pfn.  With `VMConfig.free_scan_stride` it looks at every
    `stride`-th one and, past a free block or a compound page, goes on `stride` pfns
    after its end (6.1 mm/compaction.c:541-664: the loop's `blockpfn += stride`, :562).
    """
    zone = cc.zone
    pages = zone.pages
    start = zone.start_pfn
    task = vm.cpus.current()
    cluster = SWAP_CLUSTER_MAX - 1
    # 6.1 (scan_counts_isolated): the pages of an isolated free block count as scanned
    counts_isolated = vm.config.scan_counts_isolated
    # (bound once: a method of the zone, whose many attributes keep the interpreter from
    # specializing `zone.isolate_free_page(...)` at each free page)
    isolate_free_page = zone.isolate_free_page
    nr_scanned = total_isolated = 0
    blockpfn = start_pfn
    # nothing in this loop runs other code: the flags cannot change during it
    watch = task.sigkill_pending or task.need_resched
    while blockpfn < end_pfn:
        # Every SWAP_CLUSTER_MAX pfns: drop the zone lock, back off if asked to.
        if watch and not blockpfn & cluster and compact_unlock_should_abort(vm, cc, task):
            break
        nr_scanned += 1
        page = pages[blockpfn - start]
        flags = page.flags
        if not flags:
            # in use with no flags, the usual page here: neither compound nor free
            blockpfn += stride
            continue
        if flags & COMPOUND:
            order = zone.compound_order(page)
            if order < zone.max_order and order:
                blockpfn += (1 << order) - 1
            blockpfn += stride
            continue
        if not flags & BUDDY:
            blockpfn += stride
            continue
        order = page.private
        isolated = isolate_free_page(page, order)
        if not isolated:
            break
        if counts_isolated:
            nr_scanned += isolated - 1
        total_isolated += isolated
        cc.nr_freepages += isolated
        freelist.append((page, order))
        if cc.nr_migratepages <= cc.nr_freepages:
            blockpfn += isolated
            break
        blockpfn += isolated - 1 + stride
    # valid_page, as in isolate_migratepages_block(): the page at start_pfn if any was scanned
    valid_page = pages[start_pfn - start] if nr_scanned else None
    blockpfn = _end_of_block_scan(vm, cc, blockpfn, end_pfn, valid_page, total_isolated, False)
    cc.total_free_scanned += nr_scanned
    return blockpfn


def isolate_freepages(vm: VM, cc: CompactControl) -> None:
    """isolate_freepages() (mm/compaction.c:1069-1165): walk down from cc->free_pfn until
    enough targets are isolated.

    With `VMConfig.free_scan_stride` (6.1 mm/compaction.c:1559-1666) the first
    block is scanned pfn by pfn (every COMPACT_CLUSTER_MAX-th pfn in ASYNC mode),
    and the stride doubles, up to COMPACT_CLUSTER_MAX, after each block that gave
    no free page; a block that gave some sets it back to 1.
    """
    zone = cc.zone
    pb = zone.pageblock_nr_pages
    task = vm.cpus.current()
    check = SWAP_CLUSTER_MAX * pb
    isolate_start = cc.free_pfn
    block_start = pageblock_start_pfn(zone, cc.free_pfn)
    block_end = min(block_start + pb, zone.zone_end_pfn)
    low_pfn = pageblock_end_pfn(zone, cc.migrate_pfn)
    found: list[tuple[Page, int]] = []
    sampling = vm.config.free_scan_stride
    stride = COMPACT_CLUSTER_MAX if sampling and cc.mode == MigrateMode.ASYNC else 1
    while block_start >= low_pfn:
        if not block_start % check and task.need_resched and compact_should_abort(vm, cc, task):
            break
        if suitable_migration_target(cc, block_start) and isolation_suitable(cc, block_start):
            before = cc.nr_freepages
            isolate_start = isolate_freepages_block(vm, cc, isolate_start, block_end, found,
                                                    stride)
            if cc.nr_freepages >= cc.nr_migratepages or cc.contended:
                if isolate_start >= block_end:
                    isolate_start = block_start - pb
                break
            if isolate_start < block_end:
                break
            if sampling:
                stride = 1 if cc.nr_freepages > before else min(COMPACT_CLUSTER_MAX, stride << 1)
        block_end = block_start
        block_start -= pb
        isolate_start = block_start
    # map_pages(): split every isolated block into refcounted order-0 pages; the list's
    # head (the end of cc.freepages) is the last page of the last block isolated
    freepages = cc.freepages
    for page, order in found:
        if order:
            freepages.extend(zone.split_free_block(page, order))
        else:
            # split_free_block() of one page, in place: the free scanner's usual find
            page._refcount = 1
            page.flags = 0
            page.private = 0
            page.lru = None
            page.mapping = 0
            freepages.append(page)
    cc.free_pfn = isolate_start


def compaction_alloc(page: Page, cc: CompactControl) -> Page | None:
    """compaction_alloc() (mm/compaction.c:1171-1194): get_new_page for migrate_pages;
    refills from the free scanner unless compaction is backing off."""
    if not cc.freepages:
        if not cc.contended:
            isolate_freepages(cc.zone.vm, cc)
        if not cc.freepages:
            return None
    cc.nr_freepages -= 1
    return cc.freepages.pop()


def compaction_free(page: Page, cc: CompactControl) -> None:
    """compaction_free() (mm/compaction.c:1201-1207): put_new_page: an unused target goes
    back to the head of the list."""
    cc.freepages.append(page)
    cc.nr_freepages += 1


def release_freepages(vm: VM, freepages: list[Page]) -> int:
    """release_freepages() (mm/compaction.c:52-66): free the targets not used, from the
    list's head (the end of `freepages`); returns the highest pfn."""
    high = 0
    put = vm.cpus.put_page
    for page in reversed(freepages):
        if page.pfn > high:
            high = page.pfn
        put(page)
    freepages.clear()
    return high


# --- finishing and suitability (CMP-6) -----------------------------------------------------------

def compact_scanners_met(cc: CompactControl) -> bool:
    """compact_scanners_met() (mm/compaction.c:1059-1063)."""
    zone = cc.zone
    return (cc.free_pfn >> zone.pageblock_order) <= (cc.migrate_pfn >> zone.pageblock_order)


def compact_finished(vm: VM, cc: CompactControl) -> CompactResult:
    """compact_finished() / __compact_finished() (mm/compaction.c:1322-1424)."""
    zone = cc.zone
    if cc.contended or fatal_signal_pending(vm):
        return CompactResult.CONTENDED
    if compact_scanners_met(cc):
        reset_cached_positions(zone)
        if cc.direct_compaction:
            zone.compact_blockskip_flush = True
        return CompactResult.COMPLETE if cc.whole_zone else CompactResult.PARTIAL_SKIPPED
    if cc.order == -1:
        return CompactResult.CONTINUE
    if cc.finishing_block:
        if cc.migrate_pfn % zone.pageblock_nr_pages == 0:
            cc.finishing_block = False
        else:
            return CompactResult.CONTINUE
    for order in range(cc.order, zone.max_order):
        if zone.free_area[order][cc.migratetype]:
            return CompactResult.SUCCESS
        if zone.find_suitable_fallback(order, cc.migratetype, True)[0] != -1:
            if cc.migratetype == MigrateType.MOVABLE:
                return CompactResult.SUCCESS
            if cc.mode == MigrateMode.ASYNC or cc.migrate_pfn % zone.pageblock_nr_pages == 0:
                return CompactResult.SUCCESS
            cc.finishing_block = True
            return CompactResult.CONTINUE
    return CompactResult.CONTINUE  # COMPACT_NO_SUITABLE_PAGE: keep going


def compaction_suitable_at(zone: Zone, order: int, wmark_target: int) -> CompactResult:
    """__compaction_suitable() (mm/compaction.c:1433-1474): SUCCESS if the allocation would
    succeed now, SKIPPED if `wmark_target` free pages leave no room for the targets,
    else CONTINUE."""
    if order == -1:
        return CompactResult.CONTINUE
    if zone.watermark_ok(order, zone.wmark_min):
        return CompactResult.SUCCESS
    mark = zone.wmark_low if order > PAGE_ALLOC_COSTLY_ORDER else zone.wmark_min
    mark += 2 << order  # compact_gap(): room for the targets and the migrated copies
    if not zone.watermark_ok(0, mark, wmark_target):
        return CompactResult.SKIPPED
    return CompactResult.CONTINUE


def compaction_suitable(zone: Zone, order: int) -> CompactResult:
    """compaction_suitable() (mm/compaction.c:1476-1512): already enough? too little free
    memory? For a costly order, would a failure be for lack of memory rather than
    fragmentation (COMPACT_NOT_SUITABLE_ZONE)?  Callers see that last one as SKIPPED."""
    ret = compaction_suitable_at(zone, order, zone.nr_free_pages)
    if ret == CompactResult.CONTINUE and order > PAGE_ALLOC_COSTLY_ORDER:
        fragindex = fragmentation_index(zone.buddyinfo(), order)
        if 0 <= fragindex <= EXTFRAG_THRESHOLD:
            ret = CompactResult.NOT_SUITABLE_ZONE
    if ret == CompactResult.NOT_SUITABLE_ZONE:
        ret = CompactResult.SKIPPED
    return ret


def zone_reclaimable_pages(zone: Zone) -> int:
    """zone_reclaimable_pages() (mm/vmscan.c:319-330): file LRU pages, and anon ones when
    there is swap.  The model's LRU pages are anonymous and it has no swap: 0."""
    return 0


def compaction_zonelist_suitable(zone: Zone, order: int) -> bool:
    """compaction_zonelist_suitable() (mm/compaction.c:1514-1544): would compaction run at
    all if reclaim freed what it could?"""
    available = zone_reclaimable_pages(zone) // order + zone.nr_free_pages
    return compaction_suitable_at(zone, order, available) != CompactResult.SKIPPED


# --- compact_zone ------------------------------------------------------------------------------

def compact_zone(vm: VM, cc: CompactControl) -> CompactResult:
    """compact_zone() (mm/compaction.c:1557-1724): run the two scanners until finished.

    The scanned pages cc carries in are counted again at the end, as v4.19's
    compact_node() does with the zones before (`VMConfig.zone_scan_counts`: 6.1
    compact_zone() zeroes them first, mm/compaction.c:2304-2305).  With
    `VMConfig.rescan_block`, each round that starts in the pageblock the last
    isolation round started in is a rescan (cc->rescan, 6.1 :2384-2389).
    """
    zone = cc.zone
    start_pfn = zone.zone_start_pfn
    end_pfn = zone.zone_end_pfn
    sync = 1 if cc.mode != MigrateMode.ASYNC else 0
    config = vm.config
    if config.zone_scan_counts:
        cc.total_migrate_scanned = cc.total_free_scanned = 0
    rescans = config.rescan_block
    last_migrated = 0          # 6.1's local last_migrated_pfn: where the last round began
    cc.migratetype = gfp_migratetype(cc.gfp_mask)
    ret = compaction_suitable(zone, cc.order)
    if ret in (CompactResult.SUCCESS, CompactResult.SKIPPED):
        return ret
    if compaction_restarting(zone, cc.order):
        reset_isolation_suitable(zone, vm)
    if cc.whole_zone:
        cc.migrate_pfn = start_pfn
        cc.free_pfn = pageblock_start_pfn(zone, end_pfn - 1)
    else:
        cc.migrate_pfn = zone.compact_cached_migrate_pfn[sync]
        cc.free_pfn = zone.compact_cached_free_pfn
        if not start_pfn <= cc.free_pfn < end_pfn:
            cc.free_pfn = pageblock_start_pfn(zone, end_pfn - 1)
            zone.compact_cached_free_pfn = cc.free_pfn
        if not start_pfn <= cc.migrate_pfn < end_pfn:
            cc.migrate_pfn = start_pfn
            zone.compact_cached_migrate_pfn[0] = start_pfn
            zone.compact_cached_migrate_pfn[1] = start_pfn
        if cc.migrate_pfn == start_pfn:
            cc.whole_zone = True
    cc.last_migrated_pfn = 0
    while True:
        ret = compact_finished(vm, cc)
        if ret != CompactResult.CONTINUE:
            break
        if rescans:
            started = cc.migrate_pfn
            cc.rescan = (pageblock_start_pfn(zone, last_migrated)
                         == pageblock_start_pfn(zone, started))
        isolated = isolate_migratepages(vm, cc)
        if isolated == ISOLATE_ABORT:
            ret = CompactResult.CONTENDED
            putback_movable_pages(vm, cc.migratepages)
            cc.nr_migratepages = 0
            break
        if isolated == ISOLATE_NONE:
            continue    # check_drain: no per-CPU lists to drain
        if rescans:
            last_migrated = started
        err = migrate_pages(vm, cc.migratepages, compaction_alloc, compaction_free, cc,
                            cc.mode, MigrateReason.COMPACTION)
        cc.nr_migratepages = 0
        if err:
            putback_movable_pages(vm, cc.migratepages)
            # -ENOMEM when the scanners met is for compact_finished() to see.
            if err == -ENOMEM and not compact_scanners_met(cc):
                ret = CompactResult.CONTENDED
                break
            # A failure in this order-aligned block: skip the rest of it.
            if cc.direct_compaction and cc.mode == MigrateMode.ASYNC:
                cc.migrate_pfn = block_end_pfn(cc.migrate_pfn - 1, cc.order)
                cc.last_migrated_pfn = 0
                last_migrated = 0
    if cc.nr_freepages > 0 or cc.freepages:
        free_pfn = release_freepages(vm, cc.freepages)
        cc.nr_freepages = 0
        free_pfn = pageblock_start_pfn(zone, free_pfn)
        if free_pfn > zone.compact_cached_free_pfn:
            zone.compact_cached_free_pfn = free_pfn
    ev = vm.vmstat.events
    ev["compact_migrate_scanned"] += cc.total_migrate_scanned
    ev["compact_free_scanned"] += cc.total_free_scanned
    listeners = vm.listeners.mmplug_after_compact_zone
    if listeners is not None:
        vm.notify(listeners, "mmplug_after_compact_zone", zone=zone, order=cc.order,
                  mode=cc.mode, result=ret)
    return ret


def compact_memory(vm: VM) -> CompactResult:
    """compact_node() (mm/compaction.c:1860-1893) for /proc/sys/vm/compact_memory: the
    whole zone, SYNC, skip bits ignored."""
    cc = CompactControl(zone=vm.zone, order=-1, mode=MigrateMode.SYNC, ignore_skip_hint=True,
                        whole_zone=True, gfp_mask=GFP_KERNEL)
    return compact_zone(vm, cc)


# --- direct compaction: the allocator's slow path ---------------------------------------------

def compact_zone_order(vm: VM, order: int, gfp: int, prio: CompactPriority) -> CompactResult:
    """compact_zone_order() (mm/compaction.c:1732-1764): one direct compaction at `prio`.

    ASYNC migrates ASYNC; every other priority SYNC_LIGHT.  At MIN_COMPACT_PRIORITY
    (SYNC_FULL) the whole zone is scanned, skip bits are ignored and the free
    scanner takes any block's free pages.
    """
    full = prio == MIN_COMPACT_PRIORITY
    mode = MigrateMode.ASYNC if prio == CompactPriority.ASYNC else MigrateMode.SYNC_LIGHT
    cc = CompactControl(zone=vm.zone, order=order, mode=mode, gfp_mask=gfp,
                        direct_compaction=True, whole_zone=full, ignore_skip_hint=full,
                        ignore_block_suitable=full)
    return compact_zone(vm, cc)


def try_to_compact_pages(vm: VM, order: int, gfp: int = GFP_HIGHUSER_MOVABLE,
                         prio: CompactPriority = INIT_COMPACT_PRIORITY) -> CompactResult:
    """try_to_compact_pages() (mm/compaction.c:1782-1852): no compaction without __GFP_IO;
    deferral (except at full priority), one compact_zone_order, defer on failure."""
    zone = vm.zone
    if not gfp & GFP_IO:
        # GFP_NOIO: migration might need I/O
        return CompactResult.SKIPPED
    rc = CompactResult.SKIPPED
    if prio > MIN_COMPACT_PRIORITY and compaction_deferred(zone, order):
        return max(CompactResult.DEFERRED, rc)
    status = compact_zone_order(vm, order, gfp, prio)
    rc = max(status, rc)
    if status == CompactResult.SUCCESS:
        compaction_defer_reset(zone, order, False)
    elif prio != CompactPriority.ASYNC and status in (CompactResult.COMPLETE,
                                                      CompactResult.PARTIAL_SKIPPED):
        defer_compaction(zone, order)
    return rc


def alloc_pages_direct_compact(vm: VM, order: int, gfp: int, prio: CompactPriority
                               ) -> tuple[Page | None, CompactResult]:
    """__alloc_pages_direct_compact() (mm/page_alloc.c:4006-4053): compact in direct
    compaction context (PF_MEMALLOC), then try the free lists again.

    Counts compact_stall when compaction ran, then compact_success or compact_fail.
    """
    zone = vm.zone
    if not order:
        return None, CompactResult.SKIPPED
    task = vm.cpus.current()
    saved = task.flags
    task.flags |= PF_MEMALLOC  # memalloc_noreclaim_save()
    try:
        result = try_to_compact_pages(vm, order, gfp, prio)
    finally:
        task.flags = saved
    if result <= CompactResult.INACTIVE:
        return None, result
    ev = vm.vmstat.events
    ev["compact_stall"] += 1
    page = zone.alloc_pages(order, gfp)
    if page is not None:
        zone.compact_blockskip_flush = False
        compaction_defer_reset(zone, order, True)
        ev["compact_success"] += 1
        return page, result
    ev["compact_fail"] += 1
    cond_resched(vm, task)
    return None, result


def should_compact_retry(zone: Zone, order: int, result: CompactResult,
                         prio: CompactPriority, retries: int
                         ) -> tuple[bool, CompactPriority, int]:
    """should_compact_retry() (mm/page_alloc.c:4055-4123): (retry?, priority, retries).

    Progress (SUCCESS) counts a retry, up to MAX_COMPACT_RETRIES (a quarter for
    costly orders); a withdrawn result retries while compaction could run at all;
    a failed one, or retries used up, raise the priority (lower value) down to
    SYNC_FULL, or SYNC_LIGHT for costly orders, starting the count again.
    """
    if not order:
        return False, prio, retries
    if compaction_made_progress(result):
        retries += 1
    if not compaction_failed(result):
        if compaction_withdrawn(result):
            return compaction_zonelist_suitable(zone, order), prio, retries
        max_retries = MAX_COMPACT_RETRIES
        if order > PAGE_ALLOC_COSTLY_ORDER:
            max_retries //= 4
        if retries <= max_retries:
            return True, prio, retries
    # check_priority:
    min_priority = (MIN_COMPACT_COSTLY_PRIORITY if order > PAGE_ALLOC_COSTLY_ORDER
                    else MIN_COMPACT_PRIORITY)
    if prio > min_priority:
        return True, CompactPriority(prio - 1), 0
    return False, prio, retries


def perform_reclaim(vm: VM, task: Task) -> bool:
    """__perform_reclaim() (mm/page_alloc.c:4224-4251): direct reclaim between two
    cond_resched()s.  try_to_free_pages() frees nothing the model holds; whether it
    reports progress is `VMConfig.reclaim_progress`."""
    cond_resched(vm, task)
    progress = vm.config.reclaim_progress
    cond_resched(vm, task)
    return progress


def alloc_pages_direct_reclaim(vm: VM, order: int, gfp: int, task: Task
                               ) -> tuple[Page | None, bool]:
    """__alloc_pages_direct_reclaim() (mm/page_alloc.c:4262-4293): reclaim, and after
    progress the free lists again: (page, progress).

    v4.19 tries twice, around drain_all_pages(); the model has no per-CPU lists and
    nothing runs between the two attempts, so one is the same.
    """
    if not perform_reclaim(vm, task):
        return None, False
    return vm.zone.alloc_pages(order, gfp), True


def zone_write_pending(zone: Zone) -> int:
    """NR_ZONE_WRITE_PENDING: the zone's pages under writeback (the model has no dirty
    page cache)."""
    return sum(1 for page in zone.pages if page.flags & WRITEBACK)


def should_reclaim_retry(vm: VM, order: int, progress: bool, no_progress_loops: int
                         ) -> tuple[bool, int]:
    """should_reclaim_retry() (mm/page_alloc.c:4412-4504): (retry?, no_progress_loops).

    A round without progress, and every round of a costly order, counts; after
    MAX_RECLAIM_RETRIES of them in a row the answer is no (the highatomic reserve
    unreserve_highatomic_pageblock() would give back first is not modelled: there
    is none).  Otherwise retry if reclaiming everything reclaimable would pass the
    min watermark for the order, after a congestion_wait() when nothing was
    reclaimed and more than half of the reclaimable pages wait for writeback, else
    after a cond_resched().
    """
    if progress and order <= PAGE_ALLOC_COSTLY_ORDER:
        no_progress_loops = 0
    else:
        no_progress_loops += 1
    if no_progress_loops > MAX_RECLAIM_RETRIES:
        return False, no_progress_loops
    zone = vm.zone
    reclaimable = zone_reclaimable_pages(zone)
    if not zone.watermark_ok(order, zone.wmark_min, zone.nr_free_pages + reclaimable):
        return False, no_progress_loops
    task = vm.cpus.current()
    if not progress and 2 * zone_write_pending(zone) > reclaimable:
        congestion_wait(vm, task, zone)
    else:
        cond_resched(vm, task)
    return True, no_progress_loops


def gfp_pfmemalloc_allowed(gfp: int, task: Task) -> bool:
    """gfp_pfmemalloc_allowed() (mm/page_alloc.c:4373-4394): may this request dip into the
    reserves?  __GFP_NOMEMALLOC says no; __GFP_MEMALLOC, or a task in PF_MEMALLOC
    context (direct compaction or reclaim itself), says yes.  No interrupt context and
    no OOM victims in the model."""
    if gfp & GFP_NOMEMALLOC:
        return False
    return bool(gfp & GFP_MEMALLOC or task.flags & PF_MEMALLOC)


def alloc_pages_compact(vm: VM, order: int, gfp: int = GFP_HIGHUSER_MOVABLE) -> Page | None:
    """__alloc_pages_slowpath() (mm/page_alloc.c:4546-4826) as far as compaction goes (MIG-10).

    For a costly order, or any order that is not movable, an ASYNC compaction
    first (INIT_COMPACT_PRIORITY), unless the request may use the reserves; then
    rounds of direct reclaim and direct compaction from SYNC_LIGHT
    (DEF_COMPACT_PRIORITY), retried as
    should_reclaim_retry and should_compact_retry decide, the latter raising the
    priority to SYNC_FULL.  __GFP_NORETRY stops after one round (a costly one
    keeps ASYNC, and gives up on DEFERRED); a costly order stops after one round
    unless __GFP_RETRY_MAYFAIL.

    Approximated: direct reclaim frees nothing the model holds
    (`perform_reclaim`).  kswapd's only effect is clearing stale skip bits
    (reset_isolation_suitable when compact_blockskip_flush is set).  The OOM
    killer is not modelled: where it would run, the allocation fails; so does it
    for a task with a fatal signal (the OOM victim's last attempt).  As the
    model's reclaim never changes the zone, at most MAX_RECLAIM_RETRIES rounds in
    a row are retried on a withdrawn result.  An order-0 request goes through
    the same rounds (compaction does nothing for it, should_compact_retry never
    retries it).  Pages come back refcounted, as a compound page for order > 0.
    """
    zone = vm.zone
    if order > 0:
        gfp |= GFP_COMP
    page = zone.alloc_pages(order, gfp)     # get_page_from_freelist()
    if page is not None or order >= zone.max_order:
        return page
    if gfp & GFP_KSWAPD_RECLAIM and zone.compact_blockskip_flush:
        # wake_all_kswapds(): kswapd clears stale skip bits before it goes back to sleep
        reset_isolation_suitable(zone)
    can_direct_reclaim = bool(gfp & GFP_DIRECT_RECLAIM)
    costly = order > PAGE_ALLOC_COSTLY_ORDER
    prio = DEF_COMPACT_PRIORITY
    retries = 0
    result = CompactResult.SKIPPED
    task = vm.cpus.current()
    if (can_direct_reclaim and (costly or (order > 0
                                           and gfp_migratetype(gfp) != MigrateType.MOVABLE))
            and not gfp_pfmemalloc_allowed(gfp, task)):
        page, result = alloc_pages_direct_compact(vm, order, gfp, INIT_COMPACT_PRIORITY)
        if page is not None:
            return page
        if costly and gfp & GFP_NORETRY:
            if result == CompactResult.DEFERRED:
                return None
            prio = INIT_COMPACT_PRIORITY
    no_progress_loops = withdrawn = 0
    while True:                                                  # retry:
        page = zone.alloc_pages(order, gfp)
        if page is not None:
            return page
        if not can_direct_reclaim or task.flags & PF_MEMALLOC:
            return None
        page, progress = alloc_pages_direct_reclaim(vm, order, gfp, task)
        if page is not None:
            return page
        page, result = alloc_pages_direct_compact(vm, order, gfp, prio)
        if page is not None:
            return page
        if gfp & GFP_NORETRY or (costly and not gfp & GFP_RETRY_MAYFAIL):
            return None
        retry, no_progress_loops = should_reclaim_retry(vm, order, progress, no_progress_loops)
        if retry:
            continue
        if task.sigkill_pending:
            return None
        if not progress:
            return None
        retry, prio, retries = should_compact_retry(zone, order, result, prio, retries)
        if not retry:
            return None
        withdrawn = withdrawn + 1 if compaction_withdrawn(result) else 0
        if withdrawn > MAX_RECLAIM_RETRIES:
            return None


def kcompactd_do_work(vm: VM, order: int) -> CompactResult:
    """kcompactd_do_work() (mm/compaction.c:1985-2068): background compaction for an order,
    SYNC_LIGHT; defers after a run that found nothing (COMPLETE or PARTIAL_SKIPPED).

    Returns what became of the zone: DEFERRED, the suitability result when
    compaction did not run, or compact_zone's result.
    """
    zone = vm.zone
    ev = vm.vmstat.events
    ev["compact_daemon_wake"] += 1
    if compaction_deferred(zone, order):
        return CompactResult.DEFERRED
    suitable = compaction_suitable(zone, order)
    if suitable != CompactResult.CONTINUE:
        return suitable
    cc = CompactControl(zone=zone, order=order, mode=MigrateMode.SYNC_LIGHT, gfp_mask=GFP_KERNEL)
    status = compact_zone(vm, cc)
    if status == CompactResult.SUCCESS:
        compaction_defer_reset(zone, order, False)
    elif status in (CompactResult.PARTIAL_SKIPPED, CompactResult.COMPLETE):
        # drain_all_pages(zone): no per-CPU lists in the model
        defer_compaction(zone, order)
    ev["compact_daemon_migrate_scanned"] += cc.total_migrate_scanned
    ev["compact_daemon_free_scanned"] += cc.total_free_scanned
    return status
