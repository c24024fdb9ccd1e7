"""DRV-3F4: z3fold_page_putback unlists, drops the header reference (releasing the page if it
was the last), else puts the page back on the LRU and an unbuddied list and drops the claim."""

from __future__ import annotations

from mmplug.kernel import page_count
from mmplug_z3fold import flags as zf


def test_putback_restores_the_page_as_it_was_before_isolation(make_pool, steps):
    vm, pool = make_pool()
    a = pool.store(b"a" * 700)
    b = pool.store(b"b" * 900)
    zhdr = pool.header_of_handle(a)
    page = zhdr.page
    listed_on = zhdr.buddy
    st = steps(vm)
    assert st.isolate(page)
    assert zhdr.buddy is None and not pool.lru.holds(page)
    st.putback()
    assert zhdr.buddy is listed_on and pool.lru.holds(page)
    assert zhdr.refcount == 2 and not zf.test_bit(zf.PAGE_CLAIMED, page)
    pool.verify()
    # used exactly as before: a new object lands in its free middle and it isolates again
    c = pool.store(b"c" * 300)
    assert pool.header_of_handle(c) is zhdr
    assert [pool.read(h) for h in (a, b, c)] == [b"a" * 700, b"b" * 900, b"c" * 300]
    assert steps(vm).isolate(page)


def test_putback_of_a_page_emptied_while_isolated_releases_it(make_pool, steps):
    vm, pool = make_pool()
    a = pool.store(b"a" * 700)
    b = pool.store(b"b" * 900)
    zhdr = pool.header_of_handle(a)
    page = zhdr.page
    st = steps(vm)
    assert st.isolate(page)
    pool.free(a)
    pool.free(b)
    assert zhdr.refcount == 1 and page.pfn in pool.headers
    st.putback()
    # the last reference went: stale, off every list, release queued
    assert zf.test_bit(zf.PAGE_STALE, page) and zhdr.buddy is pool.stale
    assert not pool.lru.holds(page) and pool.release_wq.items
    pool.verify()
    pool.run_workqueues()
    assert page_count(page) == 0 and pool.pages() == [] and pool.pages_nr == 0
    assert vm.unclaimed_pages() == [] and vm.warnings == []
