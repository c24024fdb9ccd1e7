"""The buddy allocator, pageblocks and the free path (mm/page_alloc.c)."""

from __future__ import annotations

import random

import pytest

from mmplug import VM, ContractViolation
from mmplug.constants import GFP_COMP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, MigrateType
from mmplug.page import BUDDY, HEAD, ISOLATED, LOCKED, LRU, TAIL


def small_vm(**kw):
    kw.setdefault("min_free_pages", 0)
    return VM(nr_pages=kw.pop("nr_pages", 1024), pageblock_order=kw.pop("pageblock_order", 6),
              max_order=kw.pop("max_order", 8), **kw)


def test_boot_memory_is_free_in_largest_blocks():
    vm = small_vm()
    assert vm.zone.buddyinfo() == [0] * 7 + [8]   # 1024 pages = 8 blocks of order 7
    assert vm.zone.nr_free_pages == 1024
    vm.zone.check_free_lists()


def test_alloc_splits_and_free_merges_back():
    vm = small_vm()
    page = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    assert page._refcount == 1
    assert vm.zone.buddyinfo() == [1, 1, 1, 1, 1, 1, 1, 7]
    vm.zone.check_free_lists()
    vm.cpus.put_page(page)
    assert vm.zone.buddyinfo() == [0] * 7 + [8]
    vm.zone.check_free_lists()


def test_buddy_of_a_block_is_pfn_xor_size():
    vm = small_vm()
    a = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    b = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    assert a.pfn ^ 1 == b.pfn
    vm.cpus.put_page(a)
    assert vm.zone.pfn_to_page(a.pfn).flags & BUDDY      # cannot merge: buddy in use
    vm.cpus.put_page(b)
    assert vm.zone.buddyinfo()[0] == 0


def test_random_alloc_free_keeps_lists_consistent():
    vm = small_vm()
    rng = random.Random(7)
    held = []
    for _ in range(3000):
        if held and rng.random() < 0.45:
            page, order = held.pop(rng.randrange(len(held)))
            vm.zone.free_pages(_drop(page), order)
        else:
            order = rng.choice([0, 0, 0, 1, 2, 3])
            gfp = rng.choice([GFP_HIGHUSER_MOVABLE, GFP_KERNEL])
            page = vm.zone.alloc_pages(order, gfp)
            if page is not None:
                held.append((page, order))
    vm.zone.check_free_lists()
    for page, order in held:
        vm.zone.free_pages(_drop(page), order)
    vm.zone.check_free_lists()
    assert vm.zone.nr_free_pages == 1024
    assert vm.zone.buddyinfo()[-1] == 8


def _drop(page):
    page._refcount = 0
    return page


def test_unmovable_allocation_steals_and_claims_a_pageblock():
    vm = small_vm()
    page = vm.zone.alloc_pages(0, GFP_KERNEL)
    # the whole order-7 block was stolen: both its pageblocks turned UNMOVABLE
    assert vm.zone.get_pageblock_migratetype(page.pfn) == MigrateType.UNMOVABLE
    free_unmovable = vm.zone.free_counts_by_type()[MigrateType.UNMOVABLE]
    assert sum(n << o for o, n in enumerate(free_unmovable)) == 127


def test_compound_allocation_and_release():
    vm = small_vm()
    head = vm.zone.alloc_pages(2, GFP_KERNEL | GFP_COMP)
    assert head.flags & HEAD and vm.zone.compound_order(head) == 2
    tails = [vm.zone.pfn_to_page(head.pfn + i) for i in range(1, 4)]
    assert all(t.flags & TAIL and vm.zone.compound_head(t) is head for t in tails)
    vm.cpus.put_page(head)
    assert vm.zone.nr_free_pages == 1024
    assert not any(t.flags for t in tails)


def test_watermark_refuses_allocation_below_min():
    vm = small_vm(min_free_pages=1020)
    got = [vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE) for _ in range(10)]
    assert sum(p is not None for p in got) == 4     # free must stay above 1020 before each


def test_bad_page_state_at_free_is_reported():
    vm = small_vm()
    page = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    page.flags |= LOCKED
    with pytest.raises(ContractViolation) as exc:
        vm.cpus.put_page(page)
    assert exc.value.rule == "FREE-1" and "locked" in str(exc.value)


