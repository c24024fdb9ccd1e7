"""A store's and a read's copy on one CPU: the short way leaves what map, copy and unmap leave."""

from __future__ import annotations

import hashlib
import random

import pytest

from mmplug.compaction import compact_memory
from mmplug.constants import ISOLATE_ASYNC_MIGRATE
from mmplug.cpus.scheduler import Scheduler
from mmplug.migrate import PageList, isolate_movable_page
from mmplug_zsmalloc.pool import ZsPool

SIZES = (1, 40, 300, 1000, 2049, 3300, 4096)   # small, spanning two subpages, huge


def _history(pool, vm, steps, seed: int) -> list:
    """A seeded history of stores, reads, frees, pins, migrations and compactions: what
    it read."""
    rng = random.Random(seed)
    live: list[int] = []
    seen: list = []
    for step in range(2000):
        op = rng.random()
        if op < 0.5 or not live:
            try:
                live.append(pool.store(rng.randbytes(rng.choice(SIZES))))
            except Exception as exc:
                seen.append(type(exc).__name__)
        elif op < 0.68:
            seen.append(pool.read(rng.choice(live)))
        elif op < 0.85:
            handle = live.pop(rng.randrange(len(live)))
            pool.free(handle)
        elif op < 0.88:
            handle = rng.choice(live)
            if handle in pool.knob_pins:
                pool.unpin(handle)
            else:
                pool.pin(handle)   # a pinned object: its reads take the long way
        elif op < 0.98:
            pool.run_deferred_work()
            pages = pool.pages()
            pagelist = PageList()
            for page in rng.sample(pages, min(4, len(pages))):
                if isolate_movable_page(vm, page, ISOLATE_ASYNC_MIGRATE) == 0:
                    pagelist.add(page)
            steps.migrate(vm, pagelist)
        else:
            compact_memory(vm)
        if step % 100 == 0:
            pool.verify()
    seen.extend(pool.read(h) for h in live)
    return seen


def _state(vm, pool) -> tuple:
    zone_bytes = hashlib.sha256(vm.zone.view).hexdigest()
    words = sorted(pool.handles.items())
    preempt_count = vm.cpus.current().preempt_count
    zspages = [(z.inuse, z.freeobj, z.fullness, z.lock.readers, z.lock.writer)
               for z in pool.zspages]
    return zone_bytes, words, preempt_count, zspages, dict(vm.vmstat.events)


def test_one_cpu_short_way_matches_map_copy_unmap(make_pool, steps):
    results = []
    taken = []
    for short in (True, False):
        vm, pool = make_pool(nr_pages=1024)
        assert pool.uniprocessor
        pool.uniprocessor = short
        real = pool._uncontended
        pool._uncontended = lambda *a, real=real: taken.append(real(*a)) or taken[-1]
        seen = _history(pool, vm, steps, seed=11)
        assert vm.vmstat["pgmigrate_success"] > 20
        results.append((seen, _state(vm, pool)))
    # both ways were exercised on the short run: copies in place and ones that step aside
    assert any(at is not None for at in taken) and any(at is None for at in taken)
    assert results[0] == results[1]


def test_the_short_way_is_the_same_place_as_the_long_way(make_pool):
    """For every object, _uncontended() points where _map() does; for one that runs into
    the next subpage, the rest is at the start of that subpage, and the short way reads
    what _map() and copy_from_object() read."""
    vm, pool = make_pool(nr_pages=1024)
    rng = random.Random(3)
    handles = [pool.store(rng.randbytes(rng.choice(SIZES))) for _ in range(400)]
    page_size, start = vm.zone.page_size, vm.zone.start_pfn
    split = 0
    for h in handles:
        length = pool.lengths[h]
        where = pool._uncontended(h, length)
        cls, zspage, page, off = pool._map(h)
        pool._unmap(h, zspage)
        assert where is not None
        at, head, at_next = where
        assert at == (page.pfn - start) * page_size + off
        assert head == min(length, page_size - off)
        if head < length:
            split += 1
            assert at_next == (pool.struct_pages.get_next_page(page).pfn - start) * page_size
            pool.uniprocessor = False
            long_way = pool.read(h)
            pool.uniprocessor = True
            assert pool.read(h) == long_way
    assert 0 < split < len(handles)
    assert vm.cpus.current().preempt_count == 0
    assert not any(word & 1 for _, word in pool.handles.items())


