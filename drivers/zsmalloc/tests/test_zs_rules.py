"""One test (or a few) per DRV-Z rule of the contract; each fails if its rule is broken."""

from __future__ import annotations

import random

from mmplug.constants import MigrateMode
from mmplug.kernel import (
    PAGE_MAPPING_MOVABLE,
    has_movable_tag,
    page_count,
    page_isolated,
    trylock_page,
    unlock_page,
)
from mmplug.page import BUDDY
from mmplug_zsmalloc.compact import isolate_zspage
from mmplug_zsmalloc.handle import location_to_obj
from mmplug_zsmalloc.sizeclass import ZS_HANDLE_SIZE, Fullness
from mmplug_zsmalloc.zspage import read_word


def _fill_zspage(pool, steps, pages_per_zspage, seed=1):
    """One full zspage of a class with that many subpages: (class, handles, data, subpages)."""
    cls = steps.class_with_pages(pool, pages_per_zspage)
    rng = random.Random(seed)
    data = [rng.randbytes(cls.size - ZS_HANDLE_SIZE) for _ in range(cls.objs_per_zspage)]
    handles = [pool.store(d) for d in data]
    assert len({steps.zspage_of(pool, h) for h in handles}) == 1
    return cls, handles, data, steps.subpages(pool, handles[0])


def _on_lists(cls, zspage):
    return any(zspage in lst for lst in cls.fullness_list)


# --- DRV-Z1 -------------------------------------------------------------------------------

def test_drv_z1_zspage_subpages_are_movable_and_handles_encode_page_and_index(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 4)
    h = pool.store(bytes(cls.size - ZS_HANDLE_SIZE))
    pages = steps.subpages(pool, h)
    zspage = steps.zspage_of(pool, h)
    assert len(pages) == 4
    for page in pages:
        assert has_movable_tag(page)
        assert page.mapping == pool.mapping.handle | PAGE_MAPPING_MOVABLE
        assert page.private is zspage
    assert pool.handles.handle_to_obj(h) == location_to_obj(pool.layout, pages[0], 0)
    # The object's first word names its handle, tagged allocated.
    assert read_word(pages[0], 0) == h | 1


# --- DRV-Z2 -------------------------------------------------------------------------------

def test_drv_z2_isolation_refuses_an_empty_zspage(make_pool, steps):
    vm, pool = make_pool()
    h = pool.store(b"a" * 50)
    page = steps.subpages(pool, h)[0]
    zspage = page.private
    # Another CPU holds the page lock: free_zspage's trylock fails, the free is deferred.
    assert trylock_page(page)
    pool.free(h)
    unlock_page(page)
    assert zspage.inuse == 0 and zspage.list == Fullness.ZS_EMPTY
    assert pool.workqueue.pending
    refused = vm.vmstat["isolate_refused"]
    steps.isolate(vm, page, expect=False)
    assert vm.vmstat["isolate_refused"] == refused + 1
    assert zspage.isolated == 0 and zspage.list == Fullness.ZS_EMPTY
    assert pool.isolated_pages == 0
    pool.run_deferred_work()
    assert pool.pages() == [] and vm.unclaimed_pages() == []


def test_drv_z2_first_isolated_subpage_takes_the_zspage_off_its_list(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 2)
    h = pool.store(bytes(cls.size - ZS_HANDLE_SIZE))
    zspage = steps.zspage_of(pool, h)
    first, second = steps.subpages(pool, h)
    assert zspage.list == Fullness.ZS_ALMOST_EMPTY
    l1 = steps.isolate(vm, first)
    assert zspage.isolated == 1 and zspage.list is None and not _on_lists(cls, zspage)
    assert pool.isolated_pages == 1
    l2 = steps.isolate(vm, second)
    assert zspage.isolated == 2 and pool.isolated_pages == 1
    # zs_malloc cannot find an isolated zspage: a new one is made.
    h2 = pool.store(bytes(cls.size - ZS_HANDLE_SIZE))
    assert steps.zspage_of(pool, h2) is not zspage
    pool.verify()
    steps.putback(vm, l1)
    assert zspage.isolated == 1 and not _on_lists(cls, zspage)
    steps.putback(vm, l2)
    assert zspage.isolated == 0 and zspage in cls.fullness_list[Fullness.ZS_ALMOST_EMPTY]
    assert pool.isolated_pages == 0
    pool.verify()


