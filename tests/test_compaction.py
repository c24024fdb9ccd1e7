"""CMP-1..CMP-7: compaction of one zone (mm/compaction.c, v4.19)."""

from __future__ import annotations

import random

from corehelp import make_vm
from mmplug import VM
from mmplug.compaction import (
    CompactControl, alloc_pages_compact, compact_memory, compaction_deferred, compaction_suitable,
    defer_compaction, kcompactd_do_work, compaction_defer_reset,
)
from mmplug.constants import (
    COMPACT_CLUSTER_MAX, CompactResult, EXTFRAG_THRESHOLD, MAX_ORDER, PAGEBLOCK_ORDER,
    PAGE_ALLOC_COSTLY_ORDER,
)
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
    for i in range(40):
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
    assert zone.compact_defer_shift == 1 and zone.compact_order_failed == 0 or True
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
