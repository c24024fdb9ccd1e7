"""mmplug.watchdog: time limits on every thread, what a driver raises, exits, memory.

No timing is asserted: a hung call must end and be reported, however loaded the
machine is; each limit is short and each test waits for the end with a generous
pytest timeout.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time

import pytest

from mmplug import watchdog
from mmplug.errors import CallbackTimeout, DriverError, UsageError

#: a hang these tests look for must not hang the test run instead
pytestmark = pytest.mark.timeout(120)

LIMIT = 0.5


def _spin() -> None:
    x = 0
    while True:
        x += 1


def test_a_busy_loop_on_the_main_thread_is_stopped():
    hung = watchdog.guard(_spin, driver="d", hook="spin", limit=LIMIT)
    with pytest.raises(CallbackTimeout) as exc:
        hung()
    assert exc.value.limit == LIMIT and "did not return within 0.5 s" in str(exc.value)


def test_a_blocking_sleep_on_the_main_thread_is_stopped():
    hung = watchdog.guard(time.sleep, driver="d", hook="store", limit=LIMIT)
    with pytest.raises(CallbackTimeout):
        hung(3600)


def test_a_busy_loop_on_another_thread_is_stopped():
    got: list[BaseException] = []

    def worker() -> None:
        try:
            watchdog.guarded_call(_spin, driver="d", hook="free", limit=LIMIT)
        except BaseException as exc:  # the test looks at what it was
            got.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert not t.is_alive()
    (err,) = got
    assert isinstance(err, DriverError) and err.rule == "API-1" and err.hook == "free"
    assert "free() did not return within 0.5 s (hung)" in err.message


@pytest.mark.slow
def test_calls_that_return_in_time_are_never_interrupted():
    """Many short calls, together far longer than the limit, run undisturbed."""
    short = watchdog.guard(time.sleep, driver="d", hook="nap", limit=1.0)
    end = time.monotonic() + 3.0
    n = 0
    while time.monotonic() < end:
        short(0.01)
        n += 1
    assert n > 10


@pytest.mark.parametrize("raise_it, what", [
    ("sys.exit(0)", "called sys.exit(0) (raised SystemExit)"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt itself (not the user's Ctrl-C)"),
    ("raise Gone('lost')", "raised Gone: lost"),
    ("os._exit(3)", "called os._exit(3)"),
])
def test_what_driver_code_raises_is_its_failure(raise_it, what):
    class Gone(BaseException):
        pass

    def driver() -> None:
        exec(raise_it, {"sys": sys, "os": os, "Gone": Gone})

    with watchdog.interrupts(), watchdog.trap_exits():
        with pytest.raises(DriverError) as exc:
            watchdog.guarded_call(driver, driver="drv", hook="destroy", limit=LIMIT)
    err = exc.value
    assert (err.rule, err.driver, err.hook) == ("API-1", "drv", "destroy")
    assert err.message == f"destroy() {what}"


def test_the_users_ctrl_c_passes_through_driver_code():
    def driver() -> None:
        os.kill(os.getpid(), __import__("signal").SIGINT)
        time.sleep(30)

    with watchdog.interrupts():
        with pytest.raises(KeyboardInterrupt):
            watchdog.guarded_call(driver, driver="drv", hook="store", limit=None)
        assert watchdog.user_interrupted()


def test_expected_exceptions_pass_unchanged():
    def store() -> None:
        raise ValueError("too big")

    with pytest.raises(ValueError):
        watchdog.guarded_call(store, driver="d", hook="store", limit=LIMIT,
                              expected=(ValueError,))


def _outcome(call) -> tuple:
    try:
        return ("returned", call())
    except BaseException as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "rule", None),
                getattr(exc, "driver", None), getattr(exc, "hook", None))


@pytest.mark.parametrize("body", [
    "return args", "raise ValueError('too big')", "raise KeyError(args)",
    "raise ContractViolation('REF-1', 'use after free')", "sys.exit(2)",
    "while True: pass",
])
@pytest.mark.parametrize("limit", [LIMIT, None])
def test_a_call_sites_guarded_caller_ends_as_guarded_call_does(body, limit):
    """guarded_caller(fn, ...)(*args) is guarded_call(fn, args, ...) made once: the same
    result, the same exception passed or judged, the same time limit."""
    if "while" in body and limit is None:
        return
    from mmplug.errors import ContractViolation
    namespace = {"sys": sys, "ContractViolation": ContractViolation}
    exec(f"def store(*args):\n    {body}", namespace)
    store = namespace["store"]
    caller = watchdog.guarded_caller(store, driver="drv", hook="store", limit=limit,
                                     expected=lambda: (ValueError,))
    with watchdog.interrupts(), watchdog.trap_exits():
        slow = _outcome(lambda: watchdog.guarded_call(store, (1, 2), driver="drv", hook="store",
                                                      limit=limit, expected=(ValueError,)))
        fast = _outcome(lambda: caller(1, 2))
    assert fast == slow


@pytest.mark.parametrize("text, ok", [("0", None), ("256MiB", 256 << 20), ("1", "at least"),
                                      ("lots", "not a size")])
def test_memory_budget_option(text, ok):
    if isinstance(ok, str):
        with pytest.raises(UsageError, match=ok):
            watchdog.memory_budget(text)
    else:
        assert watchdog.memory_budget(text) == ok


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), 1e9])
def test_absurd_time_limits_are_usage_errors(seconds):
    with pytest.raises(UsageError, match="--timeout"):
        watchdog.time_limit(seconds)


def _python(code: str, timeout: float = 120):
    import subprocess
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


def test_memory_limit_turns_runaway_allocation_into_memory_error():
    r = _python("""
        from mmplug import watchdog
        with watchdog.memory_limit(256 << 20):
            try:
                junk = [bytearray(1 << 20) for _ in range(100_000)]
            except MemoryError:
                print("MemoryError")
        junk = bytearray(512 << 20)   # the limit is gone again
        print("after", len(junk))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["MemoryError", "after", str(512 << 20)]


