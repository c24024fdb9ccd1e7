"""A migration storm: a full zone of balloon, slab and LRU pages, fragmented, compacted."""

from __future__ import annotations

import random

import pytest

from mmplug import NoMemory
from mmplug.compaction import compact_memory
from mmplug.users import LruPages, SlabCache

NR_PAGES = 8192


def fill_and_fragment(vm, balloon, seed):
    """Fill the zone with a seeded mix of users, then deflate half the balloon at random."""
    rng = random.Random(seed)
    slab = SlabCache(vm, "kmalloc-512")
    lru = LruPages(vm)
    while True:
        roll = rng.random()
        if roll < 0.70:
            try:
                balloon.store(b"")
            except NoMemory:
                break
        elif roll < 0.85:
            if lru.alloc(rng.randbytes(16)) is None:
                break
        elif slab.alloc_slab() is None:
            break
    handles = list(balloon.handles)
    for handle in rng.sample(handles, len(handles) // 2):
        balloon.free(handle)
    for key in rng.sample(list(lru.keys()), len(lru.pages) // 3):
        lru.free(key)
    balloon.verify()
    return slab, lru


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_storm_compaction_keeps_host_and_balloon_in_step(make_balloon, seed):
    vm, balloon = make_balloon(nr_pages=NR_PAGES)
    rng = random.Random(seed)
    slab, lru = fill_and_fragment(vm, balloon, seed)
    for round_ in range(4):
        tokens = {h: balloon.read(h) for h in balloon.handles}
        before = vm.vmstat["balloon_migrate"]
        compact_memory(vm)
        balloon.verify()
        assert vm.vmstat["balloon_migrate"] > before, round_
        assert {h: balloon.read(h) for h in balloon.handles} == tokens
        assert not vm.unclaimed_pages()
        vm.zone.check_free_lists()
        # Churn between rounds: deflate some pages at random, inflate some back.
        for handle in rng.sample(list(balloon.handles), len(balloon.handles) // 5):
            balloon.free(handle)
        balloon.inflate(rng.randint(50, 300))
        balloon.verify()
    assert vm.vmstat["pgmigrate_success"] > 0
    assert balloon.host.ballooned == {p.pfn for p in balloon.pages()}
    assert balloon.vb_dev_info.isolated_pages == 0
    assert not lru.verify()
    vm.destroy_driver(balloon)
    assert not balloon.host.ballooned
    vm.zone.check_free_lists()


def test_storm_with_the_balloon_busy_moves_no_balloon_page(make_balloon):
    vm, balloon = make_balloon(nr_pages=NR_PAGES)
    fill_and_fragment(vm, balloon, 4)
    pages = set(balloon.pages())
    balloon.hold()
    compact_memory(vm)
    balloon.release()
    assert set(balloon.pages()) == pages and vm.vmstat["balloon_migrate"] == 0
    assert vm.vmstat["migrate_eagain"] > 0
    balloon.verify()
    assert not vm.unclaimed_pages()
    vm.zone.check_free_lists()
    compact_memory(vm)
    assert vm.vmstat["balloon_migrate"] > 0
    balloon.verify()


def test_direct_compaction_for_a_high_order_allocation_moves_balloon_pages(make_balloon):
    from mmplug.compaction import alloc_pages_compact

    vm, balloon = make_balloon(nr_pages=NR_PAGES)
    fill_and_fragment(vm, balloon, 5)
    free_blocks = vm.zone.buddyinfo()
    # the smallest order with no free block left: only compaction can make one
    order = next(o for o in range(len(free_blocks)) if not any(free_blocks[o:]))
    page = alloc_pages_compact(vm, order)
    assert vm.vmstat["compact_stall"] > 0 and vm.vmstat["balloon_migrate"] > 0
    balloon.verify()
    assert not vm.unclaimed_pages([page] if page is not None else [])
