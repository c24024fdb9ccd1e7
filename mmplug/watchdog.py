"""Limits on driver code: time, memory, and who may stop the tool.

Every call into a driver (its three callbacks, every instance call, the
factory, the import of its module) runs *guarded*: under a time limit, and
with whatever it raises turned into the driver's failure.  A hung call
becomes a `CallbackTimeout` inside the hung code, which the call site reports
as a DriverError naming the driver, the callback, the page and the rule.

How a call is watched.  Each thread has a `Lane`: the `Call` in progress
(driver, hook, limit) and a flag set when a call starts.  The hot path pays a
thread-local lookup and three stores per call: no system call, no clock read.
A driver's movable callbacks, once or more per page, pay no frame for it
either: mmplug.migrate's call sites store their `MovableCalls` in the lane
themselves; everything else is wrapped by `guard` or called by `guarded_call`.

One monitor thread samples every lane a few times per limit; a lane that
stays in the same call for `limit` seconds is fired at:

- the main thread (the greenlet CPUs of mmplug.cpus.scheduler run there too): a
  real-time signal sent to it interrupts even a blocking system call (sleep,
  a lock, I/O), and its handler raises CallbackTimeout in the running code;
- any other thread (a Dask worker's): CallbackTimeout is made the thread's
  asynchronous exception (PyThreadState_SetAsyncExc).  Limit: it is raised at
  the next bytecode, so a C call that blocks (time.sleep, a lock, a socket)
  is not interrupted until it returns; compare's worker processes are the
  backstop for those (they are killed from outside).

Driver code that swallows the exception, or never gets back to the
interpreter, is fired at again every `limit`.  In a command (`hard_stop()`)
the third refusal ends the process with one line naming the driver and the
callback; a C loop that holds the GIL (so that the monitor itself cannot
run) is ended by faulthandler's own watchdog thread, which needs no GIL, after
`backstop` seconds without news from the monitor (a traceback and exit 1).

CallbackTimeout is a BaseException so that a driver's `except Exception:` does
not swallow it (asyncio.CancelledError is one for the same reason).

The state here is process-wide because signals, RLIMIT_AS and os._exit are.
"""

from __future__ import annotations

import ctypes
import faulthandler
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from attrs import frozen
from greenlet import GreenletExit

from .errors import CallbackTimeout, ContractViolation, DriverError, UsageError
from .units import parse_bytes

#: seconds one driver call may run (VMConfig.callback_timeout; --timeout of the commands)
DEFAULT_LIMIT = 10.0
#: seconds the import of a driver's module (and its mmplug_driver hook) may take
IMPORT_LIMIT = 60.0
#: seconds between two looks of the monitor that mean the process was stopped or starved
STALL = 5.0
#: interrupts a hung call may ignore before a command gives up on the process
MAX_FIRES = 3
#: the signal that carries a timeout to the main thread (real-time: nobody else's)
TIMEOUT_SIGNAL = signal.SIGRTMIN + 2 if hasattr(signal, "SIGRTMIN") else None
#: the longest message text taken from what a driver raised
MAX_MESSAGE = 200


@frozen(slots=True)
class Call:
    """A guarded call site: which driver, which hook, and its time limit in seconds."""

    driver: str
    hook: str
    limit: float

    def describe(self) -> str:
        return f"driver {self.driver}, callback {self.hook}"


@frozen(slots=True)
class MovableCalls:
    """The Call of each movable callback of one driver instance (AddressSpace.watch)."""

    isolate_page: Call
    migratepage: Call
    putback_page: Call


class Lane:
    """One thread's watch: the call in progress and what the monitor saw of it.

    `call` is the innermost guarded call running on the thread (None: mmplug's
    own code); `fresh` is set by every call that starts and cleared by the
    monitor, so the monitor can tell one long call from many short ones.
    mmplug.cpus.scheduler saves and restores `call` when it switches simulated CPUs.
    """

    __slots__ = ("call", "fresh", "seen", "since", "fires", "fired", "thread", "ident", "main")

    def __init__(self, thread: threading.Thread) -> None:
        self.call: Call | None = None
        self.fresh = False
        self.seen: Call | None = None
        self.since = 0.0
        self.fires = 0
        self.fired: Call | None = None
        self.thread = thread
        self.ident = thread.ident
        self.main = thread is threading.main_thread()


