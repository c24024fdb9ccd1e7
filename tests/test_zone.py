"""The buddy allocator, pageblocks and the free path (mm/page_alloc.c)."""

from __future__ import annotations

import random

import pytest

from mmplug import VM, ContractViolation
from mmplug.constants import GFP_COMP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, MigrateType
from mmplug.page import BUDDY, HEAD, LOCKED, TAIL


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
    vm.sync.put_page(page)
    assert vm.zone.buddyinfo() == [0] * 7 + [8]
    vm.zone.check_free_lists()


def test_buddy_of_a_block_is_pfn_xor_size():
    vm = small_vm()
    a = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    b = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    assert a.pfn ^ 1 == b.pfn
    vm.sync.put_page(a)
    assert vm.zone.pfn_to_page(a.pfn).flags & BUDDY      # cannot merge: buddy in use
    vm.sync.put_page(b)
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
    vm.sync.put_page(head)
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
        vm.sync.put_page(page)
    assert exc.value.rule == "FREE-1" and "locked" in str(exc.value)


def test_refcount_underflow_is_reported():
    vm = small_vm()
    page = vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    vm.sync.put_page(page)
    with pytest.raises(ContractViolation) as exc:
        vm.sync.put_page(page)
    assert exc.value.rule == "REF-1"
    with pytest.raises(ContractViolation):
        vm.sync.get_page(page)


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


def test_zone_shape_is_validated():
    with pytest.raises(ValueError):
        VM(nr_pages=100)
    with pytest.raises(ValueError):
        VM(nr_pages=1024, pageblock_order=6, max_order=8, page_size=1000)


def test_default_watermarks_follow_min_free_kbytes():
    vm = VM(nr_pages=262144)   # 1 GiB: sqrt(1048576 * 16) = 4096 KiB -> 1024 pages
    assert vm.zone.wmark_min == 1024
    assert vm.zone.wmark_low == 1024 + 262 and vm.zone.wmark_high == 1024 + 2 * 262
