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


def _two_sparse_zspages(pool, steps, size):
    """Two zspages of the class for `size`-byte objects, one object left in each."""
    cls = pool.size_class[pool.layout.size_class_index(size + 8)]
    n = cls.objs_per_zspage
    handles = [pool.store(bytes(size)) for _ in range(n + 1)]  # one full zspage, one more
    for h in handles[1:n]:
        pool.free(h)
    zspages = [steps.zspage_of(pool, h) for h in (handles[0], handles[n])]
    assert zspages[0] is not zspages[1]
    assert all(z.fullness == Fullness.ZS_ALMOST_EMPTY for z in zspages)
    return cls, zspages


def test_zs_compact_walks_the_classes_from_the_largest_down(make_pool, steps, monkeypatch):
    """Two classes, each with two one-page zspages holding one object apiece.

    zs_compact() (mm/zsmalloc.c:2264-2279) runs __zs_compact() for i from
    ZS_SIZE_CLASSES - 1 down to 0.  In each class (:2217-2262) zs_can_compact()
    (:2202-2215) is (2n - 2) / n = 1 page; the source's one object moves to the
    other zspage, the source empties, putback_zspage() puts it on ZS_EMPTY and
    free_zspage() frees it at once (no subpage lock is taken), adding
    pages_per_zspage = 1 to pages_compacted.  Then zs_can_compact() is
    (n - 2) / n = 0 and the class is done.  So exactly one page of the 2048-byte
    class is freed, then one page of the 32-byte class.
    """
    vm, pool = make_pool()
    small, small_zspages = _two_sparse_zspages(pool, steps, 24)      # 32-byte chunks
    large, large_zspages = _two_sparse_zspages(pool, steps, 2040)    # 2048-byte chunks
    assert small.pages_per_zspage == large.pages_per_zspage == 1
    assert small.index < large.index
    pages = {z.first_page: name for name, zs in (("small", small_zspages),
                                                  ("large", large_zspages)) for z in zs}
    freed = _record_frees(monkeypatch)
    assert pool.compact() == 2
    assert [pages[p] for p in freed] == ["large", "small"]
    assert pool.pages_compacted == 2 and pool.pages_allocated == 2
    pool.verify()


def test_pages_compacted_counts_a_source_whose_free_is_deferred(make_pool, steps):
    """__zs_compact() adds class->pages_per_zspage to pages_compacted as soon as
    putback_zspage() says ZS_EMPTY (mm/zsmalloc.c:2249-2252), whether
    free_zspage() (:980-993) freed the zspage or, finding a subpage locked,
    only kicked the deferred work."""
    vm, pool = make_pool()
    cls, zspages = _two_sparse_zspages(pool, steps, 24)
    locked = [z.first_page for z in zspages]
    for page in locked:
        assert trylock_page(page)
    before = pool.pages_allocated
    assert pool.compact() == 1
    assert pool.pages_compacted == 1 and pool.pages_allocated == before
    assert sum(z.list == Fullness.ZS_EMPTY for z in zspages) == 1
    for page in locked:
        unlock_page(page)
    assert pool.run_deferred_work() == 1
    assert pool.pages_allocated == before - 1
    pool.verify()