class _Watch:
    """The process's lanes, the monitor thread and the interrupt state."""

    def __init__(self) -> None:
        self.tls = threading.local()
        self.lock = threading.Lock()
        self.lanes: list[Lane] = []
        self.main_lane: Lane | None = None
        self.monitor: threading.Thread | None = None
        self.tick = 0.25
        self.calls: dict[tuple[str, str, float], Call] = {}
        self.timeouts: dict[Call, type] = {}
        #: > 0 inside hard_stop(): a call that cannot be stopped ends the process
        self.hard = 0
        self.backstop = 60.0
        self.armed_at = 0.0
        #: set by the SIGINT handler of interrupts(): the user pressed Ctrl-C
        self.interrupted = False
        self.sigint_ours = 0
        self.real_exit: Callable[[int], Any] = os._exit

    # --- lanes ------------------------------------------------------------------------
    def lane(self) -> Lane:
        try:
            lane: Lane = self.tls.lane
        except AttributeError:
            lane = self._new_lane()
        return lane

    def _new_lane(self) -> Lane:
        lane = Lane(threading.current_thread())
        self.tls.lane = lane
        if lane.main:
            try:
                if TIMEOUT_SIGNAL is None:
                    raise ValueError("no real-time signals")
                signal.signal(TIMEOUT_SIGNAL, _on_timeout_signal)
                self.main_lane = lane
            except (TypeError, ValueError):   # no real-time signals, or not the main interpreter
                lane.main = False
        with self.lock:
            self.lanes.append(lane)
        self.start_monitor()
        return lane

    def call_for(self, driver: str, hook: str, limit: float) -> Call:
        key = (driver, hook, limit)
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = Call(driver, hook, float(limit))
            self.tick = min(self.tick, max(0.01, call.limit / 5))
        return call

    def timeout(self, call: Call) -> type:
        """The CallbackTimeout class of one call site (async delivery raises a class)."""
        cls = self.timeouts.get(call)
        if cls is None:
            cls = self.timeouts[call] = type("CallbackTimeout", (CallbackTimeout,),
                                             {"limit": call.limit, "call": call})
        return cls

    def after_fork(self) -> None:
        """In a forked child: only the forking thread exists, and no monitor runs."""
        self.lock = threading.Lock()
        self.lanes = []
        self.main_lane = None
        self.monitor = None
        self.hard = 0
        try:
            del self.tls.lane   # the wrappers keep this tls: its lane is made again
        except AttributeError:
            pass

    # --- the monitor ---------------------------------------------------------------------
    def start_monitor(self) -> None:
        with self.lock:
            if self.monitor is not None and self.monitor.is_alive():
                return
            self.monitor = threading.Thread(target=self._run, name="mmplug-watchdog",
                                            daemon=True)
            self.monitor.start()

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            # A gap of seconds between ticks: the process was stopped (Ctrl-Z) or starved,
            # and the time passed belongs to no call.
            stalled = now - last > STALL
            last = now
            try:
                self._tick(now, stalled)
            except Exception:
                pass

    def _tick(self, now: float, stalled: bool) -> None:
        with self.lock:
            lanes = list(self.lanes)
        for lane in lanes:
            if not lane.thread.is_alive():
                with self.lock:
                    self.lanes.remove(lane)
                continue
            call = lane.call
            if call is None:
                lane.seen = None
                continue
            if lane.fresh or call is not lane.seen or stalled:
                lane.fresh = False
                lane.seen = call
                lane.since = now
                lane.fires = 0
                continue
            if now - lane.since >= call.limit:
                lane.since = now
                lane.fires += 1
                if lane.fires > MAX_FIRES and self.hard:
                    self._give_up(call, lane.fires - 1)
                self._fire(lane, call)
        with self.lock:   # never re-armed after hard_stop() ended
            if self.hard and now - self.armed_at > self.backstop / 4:
                self._arm_backstop(now)

    def _fire(self, lane: Lane, call: Call) -> None:
        assert lane.ident is not None   # a lane is made by its running thread
        if lane.main:
            assert TIMEOUT_SIGNAL is not None   # a main lane has one (_new_lane)
            lane.fired = call
            try:
                signal.pthread_kill(lane.ident, TIMEOUT_SIGNAL)
            except (OSError, ValueError):
                pass
            return
        set_async = ctypes.pythonapi.PyThreadState_SetAsyncExc
        set_async(ctypes.c_ulong(lane.ident), ctypes.py_object(self.timeout(call)))

    def _give_up(self, call: Call, ignored: int) -> None:
        line = (f"mmplug: error: {call.describe()}: did not return within {call.limit:g} s and "
                f"ignored {ignored} interrupts (it catches BaseException or is blocked outside "
                "Python); stopping\n")
        try:
            os.write(2, line.encode(errors="replace"))
        finally:
            self.real_exit(1)

    def _arm_backstop(self, now: float) -> None:
        self.armed_at = now
        faulthandler.dump_traceback_later(self.backstop, exit=True, file=2)


