"""Compaction of one zone: mm/compaction.c, v4.19 (CMP-1..CMP-7).

The migrate scanner walks pageblocks up from the zone start isolating
movable pages; the free scanner walks down from the last pageblock isolating
free pages as migration targets; compaction ends when they meet or, for a
request of a given order, when a free block of that order exists.

Three callers are modelled: a whole-zone run (`compact_memory`, what writing
/proc/sys/vm/compact_memory does: SYNC, skip bits ignored), direct compaction
from the allocator's slow path (`try_to_compact_pages`: ASYNC, then SYNC_LIGHT)
and kcompactd (`kcompactd_do_work`: SYNC_LIGHT).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import define, field

from .constants import (
    COMPACT_CLUSTER_MAX, COMPACT_MAX_DEFER_SHIFT, EXTFRAG_THRESHOLD, ENOMEM, GFP_FS,
    GFP_HIGHUSER_MOVABLE, GFP_KERNEL, ISOLATE_ASYNC_MIGRATE, ISOLATE_UNEVICTABLE,
    PAGE_ALLOC_COSTLY_ORDER, CompactResult, MigrateMode, MigrateReason, MigrateType,
    gfp_migratetype,
)
from .migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from .page import (
    BUDDY, COMPOUND, HEAD, ISOLATED, LRU, PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE,
    UNEVICTABLE, WRITEBACK, Page,
)
from .sync import PF_MEMALLOC
from .vmstat import fragmentation_index

if TYPE_CHECKING:
    from .vm import VM
    from .zone import Zone


@define(slots=True, eq=False)
class CompactControl:
    """struct compact_control (mm/internal.h)."""

    zone: "Zone"
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


def pageblock_start_pfn(zone: "Zone", pfn: int) -> int:
    return pfn & ~(zone.pageblock_nr_pages - 1)


def pageblock_end_pfn(zone: "Zone", pfn: int) -> int:
    return pageblock_start_pfn(zone, pfn) + zone.pageblock_nr_pages


def block_end_pfn(pfn: int, order: int) -> int:
    return (pfn & ~((1 << order) - 1)) + (1 << order)


# --- deferral (CMP-7) --------------------------------------------------------------------

def defer_compaction(zone: "Zone", order: int) -> None:
    """defer_compaction(): back off exponentially after a failure."""
    zone.compact_considered = 0
    zone.compact_defer_shift += 1
    if order < zone.compact_order_failed:
        zone.compact_order_failed = order
    if zone.compact_defer_shift > COMPACT_MAX_DEFER_SHIFT:
        zone.compact_defer_shift = COMPACT_MAX_DEFER_SHIFT


def compaction_deferred(zone: "Zone", order: int) -> bool:
    """compaction_deferred(): skip this attempt while under the 1 << shift limit."""
    defer_limit = 1 << zone.compact_defer_shift
    if order < zone.compact_order_failed:
        return False
    zone.compact_considered += 1
    if zone.compact_considered > defer_limit:
        zone.compact_considered = defer_limit
    if zone.compact_considered >= defer_limit:
        return False
    return True


def compaction_defer_reset(zone: "Zone", order: int, alloc_success: bool) -> None:
    """compaction_defer_reset(): a success forgets the back-off."""
    if alloc_success:
        zone.compact_considered = 0
        zone.compact_defer_shift = 0
    if order >= zone.compact_order_failed:
        zone.compact_order_failed = order + 1


def compaction_restarting(zone: "Zone", order: int) -> bool:
    """compaction_restarting(): deferred to the limit; time to forget skip bits."""
    if order < zone.compact_order_failed:
        return False
    return (zone.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
            and zone.compact_considered >= 1 << zone.compact_defer_shift)


# --- skip bits (CMP-5) --------------------------------------------------------------------

def reset_isolation_suitable(zone: "Zone") -> None:
    """__reset_isolation_suitable(): clear every skip bit and the cached scanner positions."""
    zone.compact_cached_migrate_pfn[0] = zone.start_pfn
    zone.compact_cached_migrate_pfn[1] = zone.start_pfn
    zone.compact_cached_free_pfn = pageblock_start_pfn(zone, zone.end_pfn - 1)
    zone.compact_blockskip_flush = False
    zone.pageblock_skip[:] = bytes(len(zone.pageblock_skip))


def reset_cached_positions(zone: "Zone") -> None:
    zone.compact_cached_migrate_pfn[0] = zone.start_pfn
    zone.compact_cached_migrate_pfn[1] = zone.start_pfn
    zone.compact_cached_free_pfn = pageblock_start_pfn(zone, zone.end_pfn - 1)


def isolation_suitable(cc: CompactControl, pfn: int) -> bool:
    if cc.ignore_skip_hint:
        return True
    zone = cc.zone
    return not zone.pageblock_skip[(pfn - zone.start_pfn) >> zone.pageblock_order]


def update_pageblock_skip(cc: CompactControl, page: Page | None, nr_isolated: int,
                          migrate_scanner: bool) -> None:
    """update_pageblock_skip(): nothing isolated from a whole block: skip it next time."""
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

def _isolate_lru_page(vm: "VM", page: Page, isolate_mode: int) -> bool:
    """__isolate_lru_page(): take an LRU page off the LRU with a reference."""
    flags = page.flags
    if not flags & LRU:
        return False
    if flags & UNEVICTABLE and not isolate_mode & ISOLATE_UNEVICTABLE:
        return False
    if isolate_mode & ISOLATE_ASYNC_MIGRATE and flags & WRITEBACK:
        return False
    if not vm.sync.get_page_unless_zero(page):
        return False
    page.flags = flags & ~LRU
    return True


def isolate_migratepages_block(vm: "VM", cc: CompactControl, low_pfn: int, end_pfn: int,
                               isolate_mode: int) -> int:
    """isolate_migratepages_block(): isolate from [low_pfn, end_pfn) of one pageblock.

    Returns the first pfn not scanned.  Free blocks and compound pages are
    stepped over by their order; non-LRU pages go to isolate_movable_page if
    they look movable and are not isolated yet (ISO-5); at 32 isolated pages
    the block is left for the next round.
    """
    zone = cc.zone
    pages = zone.pages
    start = zone.start_pfn
    nr_scanned = nr_isolated = 0
    valid_page = None
    skip_on_failure = False
    next_skip_pfn = 0
    migratepages = cc.migratepages
    if cc.direct_compaction and cc.mode == MigrateMode.ASYNC:
        skip_on_failure = True
        next_skip_pfn = block_end_pfn(low_pfn, cc.order)
    max_order = zone.max_order
    while low_pfn < end_pfn:
        if skip_on_failure and low_pfn >= next_skip_pfn:
            # The previous order-aligned block was all isolated: migrate it now.
            if nr_isolated:
                break
            next_skip_pfn = block_end_pfn(low_pfn, cc.order)
        nr_scanned += 1
        page = pages[low_pfn - start]
        if valid_page is None:
            valid_page = page
        flags = page.flags
        if flags & BUDDY:
            order = page.private
            if 0 < order < max_order:
                low_pfn += (1 << order) - 1
            low_pfn += 1
            continue
        isolated = False
        if flags & COMPOUND:
            order = zone.compound_order(page)
            if order < max_order:
                low_pfn += (1 << order) - 1 if order else 0
        elif not flags & LRU:
            # __PageMovable may be a false positive: verified under the page lock.
            if (page.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE
                    and not flags & ISOLATED):
                isolated = isolate_movable_page(vm, page, isolate_mode) == 0
        elif page._refcount <= 1 and _isolate_lru_page(vm, page, isolate_mode):
            # (a page with more references than mappings is pinned: not worth it)
            zone.nr_isolated_lru += 1
            isolated = True
        if isolated:
            migratepages.add(page)
            cc.nr_migratepages += 1
            nr_isolated += 1
            if not cc.last_migrated_pfn:
                cc.last_migrated_pfn = low_pfn
            if cc.nr_migratepages == COMPACT_CLUSTER_MAX:
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
    low_pfn = _end_of_block_scan(vm, cc, low_pfn, end_pfn, valid_page, nr_isolated, True)
    cc.total_migrate_scanned += nr_scanned
    return low_pfn


def _end_of_block_scan(vm: "VM", cc: CompactControl, pfn: int, end_pfn: int,
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
    """Async direct compaction only takes from blocks of the wanted migratetype."""
    if cc.mode != MigrateMode.ASYNC or not cc.direct_compaction:
        return True
    block_mt = cc.zone.get_pageblock_migratetype(pfn)
    if cc.migratetype == MigrateType.MOVABLE:
        return block_mt in (MigrateType.MOVABLE, MigrateType.CMA)
    return block_mt == cc.migratetype


def isolate_migratepages(vm: "VM", cc: CompactControl) -> str:
    """isolate_migratepages(): the next suitable pageblock's candidates ("success"/"none")."""
    zone = cc.zone
    pb = zone.pageblock_nr_pages
    isolate_mode = ISOLATE_UNEVICTABLE | (ISOLATE_ASYNC_MIGRATE if cc.mode != MigrateMode.SYNC else 0)
    low_pfn = cc.migrate_pfn
    block_start = max(pageblock_start_pfn(zone, low_pfn), zone.start_pfn)
    block_end = pageblock_end_pfn(zone, low_pfn)
    while block_end <= cc.free_pfn:
        if isolation_suitable(cc, block_start) and suitable_migration_source(cc, block_start):
            low_pfn = isolate_migratepages_block(vm, cc, low_pfn, block_end, isolate_mode)
            break
        low_pfn = block_end
        block_start = block_end
        block_end += pb
    cc.migrate_pfn = low_pfn
    return "success" if cc.nr_migratepages else "none"


