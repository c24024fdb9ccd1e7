"""A migration storm: a full zone of z3fold objects among slab and LRU pages, random frees,
whole-zone compaction with different seeds, then every object read back byte for byte."""

from __future__ import annotations

import hashlib
import random

from mmplug import VM, NoMemory, VMConfig
from mmplug.compaction import compact_memory
from mmplug.users import LruPages, SlabCache


def _sizes(rng: random.Random, headless_above: int) -> int:
    kind = rng.random()
    if kind < 0.55:
        return rng.randint(1, 800)
    if kind < 0.9:
        return rng.randint(800, 2000)
    return rng.randint(headless_above + 1, 4096)


def storm(host, *, nr_pages: int, seed: int, rounds: int) -> dict:
    """Fill, fragment, compact `rounds` times (a fresh seed each), check; returns a signature."""
    vm = VM(VMConfig(nr_pages=nr_pages), plugins=host)
    pool = vm.create_driver("z3fold")
    slab = SlabCache(vm)
    lru = LruPages(vm)
    rng = random.Random(seed)
    objects: dict[int, bytes] = {}
    while True:
        r = rng.random()
        if r < 0.08:
            if slab.alloc_slab() is None:
                break
        elif r < 0.25:
            if lru.alloc(rng.randbytes(128)) is None:
                break
        else:
            data = rng.randbytes(_sizes(rng, pool.geometry.headless_above))
            try:
                objects[pool.store(data)] = data
            except NoMemory:
                break
    pfns_before = {p.pfn for p in pool.pages()}
    ev = vm.vmstat.events
    for round_seed in range(seed, seed + rounds):
        frees = random.Random(round_seed)
        for handle in frees.sample(sorted(objects), len(objects) // 4):
            pool.free(handle)
            del objects[handle]
        for key in frees.sample(sorted(lru.keys()), len(lru.pages) // 4):
            lru.free(key)
        for page in frees.sample(sorted(slab.slabs, key=lambda p: p.pfn), len(slab.slabs) // 4):
            slab.free_slab(page)
        compact_memory(vm)
        pool.verify()
        pool.run_workqueues()
        pool.verify()
    for handle, data in objects.items():
        assert pool.read(handle) == data
    assert lru.verify() == []
    assert vm.unclaimed_pages() == []
    vm.zone.check_free_lists()
    assert vm.warnings == []
    migrated_in = {p.pfn for p in pool.pages()} - pfns_before
    digest = hashlib.sha256(repr(sorted((h, pool.header_of_handle(h).page.pfn if not h & 1 else h)
                                        for h in objects)).encode()).hexdigest()
    return {"objects": len(objects), "migrated_in": len(migrated_in),
            "pgmigrate_success": ev["pgmigrate_success"], "events": dict(ev), "digest": digest,
            "vm": vm, "pool": pool}


def test_migration_storm_keeps_every_object_intact(host):
    result = storm(host, nr_pages=8192, seed=7, rounds=4)
    assert result["pgmigrate_success"] > 0
    assert result["migrated_in"] > 0  # z3fold pages themselves moved, not only LRU pages
    assert result["objects"] > 1000
    vm, pool = result["vm"], result["pool"]
    vm.destroy_driver(pool)
    vm.zone.check_free_lists()


def test_same_seed_same_storm(host):
    one = storm(host, nr_pages=2048, seed=3, rounds=2)
    two = storm(host, nr_pages=2048, seed=3, rounds=2)
    assert one["digest"] == two["digest"] and one["events"] == two["events"]
    assert one["pgmigrate_success"] > 0