@pytest.mark.parametrize("spoil, rule, words", [
    (lambda p: setattr(p, "flags", p.flags | BUDDY), "FREE-1",
     "page is already free (double free)"),
    (lambda p: setattr(p, "mapping", 0x1000), "FREE-1", "non-NULL mapping 0x1000"),
    (lambda p: setattr(p, "_refcount", 2), "FREE-1", "nonzero refcount 2"),
    (lambda p: setattr(p, "flags", p.flags | LRU), "FREE-1", "flags lru set"),
    (lambda p: setattr(p, "flags", p.flags | ISOLATED), "REL-2", "still PG_isolated"),
    # the first problem found is the one named
    (lambda p: setattr(p, "flags", p.flags | LOCKED | ISOLATED), "FREE-1", "flags locked set"),
])
def test_every_bad_page_state_at_free_is_named(spoil, rule, words):
    """free_pages checks every page in one test of flags, mapping and refcount; a page
    that fails it is described by its first problem, as the checks one by one did."""
    vm = small_vm()
    page = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    page._refcount = 0                                    # as put_page leaves it
    free_before = vm.zone.nr_free_pages
    spoil(page)
    with pytest.raises(ContractViolation) as exc:
        vm.zone.free_pages(page, 0)
    assert exc.value.rule == rule and f"bad page state at free: {words}" in str(exc.value)
    assert vm.zone.nr_free_pages == free_before          # nothing was freed
    vm = small_vm()
    clean = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    clean._refcount = 0
    vm.zone.free_pages(clean, 0)                          # a clean page still goes back
    assert vm.zone.nr_free_pages == free_before + 1


def test_refcount_underflow_is_reported():
    vm = small_vm()
    page = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    vm.cpus.put_page(page)
    with pytest.raises(ContractViolation) as exc:
        vm.cpus.put_page(page)
    assert exc.value.rule == "REF-1"
    with pytest.raises(ContractViolation):
        vm.cpus.get_page(page)


def test_page_address_is_a_view_into_zone_memory():
    vm = small_vm(page_size=256)
    page = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    view = vm.zone.page_address(page)
    assert len(view) == 256
    view[:4] = b"abcd"
    off = (page.pfn - vm.zone.start_pfn) * 256
    assert bytes(vm.zone.view[off:off + 4]) == b"abcd"
    other = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    vm.zone.copy_page(other, page)
    assert bytes(vm.zone.page_address(other)[:4]) == b"abcd"


def test_copy_page_is_the_slice_copy_it_replaces():
    """copy_page moves bytes inside the zone's mapping: the same bytes as copying one
    slice of the view onto another, the page's neighbours untouched, at any start_pfn."""
    from mmplug.zone import Zone
    rng = random.Random(5)
    vm = small_vm(page_size=256)
    for zone in (vm.zone, Zone(vm, 1024, page_size=256, start_pfn=4096, pageblock_order=6,
                               max_order=8, min_free_pages=0)):
        zone.view[:] = rng.randbytes(len(zone.view))
        expected = bytearray(zone.view)
        for _ in range(50):
            src, dst = (zone.pages[rng.randrange(zone.nr_pages)] for _ in range(2))
            s, d = ((p.pfn - zone.start_pfn) * 256 for p in (src, dst))
            expected[d:d + 256] = expected[s:s + 256]
            zone.copy_page(dst, src)
            assert zone.view == expected


def test_zone_shape_is_validated():
    with pytest.raises(ValueError):
        VM(nr_pages=100)
    with pytest.raises(ValueError):
        VM(nr_pages=1024, pageblock_order=6, max_order=8, page_size=1000)


def test_default_watermarks_follow_min_free_kbytes():
    vm = VM(nr_pages=262144)   # 1 GiB: sqrt(1048576 * 16) = 4096 KiB -> 1024 pages
    assert vm.zone.wmark_min == 1024
    assert vm.zone.wmark_low == 1024 + 262 and vm.zone.wmark_high == 1024 + 2 * 262


# --- v4.19 line by line, on hand-built zones (docs/fidelity.md) ----------------------------

def test_free_one_page_puts_a_block_likely_to_merge_at_the_tail():
    """__free_one_page (mm/page_alloc.c:905-931): a merged block goes to the tail when the
    buddy of its order+1 parent is free, so it is taken last and gets a chance to merge.

    32 pages, all allocated, then freed: 6, 7 (-> order 1 at 6), 9 (buddy 8 in use; its
    parent 8-9's buddy 10-11 in use: head), then 5 (buddy 4 in use; its parent 4-5's buddy
    6-7 is a free order-1 block: tail).  The order-0 list is 5 ... 9, head 9, so the next
    order-0 allocation gets 9, not the page freed last.
    """
    from corehelp import Layout
    lay = Layout("U" * 32)
    zone, put = lay.vm.zone, lay.vm.cpus.put_page
    pages = {p.pfn: p for p in lay.unmovable}
    for pfn in (6, 7, 9, 5):
        put(pages.pop(pfn))
    assert list(zone.free_area[0][MigrateType.MOVABLE]) == [5, 9]     # tail first, head last
    assert list(zone.free_area[1][MigrateType.MOVABLE]) == [6]
    assert zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE).pfn == 9
    zone.check_free_lists()