_W = _Watch()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_W.after_fork)


def _on_timeout_signal(signum: int, frame: Any) -> None:
    lane = _W.main_lane
    call = lane.fired if lane is not None else None
    if lane is None or call is None:
        return
    lane.fired = None
    # Only into the call that overran: it may have returned while the signal flew.
    if lane.call is call and not lane.fresh:
        raise _W.timeout(call)()


def lane() -> Lane:
    """The calling thread's lane (created, and the monitor started, on first use)."""
    return _W.lane()


#: every thread's lane, as attribute `lane` (missing until `new_lane()` makes it), for a call
#: site that stores its Call in the lane in its own frame: ``prev = ln.call; ln.call = call;
#: ln.fresh = True``, then ``ln.call = prev`` however the call ends (mmplug.migrate)
LANES = _W.tls
new_lane = _W._new_lane


def movable_calls(driver: str, limit: float | None) -> MovableCalls | None:
    """The Calls of a driver's movable callbacks under `limit` (None: no limit, no watch)."""
    if limit is None:
        return None
    return MovableCalls(_W.call_for(driver, "isolate_page", limit),
                        _W.call_for(driver, "migratepage", limit),
                        _W.call_for(driver, "putback_page", limit))


# --- guarding calls ----------------------------------------------------------------------

def guard(fn: Callable[..., Any], *, driver: str, hook: str,
          limit: float | None) -> Callable[..., Any]:
    """`fn` under the time limit (no limit: `fn` itself).

    A hang raises CallbackTimeout out of the wrapper; everything else `fn`
    raises passes unchanged, for the call site to judge (mmplug.migrate's
    call sites check what a callback returned and raised).
    """
    if limit is None:
        return fn
    guarded: Callable[..., Any] = _GENERIC(fn, _W.call_for(driver, hook, limit), _W.tls,
                                           _W._new_lane)
    guarded.__wrapped__ = fn  # type: ignore[attr-defined]
    return guarded


def _guard_maker(params: str) -> Callable[..., Any]:
    """make(fn, call, tls, new_lane, judge=None) -> guarded(PARAMS): the wrapper written out
    for one argument list, as attrs writes __init__, so that a guarded call costs one frame:
    the instance calls of a comparison run once or more per object."""
    source = f"""
def make(fn, call, tls, new_lane, judge=None):
    def guarded({params}):
        try:
            ln = tls.lane
        except AttributeError:
            ln = new_lane()
        prev = ln.call
        ln.call = call
        ln.fresh = True
        try:
            got = fn({params})
        except BaseException as exc:
            ln.call = prev
            if judge is not None:
                judge(exc)
            raise
        ln.call = prev
        return got
    return guarded
"""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<mmplug.watchdog guard({params})>", "exec"), namespace)
    make: Callable[..., Any] = namespace["make"]
    return make


