"""The Scheduler backend: CPUs, blocking locks, detectors, strategies, schedules."""

from __future__ import annotations

import pytest

from mmplug import VM, ContractViolation, VMConfig
from mmplug.constants import ISOLATE_ASYNC_MIGRATE, MigrateMode
from mmplug.cpus.locks import SchedLock
from mmplug.cpus.schedule import (
    DFSSearch,
    NondeterminismError,
    PCTStrategy,
    RandomStrategy,
    ReplayStrategy,
    Strategy,
    decode_schedule,
    encode_schedule,
)
from mmplug.cpus.scheduler import Scheduler
from mmplug.cpus.single import SingleCPU
from mmplug.errors import Deadlock


def small_vm(sched):
    return VM(VMConfig(nr_pages=64, pageblock_order=4, max_order=6, min_free_pages=0),
              cpus=sched)


def abba(sched):
    """Two CPUs taking two mutexes in opposite orders, with a point in between."""
    a, b = sched.mutex("a"), sched.mutex("b")

    def cpu0():
        with a:
            sched.point("between")
            with b:
                pass

    def cpu1():
        with b:
            sched.point("between")
            with a:
                pass

    return [cpu0, cpu1]


# --- schedules ---------------------------------------------------------------------------

def test_schedule_strings_are_run_length_encoded_and_round_trip():
    choices = [0, 0, 0, 1, 0, 1, 1]
    text = encode_schedule(choices)
    assert text == "0x3-1-0-1x2"
    assert decode_schedule(text) == choices
    assert encode_schedule([]) == "-" and decode_schedule("-") == []


@pytest.mark.parametrize("bad", ["a", "0x", "0-x2", "1x0", "0,1"])
def test_malformed_schedule_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="schedule"):
        decode_schedule(bad)


def test_trailing_choices_the_default_would_make_are_dropped():
    sched = Scheduler(2)
    out = sched.run(abba(sched), Strategy())
    assert out.schedule == "-" and out.choices  # choice points existed, all default


# --- single-CPU mode ------------------------------------------------------------------------

def test_one_cpu_scheduler_uses_the_plain_single_cpu_operations():
    sched = Scheduler(cpus=1)
    assert sched.fast
    assert sched.trylock_page.__func__ is SingleCPU.trylock_page
    assert sched.put_page.__func__ is SingleCPU.put_page
    fn = lambda page, mode: True  # noqa: E731
    assert sched.wrap_callback(fn, "isolate_page", "d") is fn


def test_one_cpu_run_calls_the_body_and_reports_its_error():
    sched = Scheduler(cpus=1)
    out = sched.run([lambda: 1 / 0])
    assert isinstance(out.error, ZeroDivisionError) and out.error_cpu == 0


def test_outside_run_a_held_lock_is_a_deadlock_not_a_hang():
    sched = Scheduler(2)
    lock = sched.mutex("m")
    lock.lock()
    with pytest.raises(Deadlock, match="recursive"):
        lock.lock()


# --- blocking and waking ----------------------------------------------------------------------

def test_a_waiter_blocks_until_the_holder_releases():
    sched = Scheduler(2)
    lock = sched.spinlock("s")
    log = []

    def holder():
        with lock:
            log.append("h-in")
            sched.point("inside")
            log.append("h-out")

    def waiter():
        with lock:
            log.append("w")

    # cpu0 takes the lock; at "inside" the schedule switches to cpu1, which must block.
    out = sched.run([holder, waiter], ReplayStrategy([0, 0, 0, 1]))
    assert out.error is None and not out.deadlock
    assert log == ["h-in", "h-out", "w"]


def test_page_lock_waiters_sleep_and_are_woken():
    sched = Scheduler(2)
    vm = small_vm(sched)
    page = vm.zone.alloc_pages(0, 0)
    order = []

    def first():
        sched.lock_page(page)
        sched.point("hold")
        order.append(0)
        sched.unlock_page(page)

    def second():
        sched.lock_page(page)
        order.append(1)
        sched.unlock_page(page)

    for seed in range(20):
        order.clear()
        out = sched.run([first, second], RandomStrategy(seed))
        assert out.error is None and not out.deadlock, out
        assert sorted(order) == [0, 1]
    assert not page.flags & 1