# --- DRV-Z3 -------------------------------------------------------------------------------

def test_drv_z3_migration_moves_the_page_and_rewrites_its_handles(make_pool, steps):
    vm, pool = make_pool()
    cls, handles, data, (first, second) = _fill_zspage(pool, steps, 2)
    zspage = first.private
    on_second = [h for h in handles if pool.location(h)[0] is second]
    assert on_second
    newpages = []
    assert steps.migrate(vm, steps.isolate(vm, second), newpages=newpages) == 0
    new = newpages[0]
    assert list(pool.struct_pages.chain(zspage)) == [first, new]
    for h in on_second:
        assert pool.location(h)[0] is new
        assert not pool.handles.testpin(h)
    assert new.mapping == pool.mapping.handle | PAGE_MAPPING_MOVABLE and new.private is zspage
    assert page_count(new) == 1                  # the pool's own reference
    assert second.flags & BUDDY                  # the old page went back to the allocator
    assert zspage.isolated == 0 and zspage in cls.fullness_list[Fullness.ZS_FULL]
    for h, d in zip(handles, data, strict=True):  # objects spanning into the new page too
        assert pool.read(h) == d
    pool.verify()


def test_drv_z3_a_pinned_object_makes_migration_eagain(make_pool, steps):
    vm, pool = make_pool()
    cls, handles, data, (first, second) = _fill_zspage(pool, steps, 2)
    victim = next(h for h in handles if pool.location(h)[0] is second)
    before = {h: pool.handles.handle_to_obj(h) for h in handles}
    pool.pin(victim)
    eagain = vm.vmstat["migrate_eagain"]
    assert steps.migrate(vm, steps.isolate(vm, second)) == 1
    assert vm.vmstat["migrate_eagain"] - eagain == 10       # every pass retried
    assert {h: pool.handles.handle_to_obj(h) & ~1 for h in handles} == \
        {h: w & ~1 for h, w in before.items()}
    assert not page_isolated(second) and second.private is first.private
    pool.verify()                                           # only the knob's pin is held
    pool.unpin(victim)
    assert steps.migrate(vm, steps.isolate(vm, second)) == 0
    for h, d in zip(handles, data, strict=True):
        assert pool.read(h) == d


def test_drv_z3_sync_no_copy_is_einval(make_pool, steps):
    vm, pool = make_pool()
    cls, handles, data, pages = _fill_zspage(pool, steps, 1)
    permanent = vm.vmstat["migrate_permanent"]
    assert steps.migrate(vm, steps.isolate(vm, pages[0]), MigrateMode.SYNC_NO_COPY) == 1
    assert vm.vmstat["migrate_permanent"] == permanent + 1
    assert vm.vmstat["migrate_eagain"] == 0
    assert not page_isolated(pages[0]) and pages[0].private is steps.zspage_of(pool, handles[0])
    assert pool.isolated_pages == 0
    for h, d in zip(handles, data, strict=True):
        assert pool.read(h) == d
    pool.verify()


# --- DRV-Z4 -------------------------------------------------------------------------------

def test_drv_z4_putback_restores_the_zspage_for_allocation(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 1)
    h = pool.store(bytes(cls.size - ZS_HANDLE_SIZE))
    zspage = steps.zspage_of(pool, h)
    fullness = zspage.fullness
    steps.putback(vm, steps.isolate(vm, zspage.first_page))
    assert zspage.isolated == 0 and zspage in cls.fullness_list[fullness]
    h2 = pool.store(bytes(cls.size - ZS_HANDLE_SIZE))
    assert steps.zspage_of(pool, h2) is zspage


def test_drv_z4_zspage_emptied_while_isolated_is_freed_by_deferred_work(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 2)
    h = pool.store(bytes(cls.size - ZS_HANDLE_SIZE))
    pages = steps.subpages(pool, h)
    assert len(pages) == 2
    free_before = vm.zone.nr_free_pages
    pagelist = steps.isolate(vm, pages[0])
    pool.free(h)
    steps.putback(vm, pagelist)
    # Not under the page lock: right after the callback the zspage still exists.
    assert set(pool.pages()) == set(pages)
    assert pool.workqueue.pending and pages[0].private.list == Fullness.ZS_EMPTY
    assert pool.run_deferred_work() == 1
    assert pool.pages() == [] and vm.unclaimed_pages() == []
    assert vm.zone.nr_free_pages == free_before + len(pages)
    pool.verify()


