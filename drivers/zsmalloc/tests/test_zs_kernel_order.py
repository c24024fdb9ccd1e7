"""The order in which zsmalloc hands pages back to the allocator (mm/zsmalloc.c, v4.19).

Which page is freed first decides which free list head the buddy allocator
serves next, so these orders change what a comparison counts.  Each expected
order below is worked out from the kernel lines cited in the test.
"""

from __future__ import annotations

import mmplug_zsmalloc.pool as zs_pool
from mmplug.kernel import trylock_page, unlock_page
from mmplug_zsmalloc.sizeclass import Fullness


def _record_frees(monkeypatch) -> list:
    freed: list = []
    real_put = zs_pool.put_page

    def recording_put(page):
        freed.append(page)
        real_put(page)

    monkeypatch.setattr(zs_pool, "put_page", recording_put)
    return freed


def test_async_free_zspage_frees_the_largest_class_first(make_pool, steps, monkeypatch):
    """Three zspages of three classes, emptied in the order middle, small, large.

    zs_free() of the last object finds a subpage locked, so free_zspage()
    (mm/zsmalloc.c:980-993) leaves each zspage on its class's ZS_EMPTY list and
    kicks pool->free_work.  async_free_zspage() (:2140-2173) walks the classes
    from index 0 upward and list_splice_init()s each ZS_EMPTY list to the
    *head* of its private list, then frees from that head: after class small
    the list is [small], after middle [middle, small], after large
    [large, middle, small].  __free_zspage() (:948-978) puts each subpage in
    chain order.  So the pages are freed large, middle, small, whatever the
    order the zspages emptied in.
    """
    vm, pool = make_pool()
    handles = {name: pool.zs_malloc(size) for name, size in
               (("small", 100), ("middle", 1000), ("large", 3000))}
    chains = {name: steps.subpages(pool, h) for name, h in handles.items()}
    classes = {name: steps.zspage_of(pool, h).class_idx for name, h in handles.items()}
    assert classes["small"] < classes["middle"] < classes["large"]
    for chain in chains.values():
        assert trylock_page(chain[0])  # "another CPU" holds a subpage lock
    for name in ("middle", "small", "large"):
        zspage = steps.zspage_of(pool, handles[name])
        pool.zs_free(handles[name])
        assert zspage.list == Fullness.ZS_EMPTY  # trylock_zspage() failed: deferred
    for chain in chains.values():
        unlock_page(chain[0])
    freed = _record_frees(monkeypatch)
    assert pool.run_deferred_work() == 1
    assert freed == chains["large"] + chains["middle"] + chains["small"]
    assert pool.pages_allocated == 0 and not pool.zspages
    pool.lengths.clear()
    pool.verify()


def test_alloc_zspage_gives_back_a_partial_zspage_last_page_first(make_pool, steps, monkeypatch):
    """The third page of a three-page zspage cannot be had.

    alloc_zspage() (mm/zsmalloc.c:1076-1112) frees what it already took with
    `while (--i >= 0) __free_page(pages[i])` (:1096-1099): the second page, then
    the first.  zs_malloc() then fails (:1504-1508) and the handle goes back.
    """
    vm, pool = make_pool()
    cls = pool.size_class[pool.layout.size_class_index(3000 + 8)]
    assert cls.pages_per_zspage == 3  # 3008-byte chunks: 4 in 3 pages waste 256 bytes
    taken: list = []
    real_alloc = zs_pool.alloc_page

    def third_fails(vm, *args):
        if len(taken) == 2:
            return None
        page = real_alloc(vm, *args)
        taken.append(page)
        return page

    monkeypatch.setattr(zs_pool, "alloc_page", third_fails)
    freed = _record_frees(monkeypatch)
    assert pool.zs_malloc(3000) == 0
    assert freed == [taken[1], taken[0]]
    assert not pool.handles and pool.pages_allocated == 0
    pool.verify()