@pytest.mark.slow
def test_a_call_that_swallows_every_interrupt_ends_a_command_with_one_line():
    """hard_stop(): after MAX_FIRES refused interrupts the process gives up, naming the call."""
    r = _python("""
        import time
        from mmplug import watchdog

        def stubborn():
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass

        with watchdog.hard_stop():
            watchdog.guard(stubborn, driver="mule", hook="stubborn", limit=0.3)()
        print("not reached")
    """)
    assert r.returncode == 1 and "not reached" not in r.stdout
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("mmplug: error: driver mule, callback stubborn: did not "
                               "return within 0.3 s and ignored 3 interrupts")


def test_each_simulated_cpu_keeps_its_own_driver_call():
    """cpu1 enters a call, yields to cpu0, whose call ends; cpu1 then spins in its call: the
    spin is still seen (the scheduler saves and restores the lane's call per CPU)."""
    from mmplug.cpus.scheduler import Scheduler

    sched = Scheduler(cpus=2)

    def a() -> None:
        sched.point("cond_resched a")       # a voluntary yield: cpu1 runs

    def b() -> None:
        sched.point("cond_resched b")       # back to cpu0, which finishes its call
        _spin()

    call_a = watchdog.guard(a, driver="d", hook="a", limit=LIMIT)
    call_b = watchdog.guard(b, driver="d", hook="b", limit=LIMIT)
    out = sched.run([call_a, call_b])
    assert isinstance(out.error, CallbackTimeout) and out.error_cpu == 1
    assert out.error.call.hook == "b"


def test_the_scheduler_lets_the_users_ctrl_c_through():
    import signal

    from mmplug.cpus.scheduler import Scheduler

    sched = Scheduler(cpus=2)

    def pressed() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)

    with watchdog.interrupts():
        with pytest.raises(KeyboardInterrupt):
            sched.run([pressed, lambda: None])


def test_a_forked_child_watches_its_own_calls():
    r = _python("""
        import os, time
        from mmplug import watchdog
        from mmplug.errors import CallbackTimeout
        nap = watchdog.guard(time.sleep, driver="d", hook="nap", limit=0.5)
        nap(0.01)                   # the parent's lane and monitor exist
        pid = os.fork()
        if pid == 0:
            try:
                nap(60)
            except CallbackTimeout:
                os._exit(0)
            os._exit(2)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    assert r.stdout.strip() == "0", r.stderr