_GENERIC = _guard_maker("*args, **kwargs")
_POSITIONAL = _guard_maker("*args")


def guarded_call(fn: Callable[..., Any], args: tuple[Any, ...] = (), *, driver: str, hook: str,
                 limit: float | None, page: Any = None, rule: str = "API-1",
                 expected: tuple[type[BaseException], ...] = ()) -> Any:
    """fn(*args) as driver code: under the time limit, and whatever it raises but
    `expected` becomes a DriverError of `rule` naming the driver, the hook and the
    page (a ContractViolation the VM raised meanwhile gets them filled in)."""
    if limit is None:
        ln = None
    else:
        # _W.lane() and _W.call_for() written out: this is every instance call's path
        try:
            ln = _W.tls.lane
        except AttributeError:
            ln = _W._new_lane()
        call = _W.calls.get((driver, hook, limit))
        prev = ln.call
        ln.call = call if call is not None else _W.call_for(driver, hook, limit)
        ln.fresh = True
    try:
        return fn(*args)
    except BaseException as exc:
        _judge(exc, expected, driver, hook, page, rule)
        raise   # (_judge raises; this line is never reached)
    finally:
        if ln is not None:
            ln.call = prev


def _judge(exc: BaseException, expected: tuple[type[BaseException], ...], driver: str,
           hook: str, page: Any, rule: str) -> None:
    """Raise what guarded driver code that raised `exc` ends in (called while `exc` is
    being handled): `exc` itself if expected or passing through, else the driver's error."""
    if expected and isinstance(exc, expected):
        raise
    if isinstance(exc, ContractViolation):
        raise exc.with_context(driver=driver, hook=hook, page=page)
    if passes_through(exc):
        raise
    raise driver_error(exc, rule, driver=driver, hook=f"{hook}()", page=page) from exc


def guarded_caller(fn: Callable[..., Any], *, driver: str, hook: str, limit: float | None,
                   expected: Callable[[], tuple[type[BaseException], ...]],
                   enter: Callable[[str], str] | None = None,
                   leave: Callable[[str], None] | None = None) -> Callable[..., Any]:
    """guarded_call(fn, args, ...) of one call site as a function of `args` alone, with
    what is the same on every call looked up once: the instance calls of a comparison
    (a store, a read and a free per object) go through it.  The time limit is kept by
    guard()'s generic wrapper; `expected()` is asked only when `fn` raises; `enter(where)` and
    `leave(prev)` tell a backend of several CPUs where its CPU is (None: a backend to
    which it does not matter)."""
    if enter is None and leave is None and limit is not None:
        return _one_cpu_caller(fn, driver, hook, _W.call_for(driver, hook, limit), expected)
    run = fn if limit is None else _GENERIC(fn, _W.call_for(driver, hook, limit), _W.tls,
                                            _W._new_lane)
    where = f"{driver}.{hook}"

    def guarded(*args: Any) -> Any:
        prev_where = enter(where) if enter is not None else ""
        try:
            return run(*args)
        except BaseException as exc:
            _judge(exc, expected(), driver, hook, None, "API-1")
            raise   # (never reached)
        finally:
            if leave is not None:
                leave(prev_where)
    return guarded


def _one_cpu_caller(fn: Callable[..., Any], driver: str, hook: str, call: Any,
                    expected: Callable[[], tuple[type[BaseException], ...]]) -> Callable[..., Any]:
    """guarded_caller() where no CPU needs to know where it is, in one frame: guard()'s
    wrapper, judging what `fn` raised once the lane is back, as guarded_caller() does."""
    def judge(exc: BaseException) -> None:
        _judge(exc, expected(), driver, hook, None, "API-1")
    made: Callable[..., Any] = _POSITIONAL(fn, call, _W.tls, _W._new_lane, judge)
    return made


