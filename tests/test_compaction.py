"""CMP-1..CMP-7: compaction of one zone (mm/compaction.c, v4.19)."""

from __future__ import annotations

import random

import pytest

from corehelp import Layout, make_vm
from mmplug import VM
from mmplug.compaction import (
    CompactControl,
    alloc_pages_compact,
    compact_memory,
    compaction_defer_reset,
    compaction_deferred,
    compaction_suitable,
    defer_compaction,
    kcompactd_do_work,
)
from mmplug.constants import (
    COMPACT_CLUSTER_MAX,
    EXTFRAG_THRESHOLD,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    MAX_ORDER,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_ORDER,
    CompactResult,
    MigrateMode,
    MigrateType,
)
from mmplug.migrate import putback_movable_pages
from mmplug.users import LruPages, SlabCache


def test_cmp1_constants():
    assert (PAGEBLOCK_ORDER, MAX_ORDER, COMPACT_CLUSTER_MAX, PAGE_ALLOC_COSTLY_ORDER,
            EXTFRAG_THRESHOLD) == (9, 11, 32, 3, 500)
    vm = VM(nr_pages=1024)
    assert vm.zone.pageblock_nr_pages == 512 and vm.zone.max_order == 11


def fragmented(seed=1, nr_pages=4096, keep=0.3):
    vm, pool = make_vm(nr_pages=nr_pages)
    rng = random.Random(seed)
    objs = {}
    while True:
        data = rng.randbytes(rng.randint(1, pool.slot_size))
        try:
            h = pool.store(data)
        except Exception:
            break
        objs[h] = data
    for h in list(objs):
        if rng.random() > keep:
            pool.free(h)
            del objs[h]
    return vm, pool, objs


def test_cmp2_cmp3_whole_zone_compaction_moves_pages_down_and_keeps_data():
    vm, pool, objs = fragmented()
    used_before = sorted(p.pfn for p in pool.pages())
    result = compact_memory(vm)
    assert result == CompactResult.COMPLETE
    used_after = sorted(p.pfn for p in pool.pages())
    assert len(used_after) == len(used_before)
    # the migrate scanner took pages from the bottom, the free scanner gave pages at the top
    assert sum(used_after) > sum(used_before)
    assert all(pool.read(h) == d for h, d in objs.items())
    assert vm.vmstat["pgmigrate_success"] > 0
    assert vm.vmstat["compact_migrate_scanned"] > 0 and vm.vmstat["compact_free_scanned"] > 0
    assert vm.unclaimed_pages() == []
    vm.zone.check_free_lists()
    # fragmentation went down: more free pages in the top order
    assert vm.zone.buddyinfo()[-1] >= 1


def test_cmp3_at_most_32_pages_per_isolation_round():
    from mmplug.compaction import isolate_migratepages
    vm, pool, objs = fragmented(keep=1.0)
    cc = CompactControl(zone=vm.zone, order=-1, ignore_skip_hint=True, whole_zone=True)
    cc.migrate_pfn = vm.zone.start_pfn
    cc.free_pfn = vm.zone.end_pfn - vm.zone.pageblock_nr_pages
    rounds = 0
    while not cc.nr_migratepages and cc.migrate_pfn < cc.free_pfn:
        isolate_migratepages(vm, cc)          # one pageblock per call
        rounds += 1
    assert 0 < cc.nr_migratepages <= COMPACT_CLUSTER_MAX
    assert cc.nr_migratepages == COMPACT_CLUSTER_MAX    # full pages: stops at the cluster size
    from mmplug.migrate import putback_movable_pages
    putback_movable_pages(vm, cc.migratepages)


def test_cmp3_slab_and_compound_pages_are_stepped_over():
    vm, pool = make_vm(nr_pages=1024)
    slab = SlabCache(vm, order=2)
    slabs = [slab.alloc_slab() for _ in range(20)]
    for _ in range(40):
        pool.store(b"x" * 10)
    compact_memory(vm)
    assert all(s.flags & 0x100 for s in slabs)              # still PG_slab, never isolated
    assert vm.vmstat["isolate_attempt"] <= len(pool.pages()) * 2


