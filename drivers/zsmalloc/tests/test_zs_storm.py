"""A migration storm: a full zone of zsmalloc objects, slab and LRU pages, fragmented
and compacted again and again; every object must read back byte for byte."""

from __future__ import annotations

import random

import pytest

from mmplug import NoMemory
from mmplug.compaction import alloc_pages_compact, compact_memory
from mmplug.users import LruPages, SlabCache

SIZES = (1, 40, 100, 300, 700, 1000, 1500, 2000, 2900, 3300, 4000, 4096)


def _store_some(pool, rng, data, count):
    for _ in range(count):
        size = rng.choice(SIZES) if rng.random() < 0.7 else rng.randrange(1, 4097)
        payload = rng.randbytes(size)
        try:
            data[pool.store(payload)] = payload
        except NoMemory:
            return False
    return True


@pytest.mark.slow
def test_migration_storm_keeps_every_object(make_pool):
    vm, pool = make_pool(nr_pages=8192)
    slab = SlabCache(vm)
    lru = LruPages(vm)
    rng = random.Random(2024)
    data: dict[int, bytes] = {}
    # Fill the zone, interleaving the pool's pages with unmovable and LRU pages.
    while True:
        r = rng.random()
        if r < 0.85:
            if not _store_some(pool, rng, data, 8):
                break
        elif r < 0.93:
            if slab.alloc_slab() is None:
                break
        elif lru.alloc(rng.randbytes(64)) is None:
            break
    assert len(data) > 5000 and slab.slabs and lru.pages
    pool.verify()
    for seed in (1, 2, 3):
        rng = random.Random(seed)
        for h in rng.sample(sorted(data), len(data) * 2 // 5):
            pool.free(h)
            del data[h]
        for page in rng.sample(sorted(slab.slabs, key=lambda p: p.pfn), len(slab.slabs) // 4):
            slab.free_slab(page)
        for key in rng.sample(sorted(lru.keys()), len(lru.pages) // 4):
            lru.free(key)
        compact_memory(vm)
        if seed != 2:
            assert pool.compact() >= 0
        pool.run_deferred_work()
        pool.verify()
        # Direct compaction (ASYNC then SYNC_LIGHT) for a high order block.
        block = alloc_pages_compact(vm, 4)
        if block is not None:
            vm.cpus.put_page(block)
        _store_some(pool, rng, data, 1500)
        pool.verify()
    compact_memory(vm)
    pool.run_deferred_work()
    assert vm.vmstat["pgmigrate_success"] > 0
    assert pool.pages_compacted > 0
    for h, payload in data.items():
        assert pool.read(h) == payload
    assert lru.verify() == []
    assert vm.unclaimed_pages() == []
    vm.zone.check_free_lists()
    pool.verify()
    vm.destroy_driver(pool)
    assert pool.pages() == [] and vm.unclaimed_pages() == []
    vm.zone.check_free_lists()


def _small_storm(make_pool, seed):
    vm, pool = make_pool(nr_pages=1024)
    rng = random.Random(seed)
    data = {}
    _store_some(pool, rng, data, 600)
    for h in rng.sample(sorted(data), 300):
        pool.free(h)
        del data[h]
    compact_memory(vm)
    pool.compact()
    pool.run_deferred_work()
    return vm.vmstat.snapshot(), [p.pfn for p in pool.pages()], sorted(data)


def test_same_seed_same_storm(make_pool):
    assert _small_storm(make_pool, 11) == _small_storm(make_pool, 11)