# --- the free scanner (CMP-2, CMP-4) ----------------------------------------------------------

def suitable_migration_target(cc: CompactControl, pfn: int) -> bool:
    """Only MOVABLE/CMA blocks, and never a block that is wholly free already."""
    if cc.ignore_block_suitable:
        return True
    zone = cc.zone
    page = zone.pages[pfn - zone.start_pfn]
    if page.flags & BUDDY and page.private >= zone.pageblock_order:
        return False
    return zone.get_pageblock_migratetype(pfn) in (MigrateType.MOVABLE, MigrateType.CMA)


def isolate_freepages_block(vm: "VM", cc: CompactControl, start_pfn: int, end_pfn: int,
                            freelist: list[tuple[Page, int]]) -> int:
    """isolate_freepages_block(): free blocks of [start_pfn, end_pfn); returns where it stopped."""
    zone = cc.zone
    pages = zone.pages
    start = zone.start_pfn
    nr_scanned = total_isolated = 0
    valid_page = None
    blockpfn = start_pfn
    while blockpfn < end_pfn:
        nr_scanned += 1
        page = pages[blockpfn - start]
        if valid_page is None:
            valid_page = page
        flags = page.flags
        if flags & COMPOUND:
            order = zone.compound_order(page)
            if order < zone.max_order and order:
                blockpfn += (1 << order) - 1
            blockpfn += 1
            continue
        if not flags & BUDDY:
            blockpfn += 1
            continue
        order = page.private
        isolated = zone.isolate_free_page(page, order)
        if not isolated:
            break
        total_isolated += isolated
        cc.nr_freepages += isolated
        freelist.append((page, order))
        if cc.nr_migratepages <= cc.nr_freepages:
            blockpfn += isolated
            break
        blockpfn += isolated
    blockpfn = _end_of_block_scan(vm, cc, blockpfn, end_pfn, valid_page, total_isolated, False)
    cc.total_free_scanned += nr_scanned
    return blockpfn