def test_steal_counts_no_alike_pages_in_a_block_that_was_not_movable():
    """steal_suitable_fallback (mm/page_alloc.c:2462-2489): for a non-movable request, the
    pages in use count as alike only in a MOVABLE block; elsewhere alike is 0.

    Block 0 in use; block 1 RECLAIMABLE, in use but for free pages 9 and 11.  An UNMOVABLE
    order-0 request falls back to RECLAIMABLE (fallbacks[]), can steal (can_steal_fallback),
    moves both free pages to the UNMOVABLE list (11 last, so at the head) but 2 + 0 < 4:
    the block stays RECLAIMABLE.  The page handed out is 11.
    """
    from corehelp import Layout
    lay = Layout("UUUUUUUU" "U.U.UUUU", max_order=4, types={1: MigrateType.RECLAIMABLE})
    zone = lay.vm.zone
    page = zone.alloc_pages(0, GFP_KERNEL)
    assert page.pfn == 11
    assert zone.get_pageblock_migratetype(8) == MigrateType.RECLAIMABLE
    assert list(zone.free_area[0][MigrateType.UNMOVABLE]) == [9]


def test_steal_counts_tail_pages_as_alike_in_a_movable_block():
    """move_freepages (mm/page_alloc.c:2294-2305) counts every page in use that is neither
    PageLRU (of its head) nor __PageMovable; steal_suitable_fallback (2472-2474) takes all
    the others as alike, tail pages of a compound page included.

    Block 1 (MOVABLE): an order-2 compound page at 8-11, driver pages at 12, 13, 14, pfn 15
    free.  UNMOVABLE order 0 steals 15: free 1, movable 3, alike 8 - 4 = 4: 5 >= 4 claims
    the block.
    """
    from corehelp import Layout
    lay = Layout("UUUUUUUU" "UUUUDDD.", max_order=4)
    zone = lay.vm.zone
    head = zone.pfn_to_page(8)
    for pfn in (9, 10, 11):
        zone.pfn_to_page(pfn)._refcount = 0
    zone._prep_compound_page(head, 2)
    page = zone.alloc_pages(0, GFP_KERNEL)
    assert page.pfn == 15
    assert zone.get_pageblock_migratetype(8) == MigrateType.UNMOVABLE


def test_find_suitable_fallback_and_can_steal_fallback():
    """find_suitable_fallback (mm/page_alloc.c:2504-2533), can_steal_fallback (2389-2408).

    Pageblock order 6: a whole-block steal needs order >= 3 for a movable request, any
    order for the others.
    """
    vm = small_vm()
    zone = vm.zone
    assert zone.can_steal_fallback(6, MigrateType.MOVABLE)
    assert zone.can_steal_fallback(3, MigrateType.MOVABLE)
    assert not zone.can_steal_fallback(2, MigrateType.MOVABLE)
    assert zone.can_steal_fallback(0, MigrateType.UNMOVABLE)
    # boot memory: order-7 blocks on the MOVABLE lists only
    assert zone.find_suitable_fallback(7, MigrateType.UNMOVABLE, False) == (MigrateType.MOVABLE,
                                                                           True)
    assert zone.find_suitable_fallback(7, MigrateType.MOVABLE, False) == (-1, False)
    assert zone.find_suitable_fallback(2, MigrateType.UNMOVABLE, False) == (-1, False)
    page = zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)   # splits one: orders 0..6 appear
    assert page is not None
    assert zone.find_suitable_fallback(2, MigrateType.RECLAIMABLE, True) == (
        MigrateType.MOVABLE, True)
    small = zone.alloc_pages(0, GFP_KERNEL)      # steals a whole order-7 block, splits it
    assert small is not None
    # now UNMOVABLE lists hold small blocks: a movable order-2 request may use them,
    # but not steal the whole block (only_stealable refuses it)
    fallback, can_steal = zone.find_suitable_fallback(2, MigrateType.MOVABLE, False)
    assert (fallback, can_steal) == (MigrateType.UNMOVABLE, False)
    assert zone.find_suitable_fallback(2, MigrateType.MOVABLE, True) == (-1, False)


def test_isolate_free_page_obeys_the_min_watermark_and_claims_big_blocks():
    """__isolate_free_page (mm/page_alloc.c:3236-3283): refused unless min + 2^order pages
    stay free; a block of pageblock_order - 1 or more turns its pageblock(s) MOVABLE."""
    vm = small_vm(min_free_pages=1000)            # 1024 pages, pageblocks of 64
    zone = vm.zone
    zone.set_pageblock_migratetype(0, MigrateType.UNMOVABLE)
    head = zone.pfn_to_page(0)
    assert head.private == 7
    assert zone.isolate_free_page(head, 7) == 0       # 1024 - 0 > 1000 + 128? no
    vm2 = small_vm(min_free_pages=100)
    zone = vm2.zone
    zone.set_pageblock_migratetype(0, MigrateType.UNMOVABLE)
    zone.set_pageblock_migratetype(64, MigrateType.UNMOVABLE)
    assert zone.isolate_free_page(zone.pfn_to_page(0), 7) == 128
    assert zone.get_pageblock_migratetype(0) == zone.get_pageblock_migratetype(64) == \
        MigrateType.MOVABLE
    assert zone.nr_free_pages == 1024 - 128 and zone.buddyinfo()[7] == 7
