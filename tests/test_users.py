"""Slab and LRU page users; BUG-1 (slab overlay passing __PageMovable)."""

from __future__ import annotations

from corehelp import make_vm
from mmplug.constants import LIST_POISON2
from mmplug.cpus.single import SingleCPU
from mmplug.migrate import isolate_movable_page
from mmplug.page import LOCKED, SLAB, has_movable_tag


def test_bug1_slab_page_with_poisoned_word_is_skipped_before_its_lock():
    """slab_fix (v6.2, 8b8817630ae8): the PageSlab test comes before trylock_page()."""
    taken = []

    class WatchedCPU(SingleCPU):
        def trylock_page(self, page):
            taken.append(page)
            return super().trylock_page(page)

    vm, pool = make_vm(slab_fix=True, cpus=WatchedCPU())
    from mmplug.users import SlabCache
    slab = SlabCache(vm).alloc_slab(poisoned=True)
    assert slab.mapping == LIST_POISON2 and has_movable_tag(slab)
    assert isolate_movable_page(vm, slab, 0) != 0
    assert taken == [] and slab._refcount == 1 and vm.warnings == []


def test_bug1_without_the_fix_the_slab_lock_is_touched():
    """v4.19 (the default): mm/migrate.c:97-122 tests __PageMovable, trylocks the page, and
    only then finds !PageMovable (page_mapping() is NULL for PageSlab) -> out_no_isolated."""
    vm, pool = make_vm()
    assert vm.config.slab_fix is False
    from mmplug.users import SlabCache
    slab = SlabCache(vm).alloc_slab(poisoned=True)
    assert isolate_movable_page(vm, slab, 0) != 0       # PageMovable is still false ...
    assert [w.rule for w in vm.warnings] == ["BUG-1"]    # ... but PG_locked was taken
    assert not slab.flags & LOCKED and slab.flags & SLAB


def test_owner_of_classifies_every_page():
    vm, pool = make_vm()
    from mmplug.users import LruPages, SlabCache
    slab = SlabCache(vm, order=1).alloc_slab()
    lru = LruPages(vm)
    key = lru.alloc(b"x")
    page = pool.handles[pool.store(b"p")][0].page
    assert vm.owner_of(slab) == "slab"
    assert vm.owner_of(vm.zone.pfn_to_page(slab.pfn + 1)) == "slab"   # tail page
    assert vm.owner_of(lru.pages[key]) == "lru"
    assert vm.owner_of(page) == "testpool"
    assert vm.owner_of(vm.zone.pfn_to_page(vm.zone.start_pfn)) == "free"
    stray = vm.alloc_page()
    assert vm.owner_of(stray) == "other"
    assert vm.unclaimed_pages() == [stray]
