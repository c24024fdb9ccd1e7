"""FLG-1..FLG-7: the page flags and the tagged mapping word."""

from __future__ import annotations

import pytest

from corehelp import PoolPlugin, isolate, make_vm, migrate, simplepool
from mmplug import VM, ContractViolation, hookimpl
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


@pytest.mark.parametrize("wrong", [None, 0x1000, "mapping", object()])
def test_flg4_set_page_movable_with_something_not_an_address_space(vm_page, wrong):
    """A mapping that is not an AddressSpace (a handle, the instance, None) is the caller's
    FLG-4, said as such: not an AttributeError from inside the VM."""
    vm, space, page = vm_page
    page.flags |= LOCKED
    with pytest.raises(ContractViolation) as exc:
        set_page_movable(page, wrong)
    assert exc.value.rule == "FLG-4"
    assert f"__SetPageMovable() with {type(wrong).__name__} " in str(exc.value)
    assert "not an address space" in str(exc.value)
    assert page.mapping == 0


def test_flg4_a_driver_passing_its_instance_to_set_page_movable_is_named():
    """Reported from migratepage with the driver, the hook and the page it was called on."""
    class Wrong(PoolPlugin):
        @hookimpl
        def migratepage(self, mapping, newpage, page, mode):
            set_page_movable(newpage, mapping.private_data)
            return simplepool.migratepage(mapping, newpage, page, mode)

    vm, pool = make_vm(Wrong())
    page = pool.handles[pool.store(b"abc" * 20)][0].page
    with pytest.raises(ContractViolation) as exc:
        migrate(vm, isolate(vm, page))
    v = exc.value
    assert (v.rule, v.hook, v.driver) == ("FLG-4", "migratepage", pool.mapping.driver)
    assert v.page is not page and v.page.mapping == 0    # newpage, which the call was on
    assert "not an address space" in str(v)


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