def test_cmp4_free_scanner_targets_only_movable_blocks():
    from mmplug.constants import MigrateType
    vm, pool, objs = fragmented()
    zone = vm.zone
    top_block = zone.end_pfn - zone.pageblock_nr_pages
    zone.set_pageblock_migratetype(top_block, MigrateType.UNMOVABLE)
    before = {p.pfn for p in zone.iter_pages(top_block, zone.end_pfn) if p._refcount}
    compact_memory(vm)
    after = {p.pfn for p in zone.iter_pages(top_block, zone.end_pfn) if p._refcount}
    assert after <= before                                  # nothing migrated into it


def test_cmp4_unused_targets_go_back_to_the_buddy_allocator():
    vm, pool, objs = fragmented()
    compact_memory(vm)
    in_use = sum(1 for p in vm.zone.pages if p._refcount)
    assert in_use == len(pool.pages())
    assert vm.zone.nr_free_pages == vm.zone.nr_pages - in_use


def test_cmp5_skip_bits_set_and_ignored_for_whole_zone():
    vm, pool = make_vm(nr_pages=2048)
    slab = SlabCache(vm)
    # fill the first pageblock with slab pages: nothing there can be isolated
    while vm.zone.nr_free_pages > 2048 - 64:
        slab.alloc_slab()
    for _ in range(50):
        pool.store(b"y")
    result = kcompactd_do_work(vm, 3)
    skips = bytes(vm.zone.pageblock_skip)
    if result not in (CompactResult.SKIPPED, CompactResult.DEFERRED, CompactResult.SUCCESS):
        assert any(skips)
    vm.zone.pageblock_skip[:] = b"\x01" * len(vm.zone.pageblock_skip)
    compact_memory(vm)                                      # ignores every skip bit
    assert vm.vmstat["compact_migrate_scanned"] > 0


def test_cmp6_direct_compaction_stops_when_a_block_of_the_order_exists():
    vm, pool, objs = fragmented(seed=3, keep=0.25)
    nr_free = vm.zone.buddyinfo()
    order = max(o for o, n in enumerate(nr_free) if n) + 1   # no free block this big yet
    assert order < vm.zone.max_order
    page = alloc_pages_compact(vm, order)
    assert page is not None
    assert vm.vmstat["compact_stall"] >= 1 and vm.vmstat["compact_success"] == 1
    assert all(pool.read(h) == d for h, d in objs.items())


def test_cmp6_suitability():
    vm, pool = make_vm(nr_pages=1024)
    assert compaction_suitable(vm.zone, -1) == CompactResult.CONTINUE
    assert compaction_suitable(vm.zone, 3) == CompactResult.SUCCESS   # empty zone: already fine


def test_cmp7_deferral_backs_off_exponentially():
    vm = VM(nr_pages=1024, pageblock_order=6, max_order=8)
    zone = vm.zone
    defer_compaction(zone, 4)
    assert zone.compact_defer_shift == 1 and zone.compact_order_failed == 0
    zone.compact_order_failed = 4
    skipped = [compaction_deferred(zone, 4) for _ in range(3)]
    assert skipped == [True, False, False]                  # 1 << 1 = 2 attempts
    for _ in range(10):
        defer_compaction(zone, 4)
    assert zone.compact_defer_shift == 6
    assert sum(compaction_deferred(zone, 4) for _ in range(64)) == 63
    assert not compaction_deferred(zone, 3)                 # lower orders are not deferred
    compaction_defer_reset(zone, 4, True)
    assert zone.compact_defer_shift == 0 and zone.compact_order_failed == 5


def test_lru_pages_are_migrated_by_the_vm_and_pinned_ones_stay():
    vm, pool = make_vm(nr_pages=1024)
    lru = LruPages(vm)
    rng = random.Random(5)
    keys = [lru.alloc(rng.randbytes(64)) for _ in range(400)]
    for k in keys[::2]:
        lru.free(k)
    live = list(lru.keys())
    pinned = live[0]
    lru.pin(pinned)
    pinned_pfn = lru.pages[pinned].pfn
    compact_memory(vm)
    assert lru.verify() == []
    assert lru.pages[pinned].pfn == pinned_pfn
    assert vm.vmstat["pgmigrate_success"] > 0 and vm.zone.nr_isolated_lru == 0
    lru.unpin(pinned)
    assert vm.unclaimed_pages() == []


# --- v4.19 line by line, on hand-built zones (docs/fidelity.md) ----------------------------

def _cc(vm, **kw):
    zone = vm.zone
    cc = CompactControl(zone=zone, **kw)
    cc.migrate_pfn = zone.start_pfn
    cc.free_pfn = zone.end_pfn - zone.pageblock_nr_pages
    return cc


