"""A store's and a read's copy on one CPU: the short way leaves what map, copy and unmap leave."""

from __future__ import annotations

import hashlib
import random

from mmplug.compaction import compact_memory
from mmplug.cpus.scheduler import Scheduler
from mmplug_z3fold import access
from mmplug_z3fold.flags import MIDDLE_CHUNK_MAPPED


def _history(pool, vm, steps, seed: int) -> list:
    """A seeded history of stores, reads, frees, held maps, migrations and compactions:
    what it read."""
    rng = random.Random(seed)
    live: list[int] = []
    seen = []
    for step in range(1500):
        op = rng.random()
        if op < 0.55 or not live:
            try:
                live.append(pool.store(rng.randbytes(rng.randint(1, 1800))))
            except Exception as exc:
                seen.append(type(exc).__name__)
        elif op < 0.7:
            seen.append(pool.read(rng.choice(live)))
        elif op < 0.85:
            pool.free(live.pop(rng.randrange(len(live))))
        elif op < 0.88:
            handle = rng.choice(live)
            if handle in pool.held_maps:
                pool.unmap(handle)
            else:
                pool.map(handle)   # a MIDDLE object kept mapped: its page refuses migration
        elif op < 0.98:
            pool.run_workqueues()
            st = steps(vm)
            for page in rng.sample(pool.pages(), min(4, len(pool.pages()))):
                st.isolate(page)
            st.migrate()
        else:
            compact_memory(vm)
        if step % 100 == 0:
            pool.verify()
    seen.extend(pool.read(h) for h in live)
    return seen


def _state(vm, pool) -> tuple:
    zone = vm.zone
    digest = hashlib.sha256()
    for page in zone.pages:
        digest.update(zone.page_address(page))
    headers = sorted((pfn, z.mapped_count, z.page.private, z.first_chunks, z.middle_chunks,
                      z.last_chunks, z.start_middle, z.first_num, z.refcount)
                     for pfn, z in pool.headers.items())
    return digest.hexdigest(), headers, dict(vm.vmstat.events)


def test_one_cpu_short_way_matches_map_copy_unmap(make_pool, steps):
    results = []
    for short in (True, False):
        vm, pool = make_pool(nr_pages=1024)
        assert pool.uniprocessor
        pool.uniprocessor = short
        seen = _history(pool, vm, steps, seed=11)
        assert vm.vmstat["pgmigrate_success"] > 20
        results.append((seen, _state(vm, pool)))
    assert results[0] == results[1]


def test_the_short_way_is_taken_and_clears_middle_chunk_mapped(make_pool, monkeypatch):
    vm, pool = make_pool(nr_pages=512)
    taken = []
    real = access._uncontended
    monkeypatch.setattr(access, "_uncontended",
                        lambda *a: taken.append(real(*a)) or taken[-1])
    handles = [pool.store(b"x" * 500) for _ in range(3)]   # FIRST, LAST, MIDDLE of one page
    assert all(at is not None for at in taken)
    for h in handles:
        assert pool.read(h) == b"x" * 500
        assert not pool.header_of_handle(h).page.private >> MIDDLE_CHUNK_MAPPED & 1


def test_a_locked_header_takes_the_long_way(make_pool):
    """With the header's lock held the short way steps aside: the long way then meets the
    lock as it always did."""
    vm, pool = make_pool(nr_pages=512)
    h = pool.store(b"y" * 100)
    zhdr = pool.header_of_handle(h)
    assert access._uncontended(pool, h, 100) is not None
    zhdr.page_lock.lock()
    assert access._uncontended(pool, h, 100) is None
    zhdr.page_lock.unlock()


def test_several_cpus_never_take_the_short_way(make_pool):
    vm, pool = make_pool(nr_pages=512, cpus=Scheduler(2))
    assert not pool.uniprocessor


def test_this_cpu_is_smp_processor_id(make_pool):
    """One CPU answers 0 without asking, as smp_processor_id() would; several CPUs ask."""
    from mmplug.kernel import smp_processor_id
    vm, pool = make_pool(nr_pages=512)
    assert pool.uniprocessor and pool.this_cpu() == smp_processor_id(vm) == 0
    vm, pool = make_pool(nr_pages=512, cpus=Scheduler(2))
    seen = []
    vm.cpus.run([lambda: seen.append((pool.this_cpu(), smp_processor_id(vm))) for _ in range(2)])
    assert sorted(seen) == [(0, 0), (1, 1)]


def _rotated_history(pool) -> list:
    """Pages whose MIDDLE object became FIRST (first_num rotated by in-page compaction),
    filled again and emptied: what each free left behind."""
    seen = []
    for round_ in range(6):
        first, last, middle = (pool.store(bytes([round_ + i]) * 500) for i in range(3))
        pool.free(first)
        pool.free(last)
        pool.run_workqueues()
        zhdr = pool.header_of_handle(middle)
        more = [pool.store(bytes([i]) * 300) for i in range(2)]
        seen.append((zhdr.first_num, [pool.header_of_handle(h) is zhdr for h in more]))
        for h in (*more, middle):
            seen.append(pool.read(h))
            pool.free(h)
            seen.append((zhdr.first_chunks, zhdr.middle_chunks, zhdr.last_chunks,
                         zhdr.page.private, sorted(pool.objects)))
        pool.run_workqueues()
    return seen