def test_deadlock_reports_what_each_cpu_holds_and_waits_for():
    sched = Scheduler(2)
    out = sched.run(abba(sched), ReplayStrategy("0x2-1"))
    assert out.deadlock
    text = "\n".join(c.render() for c in out.cpus)
    assert "cpu0 [blocked" in text and "holds 'a'" in text and "waits for 'b' held by cpu1" in text
    assert "cpu1 [blocked" in text and "holds 'b'" in text and "waits for 'a' held by cpu0" in text


def test_recursive_page_lock_is_a_deadlock_on_that_cpu():
    sched = Scheduler(2)
    vm = small_vm(sched)
    page = vm.zone.alloc_pages(0, 0)

    def twice():
        sched.lock_page(page)
        sched.lock_page(page)

    out = sched.run([twice, lambda: None])
    assert isinstance(out.error, Deadlock) and "already locked by cpu0" in str(out.error)


def test_rwlock_readers_share_and_a_writer_excludes():
    sched = Scheduler(2)
    rw = sched.rwlock("rw")
    seen = []

    def reader():
        rw.read_lock()
        sched.point("reading")
        seen.append(("r", rw.writer is None))
        rw.read_unlock()

    def writer():
        rw.write_lock()
        seen.append(("w", not rw.readers))
        rw.write_unlock()

    for seed in range(30):
        seen.clear()
        out = sched.run([reader, writer], RandomStrategy(seed))
        assert out.error is None and not out.deadlock
        assert all(ok for _, ok in seen)

    def readers_both():
        rw.read_lock()
        sched.point("reading")
        seen.append(len(rw.readers))
        rw.read_unlock()

    seen.clear()
    sched.run([readers_both, readers_both], ReplayStrategy("0x2-1"))
    assert 2 in seen  # both CPUs held it for reading at once


# --- the rules the scheduler enforces ---------------------------------------------------------

def test_sleeping_lock_under_a_spinlock_is_lck1():
    sched = Scheduler(2)
    spin, mtx = sched.spinlock("s"), sched.mutex("m")

    def bad():
        with spin:
            mtx.lock()

    out = sched.run([bad, lambda: None])
    assert isinstance(out.error, ContractViolation) and out.error.rule == "LCK-1"


def migration_against_holder(mode):
    sched = Scheduler(2)
    mtx = sched.mutex("drv.mutex")

    def migratepage(mapping, newpage, page, mode):
        mtx.lock()
        mtx.unlock()
        return 0

    wrapped = sched.wrap_callback(migratepage, "migratepage", "drv")

    def holder():
        with mtx:
            sched.point("hold")

    return sched.run([holder, lambda: wrapped(None, None, None, mode)], ReplayStrategy("0x2-1"))


def test_contended_mutex_in_an_async_migratepage_is_lck1():
    err = migration_against_holder(MigrateMode.ASYNC).error
    assert isinstance(err, ContractViolation) and err.rule == "LCK-1"
    assert err.driver == "drv" and err.hook == "migratepage" and "ASYNC" in str(err)


def test_contended_mutex_in_a_sync_migratepage_just_waits():
    out = migration_against_holder(MigrateMode.SYNC)
    assert out.error is None and not out.deadlock


def test_async_isolation_mode_marks_the_callback_async():
    sched = Scheduler(2)
    seen = []

    def isolate_page(page, mode):
        seen.append(sched._cur.async_ctx)
        return True

    wrapped = sched.wrap_callback(isolate_page, "isolate_page", "drv")
    sched.run([lambda: wrapped(None, ISOLATE_ASYNC_MIGRATE), lambda: wrapped(None, 0)])
    assert sorted(seen) == [False, True]


def test_unlock_by_another_cpu_is_lck2():
    sched = Scheduler(2)
    lock = sched.spinlock("s")
    out = sched.run([lock.lock, lock.unlock], ReplayStrategy("0x2-1"))
    assert isinstance(out.error, ContractViolation) and out.error.rule == "LCK-2"
    assert out.error_cpu == 1


def test_unlock_of_a_free_page_lock_is_lck2():
    sched = Scheduler(2)
    page = small_vm(sched).zone.alloc_pages(0, 0)
    out = sched.run([lambda: sched.unlock_page(page), lambda: None])
    assert isinstance(out.error, ContractViolation) and out.error.rule == "LCK-2"


