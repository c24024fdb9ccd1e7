"""The lock-order graph (LCK-3): inversions found without the deadlock happening."""

from __future__ import annotations

from mmplug import VM, VMConfig
from mmplug.cpus.lockdep import PAGE_LOCK, LockClass, LockDep, Witness
from mmplug.cpus.schedule import ReplayStrategy, Strategy
from mmplug.cpus.scheduler import Scheduler

A = LockClass("driver", "a")
B = LockClass("driver", "b")
C = LockClass("vm", "c")


def test_opposite_orders_are_an_inversion_with_both_witnesses():
    dep = LockDep()
    dep.acquire([A], B, Witness(0, "drv.free"))
    assert not dep.inversions
    dep.acquire([B], A, Witness(1, "drv.migratepage"))
    (inv,) = dep.inversions
    text = inv.render()
    assert "'b' -> 'a' (cpu1 in drv.migratepage)" in text
    assert "'a' -> 'b' (cpu0 in drv.free)" in text


def test_a_longer_cycle_is_found_through_the_graph():
    dep = LockDep()
    dep.acquire([A], B, Witness(0, "x"))
    dep.acquire([B], C, Witness(0, "y"))
    dep.acquire([C], A, Witness(1, "z"))
    (inv,) = dep.inversions
    assert [(a, b) for a, b, _ in inv.path] == [(A, B), (B, C)]


def test_the_same_order_twice_and_same_class_nesting_are_fine():
    dep = LockDep()
    dep.acquire([A], B, Witness(0, "x"))
    dep.acquire([A], B, Witness(1, "x"))
    dep.acquire([PAGE_LOCK], PAGE_LOCK, Witness(0, "vm"))
    assert not dep.inversions


def test_an_inversion_is_reported_once():
    dep = LockDep()
    dep.acquire([A], B, Witness(0, "x"))
    dep.acquire([B], A, Witness(1, "y"))
    dep.acquire([B], A, Witness(1, "y"))
    assert len(dep.inversions) == 1


def test_scheduler_sees_the_inversion_on_a_run_that_did_not_deadlock():
    sched = Scheduler(2)
    vm = VM(VMConfig(nr_pages=64, pageblock_order=4, max_order=6, min_free_pages=0), cpus=sched)
    page = vm.zone.alloc_pages(0, 0)
    mtx = sched.mutex("drv.mutex")

    def vm_side():   # page lock, then the driver's mutex (as migratepage under the VM)
        sched.lock_page(page)
        with mtx:
            pass
        sched.unlock_page(page)

    def driver_side():  # the driver's mutex, then the page lock
        with mtx:
            sched.lock_page(page)
            sched.unlock_page(page)

    out = sched.run([vm_side, driver_side], Strategy())  # one after the other
    assert not out.deadlock and out.error is None
    (inv,) = sched.lockdep.inversions
    assert "page lock" in inv.render() and "'drv.mutex'" in inv.render()


def test_trylock_adds_no_edge_but_counts_as_held():
    sched = Scheduler(2)
    vm = VM(VMConfig(nr_pages=64, pageblock_order=4, max_order=6, min_free_pages=0), cpus=sched)
    page = vm.zone.alloc_pages(0, 0)
    mtx = sched.mutex("m")

    def body():
        with mtx:
            assert sched.trylock_page(page)   # no edge m -> page lock
            sched.unlock_page(page)
        assert sched.trylock_page(page)
        with mtx:                             # edge page lock -> m
            pass
        sched.unlock_page(page)

    sched.run([body, lambda: None], ReplayStrategy("-"))
    assert not sched.lockdep.inversions
    assert sched.lockdep.edges == {PAGE_LOCK: {LockClass("driver", "m"): Witness(0, "vm")}}