def test_scanner_puts_isolated_pages_at_the_head_and_migration_takes_them_from_it():
    """isolate_migratepages_block list_add()s (mm/compaction.c:887): the list runs from
    the highest pfn down, and migrate_pages (mm/migrate.c:1417) walks it from the head.

    Pageblocks of 8 pages.  Block 0 = D D D U U U U U, block 1 all U, block 2 = U and
    free pages 17 (order 0), 18-19 (order 1), 20-23 (order 2).  One isolation round
    takes pfns 0, 1, 2 -> list [2, 1, 0].  The first compaction_alloc runs the free
    scanner over block 2 (low_pfn = pageblock_end_pfn(8) = 16): it isolates 17, then
    18-19, and stops with 3 >= 3 targets; map_pages leaves 19 at the head, then 18, 17.
    So page 2 goes to 19, page 1 to 18, page 0 to 17 (appending would have sent 0 to 19).
    """
    from mmplug.compaction import ISOLATE_SUCCESS, isolate_migratepages
    lay = Layout("DDDUUUUU" "UUUUUUUU" "U.......")
    vm = lay.vm
    cc = _cc(vm, order=-1, ignore_skip_hint=True, whole_zone=True)
    assert isolate_migratepages(vm, cc) == ISOLATE_SUCCESS
    assert [p.pfn for p in cc.migratepages] == [2, 1, 0]
    putback_movable_pages(vm, cc.migratepages)
    result = compact_memory(vm)
    assert result == CompactResult.COMPLETE
    assert (lay.pfn_of(2), lay.pfn_of(1), lay.pfn_of(0)) == (19, 18, 17)
    assert lay.intact()
    vm.zone.check_free_lists()


def test_kcompactd_defers_after_partial_skipped_and_counts_its_scans():
    """kcompactd_do_work (mm/compaction.c:2032-2053) defers after PARTIAL_SKIPPED as after
    COMPLETE, and counts compact_daemon_migrate/free_scanned (vmstat.c:1231-1233).

    Four blocks of 8 pages, each U . U . U . U . : 16 free order-0 pages, no block of
    order 2.  compaction_suitable(2): not SUCCESS; 16 > min 0 + compact_gap 8: CONTINUE.
    An earlier compaction reset the cached positions (free pfn 24) and a later one left
    the cached SYNC migrate pfn at 8, so the run is not whole-zone: the migrate scanner scans
    blocks 1 and 2 (16 pfns, nothing to isolate), meets the free scanner at block 3 and
    returns PARTIAL_SKIPPED -> defer_compaction: shift 1.  The next wake is deferred
    (considered 1 < 1 << 1).
    """
    from mmplug.compaction import reset_cached_positions
    lay = Layout("U.U.U.U." * 4)
    vm, zone = lay.vm, lay.vm.zone
    reset_cached_positions(zone)
    zone.compact_cached_migrate_pfn[1] = 8
    assert compaction_suitable(zone, 2) == CompactResult.CONTINUE
    assert kcompactd_do_work(vm, 2) == CompactResult.PARTIAL_SKIPPED
    assert zone.compact_defer_shift == 1 and zone.compact_considered == 0
    # update_pageblock_skip (291-322): blocks 1 and 2 scanned in vain; reset_cached_positions
    # (213-219) when the scanners met
    assert list(zone.pageblock_skip) == [0, 1, 1, 0]
    assert zone.compact_cached_migrate_pfn == [0, 0] and zone.compact_cached_free_pfn == 24
    assert vm.vmstat["compact_daemon_migrate_scanned"] == 16
    assert vm.vmstat["compact_migrate_scanned"] == 16
    assert vm.vmstat["compact_daemon_free_scanned"] == 0
    assert kcompactd_do_work(vm, 2) == CompactResult.DEFERRED
    assert vm.vmstat["compact_daemon_wake"] == 2


