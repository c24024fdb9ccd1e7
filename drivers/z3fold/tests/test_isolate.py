"""DRV-3F2: z3fold_page_isolate refuses HEADLESS, NEEDS_COMPACTING, STALE, mapped, foreign and
CLAIMED pages, leaving everything as it was (ISO-6); success unlists the page and takes a
header reference."""

from __future__ import annotations

import mmplug_z3fold
from mmplug.kernel import page_count, trylock_page, unlock_page
from mmplug_z3fold import flags as zf
from mmplug_z3fold.alloc import z3fold_free


def test_isolation_takes_the_page_off_its_lists_and_takes_a_header_reference(make_pool, steps):
    vm, pool = make_pool()
    a = pool.store(b"a" * 500)
    pool.store(b"b" * 700)
    zhdr = pool.header_of_handle(a)
    page = zhdr.page
    assert zhdr.buddy is not None and pool.lru.holds(page) and zhdr.refcount == 2
    st = steps(vm)
    assert st.isolate(page)
    assert zhdr.buddy is None and page.lru is st.pagelist and page not in pool.lru.pages
    assert zhdr.refcount == 3 and zf.test_bit(zf.PAGE_CLAIMED, page)
    pool.verify()
    st.putback()
    pool.verify()


def test_a_headless_page_is_refused(make_pool, snapshot):
    vm, pool = make_pool()
    pool.store(b"h" * 4000)
    (page,) = pool.headless.values()
    before = snapshot(pool, page)
    assert trylock_page(page)
    assert mmplug_z3fold.isolate_page(page, 0) is False
    unlock_page(page)
    assert snapshot(pool, page) == before


def test_a_page_with_a_mapped_object_is_refused(make_pool, steps, snapshot):
    vm, pool = make_pool()
    a = pool.store(b"a" * 300)
    pool.store(b"b" * 300)
    page = pool.header_of_handle(a).page
    pool.map(a)
    before = snapshot(pool, page)
    assert not steps(vm).isolate(page)
    assert vm.vmstat.events["isolate_refused"] == 1
    assert snapshot(pool, page) == before
    pool.unmap(a)
    assert steps(vm).isolate(page)


def test_a_page_needing_compaction_is_refused_until_its_work_ran(make_pool, steps, snapshot):
    vm, pool = make_pool()
    a = pool.store(b"a" * 300)
    b = pool.store(b"b" * 300)
    zhdr = pool.header_of_handle(b)
    pool.free(a)  # the page is on this CPU's unbuddied list: compaction is queued
    assert zf.test_bit(zf.NEEDS_COMPACTING, zhdr.page) and zhdr.work.pending
    before = snapshot(pool, zhdr.page)
    assert not steps(vm).isolate(zhdr.page)
    assert snapshot(pool, zhdr.page) == before
    pool.run_workqueues()
    assert steps(vm).isolate(zhdr.page)


def test_a_stale_page_is_refused_until_it_is_freed(make_pool, steps, snapshot):
    vm, pool = make_pool()
    a = pool.store(b"a" * 300)
    b = pool.store(b"b" * 300)
    zhdr = pool.header_of_handle(a)
    page = zhdr.page
    pool.free(a)  # compaction queued, holding a reference
    # another CPU frees b before the worker runs: the work holds the last reference
    del pool.objects[b]
    z3fold_free(pool, b)
    assert zhdr.refcount == 1 and zhdr.work.pending
    pool.compact_wq.run_pending()  # the work drops it: stale, release queued, not claimed
    assert zf.test_bit(zf.PAGE_STALE, page) and not zf.test_bit(zf.PAGE_CLAIMED, page)
    assert page.pfn in pool.headers and pool.release_wq.items
    before = snapshot(pool, page)
    assert not steps(vm).isolate(page)
    assert snapshot(pool, page) == before
    pool.run_workqueues()
    assert page_count(page) == 0 and pool.pages() == []


def test_a_page_with_foreign_handles_is_refused(make_pool, steps, snapshot):
    vm, pool = make_pool()
    a, b, c = (pool.store(bytes([i]) * 900) for i in (1, 2, 3))
    d = pool.store(b"d" * 900)
    target = pool.header_of_handle(d)
    pool.free(a)
    pool.free(c)
    pool.run_workqueues()  # b was alone in its page: moved into d's page
    assert pool.header_of_handle(b) is target and target.foreign_handles == 1
    assert pool.read(b) == bytes([2]) * 900
    before = snapshot(pool, target.page)
    assert not steps(vm).isolate(target.page)
    assert snapshot(pool, target.page) == before
    pool.verify()


def test_a_claimed_page_is_refused(make_pool, steps, snapshot):
    vm, pool = make_pool()
    a = pool.store(b"a" * 300)
    page = pool.header_of_handle(a).page
    st = steps(vm)
    assert st.isolate(page)
    # another isolator that got past the VM's checks finds the claim bit
    before = snapshot(pool, page)
    assert trylock_page(page)
    assert mmplug_z3fold.isolate_page(page, 0) is False
    unlock_page(page)
    assert snapshot(pool, page) == before
    st.putback()
    assert not zf.test_bit(zf.PAGE_CLAIMED, page)


def test_as_v6_0_ships_a_migrated_page_keeps_its_claim_and_is_not_isolated_again(
        make_pool, steps):
    vm, pool = make_pool(bugs={"newpage-claimed"})
    a = pool.store(b"a" * 300)
    st = steps(vm)
    assert st.isolate(pool.header_of_handle(a).page)
    assert st.migrate() == 0
    pool.run_workqueues()
    newpage = pool.header_of_handle(a).page
    # v6.0 copies page->private, PAGE_CLAIMED included, to the new page
    assert zf.test_bit(zf.PAGE_CLAIMED, newpage)
    assert not steps(vm).isolate(newpage)
    assert pool.read(a) == b"a" * 300
    pool.free(a)
    pool.run_workqueues()
    assert pool.pages() == [] and vm.unclaimed_pages() == []