def test_a_cpu_that_never_finishes_is_a_livelock():
    sched = Scheduler(2, max_steps=500)
    flag = []

    def spin():
        while not flag:
            sched.point("spin")

    out = sched.run([spin, spin])
    assert out.livelock and out.steps > 500


def test_yield_points_let_a_waiting_cpu_give_way_under_the_default_policy():
    sched = Scheduler(2, max_steps=500)
    flag = []

    def waiter():
        while not flag:
            sched.point("cond_resched: wait for flag")

    def setter():
        flag.append(1)

    out = sched.run([waiter, setter], Strategy())
    assert not out.livelock and out.error is None


# --- strategies ------------------------------------------------------------------------------

def interleavings(strategy_factory, n=40):
    results = set()
    for i in range(n):
        sched = Scheduler(2)
        out = sched.run(abba(sched), strategy_factory(i))
        results.add((out.schedule, out.deadlock))
    return results


def test_same_seed_same_schedule_different_seeds_differ():
    sched1, sched2 = Scheduler(2), Scheduler(2)
    s1 = sched1.run(abba(sched1), RandomStrategy(7))
    s2 = sched2.run(abba(sched2), RandomStrategy(7))
    assert (s1.choices, s1.deadlock) == (s2.choices, s2.deadlock)
    assert len(interleavings(RandomStrategy)) > 3


def test_pct_is_seeded_and_finds_the_deadlock():
    found = interleavings(lambda i: PCTStrategy(i, 2, 2, 8))
    assert any(dead for _, dead in found)
    s1, s2 = Scheduler(2), Scheduler(2)
    assert (s1.run(abba(s1), PCTStrategy(3, 2, 3, 8)).schedule
            == s2.run(abba(s2), PCTStrategy(3, 2, 3, 8)).schedule)


def test_dfs_enumerates_distinct_schedules_and_finds_the_deadlock():
    search = DFSSearch(bound=2)
    schedules, deadlocks = [], 0
    while (strategy := search.next_strategy()) is not None:
        sched = Scheduler(2)
        out = sched.run(abba(sched), strategy)
        schedules.append(out.schedule)
        deadlocks += out.deadlock
    assert search.exhausted
    assert len(schedules) == len(set(schedules)) > 2
    assert deadlocks


def test_dfs_preemption_bound_limits_the_search():
    counts = []
    for bound in (0, 1, 2):
        search = DFSSearch(bound)
        n = 0
        while (strategy := search.next_strategy()) is not None:
            sched = Scheduler(2)
            sched.run(abba(sched), strategy)
            n += 1
        counts.append(n)
    assert counts[0] < counts[1] < counts[2]


def test_replay_reproduces_the_run_exactly():
    for seed in range(10):
        sched = Scheduler(2)
        out = sched.run(abba(sched), RandomStrategy(seed))
        sched2 = Scheduler(2)
        again = sched2.run(abba(sched2), ReplayStrategy(out.schedule, expect=out.trace))
        assert again.error is None
        assert (again.choices, again.deadlock) == (out.choices, out.deadlock)


def test_replay_notices_a_different_set_of_runnable_cpus():
    sched = Scheduler(2)
    out = sched.run(abba(sched), RandomStrategy(1))
    trace = list(out.trace)
    trace[0] = (0b01, trace[0][1])  # pretend only cpu0 could run at the first choice
    sched2 = Scheduler(2)
    again = sched2.run(abba(sched2), ReplayStrategy(out.schedule, expect=trace))
    assert isinstance(again.error, NondeterminismError)
    assert "choice point 0" in str(again.error)


def test_replay_rejects_a_schedule_that_picks_a_cpu_that_cannot_run():
    with pytest.raises(NondeterminismError, match="picks cpu2"):
        ReplayStrategy("2").choose([0, 1], 0, 0, "lock_page", 0)


def test_locks_are_schedlocks_with_owner_tracking():
    sched = Scheduler(2)
    lock = sched.spinlock("s")
    assert isinstance(lock, SchedLock)
    lock.lock()
    assert lock.owner.index == 0 and sched.held_locks() == ["<spinlock 's'> held by cpu0"]
    lock.unlock()
    assert sched.held_locks() == []