@pytest.mark.parametrize("in_the_way", ["pinned", "write_locked"])
def test_what_is_in_the_way_takes_the_long_way(make_pool, in_the_way):
    """A pinned handle or a write-locked zspage: the short way steps aside, and the long
    way meets them as it always did."""
    vm, pool = make_pool(nr_pages=512)
    h = pool.store(b"y" * 100)
    assert pool._uncontended(h, 100) is not None
    if in_the_way == "pinned":
        pool.pin(h)
        assert pool._uncontended(h, 100) is None
        assert pool.read(h) == b"y" * 100             # the pinning user reads its own object
        pool.unpin(h)
    else:
        zspage = pool.location(h)[0].private
        zspage.lock.write_lock()
        assert pool._uncontended(h, 100) is None
        with pytest.raises(Exception, match="read_lock"):
            pool.read(h)                              # the long way meets the held lock
        return
    assert pool._uncontended(h, 100) is not None
    assert pool.read(h) == b"y" * 100


def test_several_cpus_never_take_the_short_way(make_pool):
    vm, pool = make_pool(nr_pages=512, cpus=Scheduler(2))
    assert not pool.uniprocessor
    assert isinstance(pool, ZsPool)


def _whole_state(vm, pool) -> tuple:
    """Everything a store or a free may change: zone bytes, handles, zspages, class lists."""
    lists = [[[z.first_page.pfn for z in lst] for lst in cls.fullness_list] + [list(cls.stats)]
             for cls in pool.size_class]
    return (_state(vm, pool), sorted(pool.lengths.items()), lists, pool.pages_allocated,
            pool.handles._next, len(pool.workqueue.pending))


def test_one_cpu_store_free_and_split_read_are_taken_and_match_the_general_path(
        make_pool, steps, monkeypatch):
    """A history's stores, frees and reads of objects that span two subpages take the
    one-CPU ways, and it ends as it does through the general path."""
    taken: dict[str, list] = {"store": [], "free": [], "read": []}
    results = []
    for short in (True, False):
        vm, pool = make_pool(nr_pages=1024)
        pool.uniprocessor = short
        for name, key in (("_malloc_write_one_cpu", "store"), ("_free_one_cpu", "free"),
                          ("_uncontended", "read")):
            real = getattr(pool, name)
            monkeypatch.setattr(pool, name, lambda *a, real=real, key=key:
                                taken[key].append(real(*a)) or taken[key][-1])
        seen = _history(pool, vm, steps, seed=7)
        results.append((seen, _whole_state(vm, pool)))
    assert results[0] == results[1]
    assert any(taken["store"]) and any(taken["free"])
    assert any(not h for h in taken["store"])    # a class with no zspage: zs_malloc makes one
    # reads inside one subpage and reads that run into the next one
    nexts = [where[2] for where in taken["read"] if where is not None]
    assert any(nexts) and not all(nexts)


def test_one_cpu_free_of_a_pinned_handle_changes_nothing(make_pool):
    vm, pool = make_pool(nr_pages=512)
    h = pool.store(b"z" * 300)
    pool.pin(h)
    before = _whole_state(vm, pool)
    assert pool._free_one_cpu(h) is False
    assert _whole_state(vm, pool) == before
    pool.free(h)    # the pinning user frees its own object: the pin goes with it
    pool.verify()


def test_one_cpu_store_into_a_class_without_zspages_changes_nothing(make_pool):
    vm, pool = make_pool(nr_pages=512)
    before = _whole_state(vm, pool)
    assert pool._malloc_write_one_cpu(b"q" * 700) == 0
    assert _whole_state(vm, pool) == before