def test_not_suitable_zone_reaches_callers_as_skipped():
    """compaction_suitable (mm/compaction.c:1501-1509): a costly order whose failure would
    be for lack of memory is COMPACT_NOT_SUITABLE_ZONE, which callers only see as SKIPPED.

    128 pages in blocks of 8; blocks 0, 2, 4, 6, 8 free (5 free blocks of order 3, their
    buddies in use), the rest U.  Order 4: no free block of order 4; order-0 check: 40 free
    pages > low 0 + compact_gap(4) 32 -> CONTINUE.  fragmentation_index(4) = 1000 - (1000 +
    40 * 1000 / 16) / 5 = 300, within 0..500 -> NOT_SUITABLE_ZONE -> SKIPPED.
    """
    from mmplug.compaction import compact_zone, compaction_suitable_at
    lay = Layout(("........" "UUUUUUUU") * 5 + "UUUUUUUU" * 6, max_order=6)
    zone = lay.vm.zone
    assert zone.buddyinfo()[3] == 5 and sum(zone.buddyinfo()[4:]) == 0
    assert compaction_suitable_at(zone, 4, zone.nr_free_pages) == CompactResult.CONTINUE
    assert compaction_suitable(zone, 4) == CompactResult.SKIPPED
    cc = CompactControl(zone=zone, order=4, mode=MigrateMode.SYNC_LIGHT)
    assert compact_zone(lay.vm, cc) == CompactResult.SKIPPED
    assert kcompactd_do_work(lay.vm, 4) == CompactResult.SKIPPED


def test_free_scanner_never_takes_a_free_pageblock_even_at_full_priority():
    """suitable_migration_target (mm/compaction.c:1033-1045): a block that is one free
    block of pageblock order or more is refused before ignore_block_suitable is looked at."""
    from mmplug.compaction import suitable_migration_target
    vm = VM(nr_pages=64, pageblock_order=3, max_order=5, min_free_pages=0)
    cc = CompactControl(zone=vm.zone, ignore_block_suitable=True)
    assert vm.zone.pfn_to_page(0).private == 4            # pfn 0 heads a free order-4 block
    assert not suitable_migration_target(cc, 0)
    vm.zone.set_pageblock_migratetype(8, MigrateType.UNMOVABLE)
    page = vm.zone.alloc_pages(0, 0)                      # breaks up a block: no longer whole
    assert page is not None
    block = page.pfn & ~7
    assert suitable_migration_target(cc, block)           # ignore_block_suitable: any type
    cc.ignore_block_suitable = False
    assert not suitable_migration_target(cc, block)       # UNMOVABLE now


def test_reset_isolation_suitable_keeps_skip_bits_of_pageblock_sized_compound_pages():
    """__reset_isolation_suitable (mm/compaction.c:253-266) skips pageblock_skip_persistent
    blocks (226-237): a compound page of pageblock order or more keeps its block's bit."""
    from mmplug.compaction import pageblock_skip_persistent, reset_isolation_suitable
    from mmplug.constants import GFP_COMP
    vm = VM(nr_pages=64, pageblock_order=3, max_order=5, min_free_pages=0)
    zone = vm.zone
    big = zone.alloc_pages(3, GFP_KERNEL | GFP_COMP)       # covers one whole pageblock
    small = zone.alloc_pages(2, GFP_KERNEL | GFP_COMP)     # half a pageblock: not persistent
    assert pageblock_skip_persistent(zone, big.pfn)
    assert not pageblock_skip_persistent(zone, small.pfn)
    zone.pageblock_skip[:] = b"\x01" * len(zone.pageblock_skip)
    reset_isolation_suitable(zone)
    assert [i for i, b in enumerate(zone.pageblock_skip) if b] == [big.pfn >> 3]