def passes_through(exc: BaseException) -> bool:
    """What unwinds through driver code without being the driver's failure: the
    user's Ctrl-C, and a simulated CPU being unwound (GreenletExit)."""
    if isinstance(exc, KeyboardInterrupt):
        return is_user_interrupt(exc)
    return isinstance(exc, GreenletExit)


def driver_error(exc: BaseException, rule: str, *, driver: str, hook: str,
                 page: Any = None) -> DriverError:
    """The DriverError for what driver code raised (or how it hung).

    The driver's frames keep their code and lines, for the report, but not their
    locals: a failure kept to be shown or shrunk (Hypothesis, the race explorer)
    must not keep what a runaway call allocated, or the next run finds no memory.
    """
    traceback.clear_frames(exc.__traceback__)
    err = DriverError(rule, f"{hook} {describe(exc)}", driver=driver,
                      hook=hook.rstrip("()"), page=page)
    err.__cause__ = exc
    return err


def describe(exc: BaseException) -> str:
    """What a driver did, for a message: "raised KeyError: 5",
    "did not return within 2 s (hung)"."""
    if isinstance(exc, CallbackTimeout):
        return f"did not return within {exc.limit:g} s (hung)"
    if isinstance(exc, DriverExit):
        return f"called os._exit({exc.code!r})"
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) (raised SystemExit)"
    if isinstance(exc, MemoryError):
        return ("ran out of memory (MemoryError): the run reached its memory limit "
                "(--memory-limit)")
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt itself (not the user's Ctrl-C)"
    text = " ".join(str(exc).split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "..."
    return f"raised {type(exc).__name__}" + (f": {text}" if text else "")


# --- commands: interrupts, exits, giving up ---------------------------------------------

def _on_sigint(signum: int, frame: Any) -> None:
    _W.interrupted = True
    raise KeyboardInterrupt


def is_user_interrupt(exc: BaseException) -> bool:
    """A KeyboardInterrupt from the user's Ctrl-C, not one a driver raised.

    Inside interrupts() the SIGINT handler records the key press; outside it
    the two cannot be told apart and every KeyboardInterrupt is the user's.
    """
    return isinstance(exc, KeyboardInterrupt) and (_W.interrupted or not _W.sigint_ours)


def user_interrupted() -> bool:
    """Whether the user pressed Ctrl-C inside the current interrupts() block."""
    return _W.interrupted


@contextmanager
def interrupts() -> Iterator[None]:
    """Record the user's Ctrl-C (SIGINT), so a driver's KeyboardInterrupt is told apart."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is _on_sigint:
        yield
        return
    old = signal.signal(signal.SIGINT, _on_sigint)
    _W.sigint_ours += 1
    _W.interrupted = False
    try:
        yield
    finally:
        _W.sigint_ours -= 1
        signal.signal(signal.SIGINT, old)


class DriverExit(BaseException):
    """os._exit() called by driver code while it runs in the tool's process."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"os._exit({self.code!r})"


def _trapped_exit(code: int) -> None:
    raise DriverExit(code)


@contextmanager
def trap_exits() -> Iterator[None]:
    """os._exit() raises DriverExit meanwhile, so driver code cannot end the tool silently.

    (posix._exit, a signal to itself or ctypes can still end it; those exit non-zero
    or are deliberate.)  mmplug's own exits use the saved os._exit.
    """
    if os._exit is _trapped_exit:
        yield
        return
    _W.real_exit = os._exit
    os._exit = _trapped_exit  # type: ignore[assignment]
    try:
        yield
    finally:
        os._exit = _W.real_exit


def _on_tstp(signum: int, frame: Any) -> None:
    """Ctrl-Z: stop as the default action would, with the backstop off meanwhile (its
    clock would run on and end the process the moment it is continued)."""
    with _W.lock:
        faulthandler.cancel_dump_traceback_later()
    signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTSTP)
    # continued (fg, SIGCONT)
    signal.signal(signal.SIGTSTP, _on_tstp)
    with _W.lock:
        if _W.hard:
            _W._arm_backstop(time.monotonic())


@contextmanager
def hard_stop(backstop: float = 60.0) -> Iterator[None]:
    """In a command: a call that ignores MAX_FIRES interrupts ends the process (exit 1),
    and a GIL held for `backstop` seconds ends it through faulthandler."""
    _W.lane()   # the monitor runs from here on
    tstp = None
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTSTP) == signal.SIG_DFL:
        tstp = signal.signal(signal.SIGTSTP, _on_tstp)
    with _W.lock:
        _W.hard += 1
        _W.backstop = max(backstop, _W.backstop)
        _W._arm_backstop(time.monotonic())
    try:
        yield
    finally:
        with _W.lock:
            _W.hard -= 1
            if not _W.hard:
                faulthandler.cancel_dump_traceback_later()
        if tstp is not None:
            signal.signal(signal.SIGTSTP, tstp)


