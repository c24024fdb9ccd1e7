"""FLG-1..FLG-7: the page flags and the tagged mapping word."""

from __future__ import annotations

import pytest

from mmplug import VM, ContractViolation
from mmplug.constants import LIST_POISON2
from mmplug.kernel import (
    clear_page_movable,
    has_movable_tag,
    page_mapping,
    page_movable,
    set_page_movable,
)
from mmplug.page import (
    ISOLATED,
    LOCKED,
    PAGE_MAPPING_ANON,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_KSM,
    PAGE_MAPPING_MOVABLE,
    SLAB,
    PG_isolated,
    PG_reclaim,
)


@pytest.fixture
def vm_page():
    vm = VM(nr_pages=512, pageblock_order=6, max_order=8, min_free_pages=0)
    space = vm.new_address_space("t", ops=_ops())
    page = vm.alloc_page()
    return vm, space, page


def _ops():
    from mmplug.mapping import MovableOps
    return MovableOps(lambda p, m: True, lambda a, n, p, m: 0, lambda p: None)


def test_flg1_tag_values_and_aligned_handles(vm_page):
    vm, space, page = vm_page
    assert (PAGE_MAPPING_ANON, PAGE_MAPPING_MOVABLE, PAGE_MAPPING_KSM, PAGE_MAPPING_FLAGS) == \
        (1, 2, 3, 3)
    assert space.handle & PAGE_MAPPING_FLAGS == 0
    other = vm.new_address_space("u", ops=_ops())
    assert other.handle != space.handle and other.handle % 4 == 0


def test_flg1_mapping_word_pointing_nowhere_is_reported(vm_page):
    vm, space, page = vm_page
    page.mapping = 0x1230 | PAGE_MAPPING_MOVABLE
    with pytest.raises(ContractViolation) as exc:
        page_mapping(page)
    assert exc.value.rule == "FLG-1"


def test_flg2_has_movable_tag_is_lockless_and_false_positive_on_overlay(vm_page):
    vm, space, page = vm_page
    page.flags |= SLAB
    page.mapping = LIST_POISON2          # SLUB's list poison in the overlaid word
    assert has_movable_tag(page)          # the cheap test is fooled ...
    assert page_mapping(page) is None     # ... page_mapping is not (slab has no mapping)
    page.flags |= LOCKED
    assert not page_movable(page)


def test_flg2_anon_and_ksm_are_not_movable(vm_page):
    vm, space, page = vm_page
    for tag in (PAGE_MAPPING_ANON, PAGE_MAPPING_KSM):
        page.mapping = space.handle | tag
        assert not has_movable_tag(page)


def test_flg3_page_movable_requires_the_lock(vm_page):
    vm, space, page = vm_page
    page.flags |= LOCKED
    set_page_movable(page, space)
    page.flags &= ~LOCKED
    with pytest.raises(ContractViolation) as exc:
        page_movable(page)
    assert exc.value.rule == "FLG-3"
    page.flags |= LOCKED
    assert page_movable(page)


def test_flg3_page_movable_needs_isolate_callback(vm_page):
    vm, space, page = vm_page
    page.flags |= LOCKED
    set_page_movable(page, space)
    space.a_ops = None
    assert not page_movable(page)


def test_flg4_set_page_movable_needs_lock_and_untagged_mapping(vm_page):
    vm, space, page = vm_page
    with pytest.raises(ContractViolation) as exc:
        set_page_movable(page, space)
    assert exc.value.rule == "FLG-4"
    page.flags |= LOCKED
    set_page_movable(page, space)
    assert page.mapping == space.handle | PAGE_MAPPING_MOVABLE
    space.handle |= PAGE_MAPPING_MOVABLE
    with pytest.raises(ContractViolation):
        set_page_movable(page, space)


def test_flg5_clear_keeps_only_the_movable_bit(vm_page):
    vm, space, page = vm_page
    page.flags |= LOCKED
    set_page_movable(page, space)
    clear_page_movable(page)
    assert page.mapping == PAGE_MAPPING_MOVABLE
    assert has_movable_tag(page) and not page_movable(page)
    with pytest.raises(ContractViolation) as exc:  # not PageMovable any more
        clear_page_movable(page)
    assert exc.value.rule == "FLG-5"


def test_flg5_clear_needs_lock(vm_page):
    vm, space, page = vm_page
    page.flags |= LOCKED
    set_page_movable(page, space)
    page.flags &= ~LOCKED
    with pytest.raises(ContractViolation) as exc:
        clear_page_movable(page)
    assert exc.value.rule == "FLG-5"


def test_flg5_free_path_clears_flagged_word(vm_page):
    vm, space, page = vm_page
    page.flags |= LOCKED
    set_page_movable(page, space)
    clear_page_movable(page)
    page.flags &= ~LOCKED
    vm.cpus.put_page(page)
    assert page.mapping == 0
    vm.zone.check_free_lists()


def test_flg6_isolated_aliases_reclaim():
    assert PG_isolated == PG_reclaim
    assert ISOLATED == 1 << PG_reclaim


def test_flg7_page_mapping_masks_tag_bits(vm_page):
    vm, space, page = vm_page
    page.flags |= LOCKED
    set_page_movable(page, space)
    assert page.mapping != space.handle
    assert page_mapping(page) is space


def test_describe_decodes_the_mapping_word(vm_page):
    vm, space, page = vm_page
    page.flags |= LOCKED
    set_page_movable(page, space)
    text = page.describe()
    assert f"pfn {page.pfn:#x}" in text and "locked" in text and "[movable] -> t#" in text