def test_too_many_isolated_lru_pages_abort_async_and_block_sync_compaction():
    """too_many_isolated (mm/compaction.c:659-671, 713-722): isolated LRU pages > half of
    those on the LRU: ASYNC returns 0 -> ISOLATE_ABORT (1296) -> COMPACT_CONTENDED (1622);
    SYNC waits in congestion_wait(), which one CPU can never leave.

    Block 0 = L L L L U U U U, block 1 U, blocks 2 and 3 U . U . U . U . (8 free pages,
    no free block of order 1: compaction_suitable(1) is CONTINUE, 8 > compact_gap 4).
    A first compactor isolates the four LRU pages (isolated 4 > on the LRU 0 / 2).  The
    zone has been compacted before (its cached positions are reset_cached_positions()'s).
    """
    from mmplug.compaction import (
        compact_zone,
        isolate_migratepages,
        reset_cached_positions,
        too_many_isolated,
    )
    from mmplug.errors import Deadlock
    lay = Layout("LLLLUUUU" "UUUUUUUU" "U.U.U.U." "U.U.U.U.")
    vm, zone = lay.vm, lay.vm.zone
    assert zone.nr_lru == 4 and not too_many_isolated(zone)
    reset_cached_positions(zone)
    first = _cc(vm, order=-1, ignore_skip_hint=True)
    isolate_migratepages(vm, first)
    assert zone.nr_isolated_lru == 4 and zone.nr_lru == 0 and too_many_isolated(zone)
    direct = CompactControl(zone=zone, order=1, mode=MigrateMode.ASYNC, direct_compaction=True,
                            gfp_mask=GFP_HIGHUSER_MOVABLE)
    assert compact_zone(vm, direct) == CompactResult.CONTENDED
    assert vm.vmstat["compact_migrate_scanned"] == 0
    sync = CompactControl(zone=zone, order=-1, mode=MigrateMode.SYNC, whole_zone=True,
                          ignore_skip_hint=True)
    with pytest.raises(Deadlock, match="too_many_isolated"):
        compact_zone(vm, sync)
    putback_movable_pages(vm, sync.migratepages)
    putback_movable_pages(vm, first.migratepages)
    assert zone.nr_isolated_lru == 0 and zone.nr_lru == 4
    assert compact_memory(vm) == CompactResult.COMPLETE
    assert lay.lru.verify() == [] and zone.nr_lru == 4


def test_need_resched_makes_async_back_off_and_sync_reschedule():
    """compact_should_abort (mm/compaction.c:413-426): need_resched() sets cc->contended in
    ASYNC mode (COMPACT_CONTENDED, 1328); SYNC calls cond_resched() and carries on."""
    lay = Layout("DDDUUUUU" "UUUUUUUU" "U.......")
    vm = lay.vm
    task = vm.cpus.current()
    task.need_resched = True
    from mmplug.compaction import compact_zone
    cc = CompactControl(zone=vm.zone, order=-1, mode=MigrateMode.ASYNC, whole_zone=True)
    assert compact_zone(vm, cc) == CompactResult.CONTENDED and cc.contended
    assert vm.vmstat["pgmigrate_success"] == 0 and task.need_resched
    assert compact_memory(vm) == CompactResult.COMPLETE      # SYNC: cond_resched()
    assert not task.need_resched and vm.vmstat["pgmigrate_success"] == 3


def test_fatal_signal_stops_every_compaction():
    """__compact_finished (mm/compaction.c:1328): a pending fatal signal is COMPACT_CONTENDED
    before anything is scanned, whatever the mode; kcompactd does not defer on it (2034).

    14 free order-0 pages, no free block of order 2: compaction_suitable(2) is CONTINUE.
    """
    lay = Layout("DDDU.U.U" + "U.U.U.U." * 3)
    vm, zone = lay.vm, lay.vm.zone
    vm.cpus.current().sigkill_pending = True
    assert compact_memory(vm) == CompactResult.CONTENDED
    assert compaction_suitable(zone, 2) == CompactResult.CONTINUE
    assert kcompactd_do_work(vm, 2) == CompactResult.CONTENDED
    assert vm.vmstat["compact_migrate_scanned"] == 0 and vm.vmstat["pgmigrate_success"] == 0
    assert zone.compact_defer_shift == 0
    vm.cpus.current().sigkill_pending = False
    assert compact_memory(vm) == CompactResult.COMPLETE and lay.intact()


def test_compaction_restarting_forgets_skip_bits_after_the_longest_deferral():
    """compaction_restarting (mm/compaction.c:194-201): deferred to the limit (shift 6, 64
    attempts considered) -> compact_zone clears the skip bits first (1579-1580)."""
    from mmplug.compaction import compact_zone, compaction_restarting
    lay = Layout("DDDU.U.U" + "U.U.U.U." * 3)
    vm, zone = lay.vm, lay.vm.zone
    for _ in range(7):
        defer_compaction(zone, 2)
    assert zone.compact_defer_shift == 6
    assert sum(compaction_deferred(zone, 2) for _ in range(64)) == 63
    assert compaction_restarting(zone, 2)
    zone.pageblock_skip[:] = b"\x01" * 4
    cc = CompactControl(zone=zone, order=2, mode=MigrateMode.SYNC_LIGHT,
                        gfp_mask=GFP_HIGHUSER_MOVABLE)
    compact_zone(vm, cc)
    assert vm.vmstat["pgmigrate_success"] > 0          # block 0 was scanned again