def test_one_cpu_free_reads_the_slot_once_as_the_three_reads_do(make_pool):
    """z3fold_free on one CPU takes header, buddy and slots from one read of the slot; the
    same frees on pages whose first_num is rotated leave what the three reads leave."""
    results = []
    for short in (True, False):
        vm, pool = make_pool(nr_pages=512)
        pool.uniprocessor = short
        seen = _rotated_history(pool)
        pool.verify()
        results.append((seen, _state(vm, pool)))
    assert results[0] == results[1]
    rotated = [s for s in results[0][0] if isinstance(s, tuple) and len(s) == 2]
    assert any(first_num for first_num, _ in rotated)
    assert any(all(same) for first_num, same in rotated if first_num)


def _whole_state(vm, pool) -> tuple:
    """Everything a store or a free may change: zone bytes, headers, lists, slots, queues."""
    headers = sorted((pfn, z.page.private, z.first_chunks, z.middle_chunks, z.last_chunks,
                      z.start_middle, z.first_num, z.refcount, z.cpu, z.foreign_handles,
                      z.buddy.name if z.buddy is not None else None, z.page_lock.held,
                      z.slots.addr if z.slots is not None else None)
                     for pfn, z in pool.headers.items())
    slots = sorted((key, tuple(s.slot)) for key, s in pool.slots_cache.live.items())
    lists = [[z.page.pfn for z in lst.entries] for lst in pool.unbuddied_of(0)]
    return (_state(vm, pool), headers, slots, lists, [p.pfn for p in pool.lru.pages],
            len(pool.compact_wq), len(pool.release_wq), pool.pages_nr,
            vm.cpus.current().preempt_count, sorted(pool.objects.items()))


def test_one_cpu_store_and_free_are_taken_and_match_the_general_path(make_pool, steps,
                                                                      monkeypatch):
    """The one-CPU store (z3fold_alloc + copy) and free (z3fold_free) are what a history's
    stores and frees take, and the history ends as it does through the general path."""
    from mmplug_z3fold import alloc, instance
    taken: dict[str, list] = {"store": [], "free": []}
    real_store, real_free = alloc.z3fold_alloc_one_cpu, alloc.z3fold_free_one_cpu
    monkeypatch.setattr(instance, "z3fold_alloc_one_cpu",
                        lambda *a: taken["store"].append(real_store(*a)) or taken["store"][-1])
    monkeypatch.setattr(alloc, "z3fold_free_one_cpu",
                        lambda *a: taken["free"].append(real_free(*a)) or taken["free"][-1])
    results = []
    for short in (True, False):
        vm, pool = make_pool(nr_pages=1024)
        pool.uniprocessor = short
        seen = _history(pool, vm, steps, seed=5)
        results.append((seen, _whole_state(vm, pool)))
    assert results[0] == results[1]
    assert sum(h is not None for h in taken["store"]) > 500
    assert sum(bool(done) for done in taken["free"]) > 100


def test_one_cpu_store_steps_aside_from_a_page_that_needs_compacting(make_pool):
    """__z3fold_alloc() would skip (and unlist) the page: the one-CPU store changes
    nothing and leaves it to the general path."""
    from mmplug_z3fold import alloc
    from mmplug_z3fold.flags import NEEDS_COMPACTING
    vm, pool = make_pool(nr_pages=512)
    a = pool.store(b"a" * 300)
    b = pool.store(b"b" * 300)
    zhdr = pool.header_of_handle(b)
    pool.free(a)    # compaction queued: the page is listed and NEEDS_COMPACTING
    assert zhdr.page.private >> NEEDS_COMPACTING & 1 and zhdr.buddy is not None
    before = _whole_state(vm, pool)
    assert alloc.z3fold_alloc_one_cpu(pool, b"c" * 300) is None
    assert _whole_state(vm, pool) == before


def test_one_cpu_store_steps_aside_while_the_pool_lock_is_held(make_pool):
    from mmplug_z3fold import alloc
    vm, pool = make_pool(nr_pages=512)
    pool.store(b"a" * 300)
    before = _whole_state(vm, pool)
    pool.lock.lock()
    assert alloc.z3fold_alloc_one_cpu(pool, b"c" * 300) is None
    pool.lock.unlock()
    assert _whole_state(vm, pool) == before


def test_one_cpu_free_steps_aside_from_a_claimed_page(make_pool, steps):
    """An isolated page is claimed: the free changes nothing and z3fold_free() finds the
    claim, as it always did (the object's chunks go, its slot stays for migration)."""
    from mmplug_z3fold import alloc
    vm, pool = make_pool(nr_pages=512)
    a = pool.store(b"a" * 300)
    pool.store(b"b" * 300)
    st = steps(vm)
    assert st.isolate(pool.header_of_handle(a).page)
    before = _whole_state(vm, pool)
    assert alloc.z3fold_free_one_cpu(pool, a) is False
    assert _whole_state(vm, pool) == before
    pool.free(a)
    assert st.migrate() == 0
    pool.run_workqueues()
    pool.verify()