# --- memory ------------------------------------------------------------------------------

def _meminfo(key: str, path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    words = line.split()
                    return int(words[1]) * (1024 if words[-1] == "kB" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory() -> int | None:
    """Bytes the machine can still give without swapping (MemAvailable), if known."""
    return _meminfo("MemAvailable")


def address_space() -> int | None:
    """Bytes of address space this process maps now (VmSize), if known."""
    return _meminfo("VmSize", "/proc/self/status")


@contextmanager
def memory_limit(extra: int | None) -> Iterator[int | None]:
    """Let the process map at most `extra` more bytes meanwhile (RLIMIT_AS).

    Allocation past it raises MemoryError where it happens (in driver code, a
    DriverError naming the call), instead of the machine swapping or the OOM
    killer choosing a victim.  Yields the limit set, or None where it cannot be.
    """
    if sys.platform == "win32":   # no resource module, no RLIMIT_AS
        yield None
        return
    import resource
    now = address_space()
    if extra is None or now is None:
        yield None
        return
    _W.lane()   # the monitor thread's stack is mapped before the limit
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    target = now + extra
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if soft != resource.RLIM_INFINITY and soft <= target:
        yield soft
        return
    resource.setrlimit(resource.RLIMIT_AS, (target, hard))
    try:
        yield target
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- the user's limits ---------------------------------------------------------------------

#: the longest --timeout: a day
MAX_TIMEOUT = 86400.0
#: what a run may add to the process by default, besides twice what it needs
HEADROOM = 1 << 30


def time_limit(seconds: float, option: str = "--timeout") -> float | None:
    """A time limit the user gave, in seconds (0: no limit); UsageError if absurd."""
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIMEOUT:
        raise UsageError(f"{option} {seconds}: expected seconds from 0 (no limit) to "
                         f"{MAX_TIMEOUT:.0f}")
    return seconds or None


def memory_budget(text: str | None, need: int = 0, option: str = "--memory-limit"
                  ) -> int | None:
    """Bytes a run may add to the process: the user's SIZE (0: no limit), else twice what
    it needs plus 1 GiB, at most what the machine has available."""
    if text is None:
        budget = 2 * need + HEADROOM
        avail = available_memory()
        return budget if avail is None else max(min(budget, avail), need + (256 << 20))
    try:
        nbytes = parse_bytes(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if 0 < nbytes < 64 << 20:
        raise UsageError(f"{option} {text}: at least 64MiB (or 0: no limit)")
    return nbytes or None


__all__ = [
    "Call", "DEFAULT_LIMIT", "IMPORT_LIMIT", "LANES", "DriverExit", "Lane", "MovableCalls",
    "address_space", "available_memory", "describe", "driver_error", "guard", "guarded_call",
    "hard_stop", "interrupts", "is_user_interrupt", "lane", "memory_budget", "memory_limit",
    "movable_calls", "new_lane", "passes_through", "time_limit", "trap_exits",
    "user_interrupted",
]
