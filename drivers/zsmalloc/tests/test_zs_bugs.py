"""BUG-5, BUG-6, BUG-7: the fixed behaviour, and the bug back when the option asks for it.

Each race is played on one CPU: `ScriptedCPU` runs the other actor's step at
the schedule point where the race needs it, so every run is the same.
"""

from __future__ import annotations

import pytest

from mmplug import ContractViolation, DriverError
from mmplug.kernel import page_locked, trylock_page, unlock_page
from mmplug.page import BUDDY
from mmplug_zsmalloc.deferred import lock_zspage
from mmplug_zsmalloc.sizeclass import ZS_HANDLE_SIZE, Fullness

DRAIN = "zs_destroy_pool: wait_for_isolated_drain"
LOCK_WAIT = "lock_zspage: wait for a subpage's lock"


# --- BUG-5: pool destroyed while a page is isolated -----------------------------------------

def test_bug5_fixed_destroy_waits_until_the_isolated_page_is_put_back(make_pool, steps, scripted):
    cpu = scripted()
    vm, pool = make_pool(cpus=cpu)
    free_at_start = vm.zone.nr_free_pages
    h = pool.store(bytes(500))
    pagelist = steps.isolate(vm, steps.subpages(pool, h)[0])
    # Compaction, on "another CPU", gives the page back while destroy waits.
    cpu.at(DRAIN, lambda: steps.putback(vm, pagelist))
    vm.destroy_driver(pool)
    assert any(p.endswith(DRAIN) for p in cpu.reached)
    assert pool.isolated_pages == 0 and pool.pages() == []
    assert vm.zone.nr_free_pages == free_at_start
    vm.zone.check_free_lists()


def test_bug5_fixed_destroy_on_one_cpu_with_nobody_to_drain_is_a_deadlock(make_pool, steps):
    vm, pool = make_pool()
    h = pool.store(bytes(500))
    steps.isolate(vm, steps.subpages(pool, h)[0])
    with pytest.raises(DriverError, match="wait_for_isolated_drain"):
        vm.destroy_driver(pool)


def test_bug5_buggy_destroy_leaves_the_vm_calling_a_dead_pool(make_pool, steps):
    vm, pool = make_pool(bugs={"BUG-5"})
    h = pool.store(bytes(500))
    pagelist = steps.isolate(vm, steps.subpages(pool, h)[0])
    with pytest.raises(ContractViolation, match="REL-3"):
        vm.destroy_driver(pool)
    with pytest.raises(DriverError, match=r"putback_page.*destroyed zsmalloc pool"):
        steps.putback(vm, pagelist)


# --- BUG-6: zspage emptied while isolated, then migrated ------------------------------------

@pytest.mark.parametrize("bugs", [set(), {"BUG-6"}], ids=["fixed", "BUG-6"])
def test_bug6_migrated_empty_zspage_is_freed_only_when_fixed(make_pool, steps, bugs):
    vm, pool = make_pool(bugs=bugs)
    h = pool.store(bytes(500))
    pagelist = steps.isolate(vm, steps.subpages(pool, h)[0])
    pool.free(h)
    assert steps.migrate(vm, pagelist) == 0
    pool.run_deferred_work()
    pool.run_deferred_work()
    if not bugs:
        assert pool.pages() == [] and pool.pages_allocated == 0
    else:
        # Left on ZS_EMPTY with nobody queued to free it.
        (zspage,) = pool.zspages
        assert zspage.list == Fullness.ZS_EMPTY and zspage.inuse == 0
        assert pool.pages_allocated == 1 and not pool.lengths
    pool.verify()


# --- BUG-7: lock_zspage racing a subpage's migration ----------------------------------------

@pytest.mark.parametrize("bugs", [set(), {"BUG-7"}], ids=["fixed", "BUG-7"])
def test_bug7_lock_zspage_while_a_subpage_migrates(make_pool, steps, scripted, bugs):
    """The walker meets a subpage whose migration holds its lock, and waits.

    lock_zspage is called directly: in v4.19 its only caller, async_free_zspage,
    sees empty zspages only, and zs_page_isolate refuses those, so the race
    needs the walk and the migration brought together by hand.
    """
    cpu = scripted()
    vm, pool = make_pool(cpus=cpu, bugs=bugs)
    # Another actor holds a reference across the walk: exact refcount checks do not apply.
    vm.strict_refcounts = False
    cls = steps.class_with_pages(pool, 2)
    handles = [pool.store(bytes(cls.size - ZS_HANDLE_SIZE)) for _ in range(cls.objs_per_zspage)]
    zspage = steps.zspage_of(pool, handles[0])
    first, second = steps.subpages(pool, handles[0])
    pagelist = steps.isolate(vm, second)
    # The migrating CPU is inside __unmap_and_move: it holds the page lock.
    assert trylock_page(second)
    newpages = []

    def migration_finishes():
        unlock_page(second)
        assert steps.migrate(vm, pagelist, newpages=newpages) == 0

    cpu.at(LOCK_WAIT, migration_finishes)
    locked = lock_zspage(pool, zspage)
    assert any(p.endswith(LOCK_WAIT) for p in cpu.reached)
    new = newpages[0]
    chain = list(pool.struct_pages.chain(zspage))
    assert chain == [first, new]
    if not bugs:
        assert locked == chain and all(page_locked(p) for p in chain)
    else:
        # The walk locked the old page (already freed) and never reached its replacement.
        assert locked == [first, second]
        assert second.flags & BUDDY and page_locked(second)
        assert not page_locked(new)
    for page in locked:
        unlock_page(page)
    pool.verify()


def test_deferred_work_is_queued_once_however_often_it_is_kicked(make_pool):
    vm, pool = make_pool()
    pool.kick_deferred_free()
    pool.kick_deferred_free()
    assert len(pool.workqueue.pending) == 1
    assert pool.run_deferred_work() == 1
    assert pool.run_deferred_work() == 0