# --- DRV-Z5 -------------------------------------------------------------------------------

def test_drv_z5_freeing_the_last_object_of_an_isolated_zspage_keeps_it(make_pool, steps):
    vm, pool = make_pool()
    h = pool.store(bytes(300))
    page = steps.subpages(pool, h)[0]
    zspage = page.private
    pagelist = steps.isolate(vm, page)
    pool.free(h)
    assert zspage in pool.zspages and zspage.inuse == 0 and zspage.isolated == 1
    assert page.mapping == pool.mapping.handle | PAGE_MAPPING_MOVABLE
    assert page_isolated(page) and page_count(page) == 2
    # Migration of the empty zspage's page finishes the job, through the work.
    newpages = []
    assert steps.migrate(vm, pagelist, newpages=newpages) == 0
    assert pool.workqueue.pending
    pool.run_deferred_work()
    assert pool.pages() == [] and vm.unclaimed_pages() == []
    assert page_count(newpages[0]) == 0 and page_count(page) == 0


# --- DRV-Z6 -------------------------------------------------------------------------------

def test_drv_z6_a_zspage_held_by_zs_compact_is_refused(make_pool, steps):
    vm, pool = make_pool()
    h = pool.store(bytes(200))
    zspage = steps.zspage_of(pool, h)
    cls = pool.class_of(zspage)
    with cls.lock:
        # The state __zs_compact keeps a source zspage in: off its list, not isolated.
        assert isolate_zspage(cls, source=True) is zspage
    steps.isolate(vm, zspage.first_page, expect=False)
    assert zspage.isolated == 0 and pool.isolated_pages == 0
    with cls.lock:
        cls.putback_zspage(zspage)
    steps.putback(vm, steps.isolate(vm, zspage.first_page))
    pool.verify()


def test_drv_z6_zs_compact_leaves_isolated_zspages_alone(make_pool, steps):
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 1)
    size = cls.size - ZS_HANDLE_SIZE
    rng = random.Random(5)
    data = {}
    for _ in range(cls.objs_per_zspage * 6):
        d = rng.randbytes(size)
        data[pool.store(d)] = d
    # Leave every zspage a little used, so zs_compact has work in this class.
    by_zspage = {}
    for h in data:
        by_zspage.setdefault(steps.zspage_of(pool, h), []).append(h)
    for hs in by_zspage.values():
        for h in hs[2:]:
            pool.free(h)
            del data[h]
    held = next(iter(by_zspage))
    held_handles = [h for h in data if steps.zspage_of(pool, h) is held]
    where = {h: pool.handles.handle_to_obj(h) for h in held_handles}
    pagelist = steps.isolate(vm, held.first_page)
    assert pool.compact() > 0
    assert {h: pool.handles.handle_to_obj(h) for h in held_handles} == where
    steps.putback(vm, pagelist)
    pool.verify()
    for h, d in data.items():
        assert pool.read(h) == d


def test_drv_z3_a_subpage_without_object_heads_migrates_even_when_all_are_pinned(make_pool, steps):
    """Only objects whose head is in the page are pinned (zs_page_migrate scans heads)."""
    vm, pool = make_pool()
    cls = steps.class_with_pages(pool, 3)
    h = pool.store(bytes(cls.size - ZS_HANDLE_SIZE))
    first, second, third = steps.subpages(pool, h)
    pool.pin(h)
    assert steps.migrate(vm, steps.isolate(vm, third)) == 0
    assert steps.migrate(vm, steps.isolate(vm, first)) == 1
    pool.unpin(h)
    pool.verify()


def test_pinned_objects_stay_readable_and_freeable_by_their_user(make_pool):
    vm, pool = make_pool()
    h = pool.store(b"pinned bytes")
    pool.pin(h)
    assert pool.read(h) == b"pinned bytes"
    pool.free(h)
    assert pool.pages_allocated == 0 and not pool.knob_pins