def isolate_freepages(vm: "VM", cc: CompactControl) -> None:
    """isolate_freepages(): walk down from cc->free_pfn until enough targets are isolated."""
    zone = cc.zone
    pb = zone.pageblock_nr_pages
    isolate_start = cc.free_pfn
    block_start = pageblock_start_pfn(zone, cc.free_pfn)
    block_end = min(block_start + pb, zone.end_pfn)
    low_pfn = pageblock_end_pfn(zone, cc.migrate_pfn)
    found: list[tuple[Page, int]] = []
    while block_start >= low_pfn:
        if suitable_migration_target(cc, block_start) and isolation_suitable(cc, block_start):
            isolate_start = isolate_freepages_block(vm, cc, isolate_start, block_end, found)
            if cc.nr_freepages >= cc.nr_migratepages or cc.contended:
                if isolate_start >= block_end:
                    isolate_start = block_start - pb
                break
            if isolate_start < block_end:
                break
        block_end = block_start
        block_start -= pb
        isolate_start = block_start
    # map_pages(): split every isolated block into refcounted order-0 pages
    for page, order in found:
        cc.freepages.extend(zone.split_free_block(page, order))
    cc.free_pfn = isolate_start


def compaction_alloc(page: Page, cc: CompactControl) -> Page | None:
    """compaction_alloc(): get_new_page for migrate_pages; refills from the free scanner."""
    if not cc.freepages:
        if not cc.contended:
            isolate_freepages(cc.zone.vm, cc)
        if not cc.freepages:
            return None
    cc.nr_freepages -= 1
    return cc.freepages.pop()


def compaction_free(page: Page, cc: CompactControl) -> None:
    """compaction_free(): put_new_page: an unused target goes back on the list."""
    cc.freepages.append(page)
    cc.nr_freepages += 1


def release_freepages(vm: "VM", freepages: list[Page]) -> int:
    """release_freepages(): free the targets not used; returns the highest pfn."""
    high = 0
    put = vm.sync.put_page
    for page in freepages:
        if page.pfn > high:
            high = page.pfn
        put(page)
    freepages.clear()
    return high


# --- finishing and suitability (CMP-6) -----------------------------------------------------------

def compact_scanners_met(cc: CompactControl) -> bool:
    zone = cc.zone
    return (cc.free_pfn >> zone.pageblock_order) <= (cc.migrate_pfn >> zone.pageblock_order)


def _find_suitable_fallback(zone: "Zone", order: int, migratetype: int) -> int:
    from .zone import FALLBACKS
    for mt in FALLBACKS.get(migratetype, ()):
        if zone.free_area[order][mt] and zone._can_steal(order, migratetype):
            return mt
    return -1


def compact_finished(vm: "VM", cc: CompactControl) -> CompactResult:
    """compact_finished() / __compact_finished()."""
    zone = cc.zone
    if cc.contended:
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
        if _find_suitable_fallback(zone, order, cc.migratetype) != -1:
            if cc.migratetype == MigrateType.MOVABLE:
                return CompactResult.SUCCESS
            if cc.mode == MigrateMode.ASYNC or cc.migrate_pfn % zone.pageblock_nr_pages == 0:
                return CompactResult.SUCCESS
            cc.finishing_block = True
            return CompactResult.CONTINUE
    return CompactResult.CONTINUE  # COMPACT_NO_SUITABLE_PAGE: keep going


def compaction_suitable(zone: "Zone", order: int) -> CompactResult:
    """compaction_suitable(): already enough? too little free memory? fragmentation?"""
    if order == -1:
        return CompactResult.CONTINUE
    if zone.watermark_ok(order, zone.wmark_min):
        return CompactResult.SUCCESS
    mark = zone.wmark_low if order > PAGE_ALLOC_COSTLY_ORDER else zone.wmark_min
    mark += 2 << order  # compact_gap(): room for the targets and the migrated copies
    if not zone.watermark_ok(0, mark):
        return CompactResult.SKIPPED
    if order > PAGE_ALLOC_COSTLY_ORDER:
        fragindex = fragmentation_index(zone.buddyinfo(), order)
        if 0 <= fragindex <= EXTFRAG_THRESHOLD:
            # Failure would be for lack of memory: reclaim, not compaction, helps.
            return CompactResult.NOT_SUITABLE_ZONE
    return CompactResult.CONTINUE


# --- compact_zone -----------------------------------------------------------------------------------

def compact_zone(vm: "VM", cc: CompactControl) -> CompactResult:
    """compact_zone() (mm/compaction.c): run the two scanners until finished."""
    zone = cc.zone
    start_pfn = zone.start_pfn
    end_pfn = zone.end_pfn
    sync = 1 if cc.mode != MigrateMode.ASYNC else 0
    cc.migratetype = gfp_migratetype(cc.gfp_mask)
    ret = compaction_suitable(zone, cc.order)
    if ret in (CompactResult.SUCCESS, CompactResult.SKIPPED, CompactResult.NOT_SUITABLE_ZONE):
        return ret
    if compaction_restarting(zone, cc.order):
        reset_isolation_suitable(zone)
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
        if isolate_migratepages(vm, cc) == "none":
            continue
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
    if cc.migratepages:
        putback_movable_pages(vm, cc.migratepages)
        cc.nr_migratepages = 0
    if cc.nr_freepages > 0 or cc.freepages:
        free_pfn = release_freepages(vm, cc.freepages)
        cc.nr_freepages = 0
        free_pfn = pageblock_start_pfn(zone, free_pfn)
        if free_pfn > zone.compact_cached_free_pfn:
            zone.compact_cached_free_pfn = free_pfn
    ev = vm.vmstat.events
    ev["compact_migrate_scanned"] += cc.total_migrate_scanned
    ev["compact_free_scanned"] += cc.total_free_scanned
    if vm.on_compaction is not None:
        vm.on_compaction(zone=zone, result=ret, order=cc.order, mode=cc.mode)
    return ret


def compact_memory(vm: "VM") -> CompactResult:
    """compact_node() for /proc/sys/vm/compact_memory: the whole zone, SYNC, skip bits ignored."""
    cc = CompactControl(zone=vm.zone, order=-1, mode=MigrateMode.SYNC, ignore_skip_hint=True,
                        whole_zone=True, gfp_mask=GFP_KERNEL)
    return compact_zone(vm, cc)


def compact_zone_order(vm: "VM", order: int, gfp: int, mode: MigrateMode,
                       full: bool = False) -> CompactResult:
    """compact_zone_order(): one direct-compaction attempt at one priority."""
    cc = CompactControl(zone=vm.zone, order=order, mode=mode, gfp_mask=gfp,
                        direct_compaction=True, whole_zone=full, ignore_skip_hint=full,
                        ignore_block_suitable=full)
    return compact_zone(vm, cc)


def try_to_compact_pages(vm: "VM", order: int, gfp: int = GFP_HIGHUSER_MOVABLE,
                         mode: MigrateMode = MigrateMode.ASYNC) -> CompactResult:
    """try_to_compact_pages(): deferral, one compact_zone_order, defer on failure."""
    zone = vm.zone
    # Every priority above MIN_COMPACT_PRIORITY respects deferral.
    if compaction_deferred(zone, order):
        return CompactResult.DEFERRED
    task = vm.sync.current()
    saved = task.flags
    task.flags |= PF_MEMALLOC  # memalloc_noreclaim_save(): direct compaction context
    try:
        status = compact_zone_order(vm, order, gfp, mode)
    finally:
        task.flags = saved
    if status == CompactResult.SUCCESS:
        compaction_defer_reset(zone, order, False)
    elif mode != MigrateMode.ASYNC and status in (CompactResult.COMPLETE,
                                                   CompactResult.PARTIAL_SKIPPED):
        defer_compaction(zone, order)
    return status


def alloc_pages_compact(vm: "VM", order: int, gfp: int = GFP_HIGHUSER_MOVABLE) -> Page | None:
    """The allocator's slow path for an order: try, compact ASYNC, then SYNC_LIGHT (MIG-10).

    Models __alloc_pages_slowpath's calls of __alloc_pages_direct_compact with
    INIT_COMPACT_PRIORITY (ASYNC) and then DEF_COMPACT_PRIORITY (SYNC_LIGHT),
    counting compact_stall/success/fail as it does.  Pages come back
    refcounted, as a compound page for order > 0.
    """
    from .constants import GFP_COMP
    zone = vm.zone
    if order > 0:
        gfp |= GFP_COMP
    page = zone.alloc_pages(order, gfp)
    if page is not None or order == 0:
        return page
    if zone.compact_blockskip_flush:
        # kswapd clears stale skip bits before it goes to sleep
        reset_isolation_suitable(zone)
    ev = vm.vmstat.events
    for mode in (MigrateMode.ASYNC, MigrateMode.SYNC_LIGHT):
        result = try_to_compact_pages(vm, order, gfp, mode)
        if result <= CompactResult.INACTIVE:
            continue
        ev["compact_stall"] += 1
        page = zone.alloc_pages(order, gfp)
        if page is not None:
            zone.compact_blockskip_flush = False
            compaction_defer_reset(zone, order, True)
            ev["compact_success"] += 1
            return page
        ev["compact_fail"] += 1
    return None


def kcompactd_do_work(vm: "VM", order: int) -> CompactResult:
    """kcompactd_do_work(): background compaction for an order, SYNC_LIGHT."""
    zone = vm.zone
    vm.vmstat.events["compact_daemon_wake"] += 1
    if compaction_deferred(zone, order):
        return CompactResult.DEFERRED
    if compaction_suitable(zone, order) != CompactResult.CONTINUE:
        return CompactResult.SKIPPED
    cc = CompactControl(zone=zone, order=order, mode=MigrateMode.SYNC_LIGHT, gfp_mask=GFP_KERNEL)
    status = compact_zone(vm, cc)
    if status == CompactResult.SUCCESS:
        compaction_defer_reset(zone, order, False)
    elif status == CompactResult.COMPLETE:
        defer_compaction(zone, order)
    return status
