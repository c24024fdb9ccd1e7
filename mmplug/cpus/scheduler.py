"""Several simulated CPUs on one thread: the `Scheduler` sync backend.

Each CPU is a greenlet.  Only one runs at a time, and it gives the processor
up only at a schedule point: every page-lock, driver-lock and refcount
operation, every page-flag operation a driver does through mmplug.kernel,
and entry to and exit from each driver callback.  At a point where more than
one CPU could run, a strategy picks the next one; the picks, run-length
encoded, are the *schedule*, a short string that `ReplayStrategy` follows
exactly.  Whatever is not in the string is decided by the default policy
(keep running the current CPU, else the lowest runnable one), so trailing
picks that agree with it are dropped.

Blocking is real: `lock_page`, a mutex, a held spinlock and a contended
rwlock park the CPU until the holder releases (unlock wakes every waiter,
which then competes again, as after wake_up_page() in mm/filemap.c).  When
no CPU can run the run ends with a deadlock report of what each CPU holds and
waits for.  Owners of every lock are tracked, a LockDep graph sees every
acquisition (LCK-3), and a sleeping lock taken in atomic context or waited
for in an ASYNC migration callback is an LCK-1 violation.

With one CPU there is nothing to interleave: `Scheduler(cpus=1)` installs the
plain SingleCPU operations on itself and costs nothing.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable, Sequence

from attrs import define, field, frozen
from greenlet import GreenletExit, greenlet

from .constants import ISOLATE_ASYNC_MIGRATE, MigrateMode
from .errors import ContractViolation, Deadlock, MmplugError
from .lockdep import PAGE_LOCK, LockClass, LockDep, Witness
from .page import LOCKED
from .sync import SingleCPU, Task
from .watchdog import is_user_interrupt, lane as watchdog_lane

if TYPE_CHECKING:
    from .page import Page

RUNNABLE, BLOCKED, DONE = 0, 1, 2
_STATE_NAMES = {RUNNABLE: "runnable", BLOCKED: "blocked", DONE: "done"}

#: the most choices a schedule string may spell out
MAX_SCHEDULE = 10_000_000
#: a run that passes this many schedule points is reported as a livelock
DEFAULT_MAX_STEPS = 20_000


class NondeterminismError(MmplugError):
    """A replay saw a different set of runnable CPUs than the run it replays."""


class _Stop(GreenletExit):
    """Thrown into CPUs still running when a run ends early, to unwind them."""


# --- schedules ---------------------------------------------------------------------------

def encode_schedule(choices: Sequence[int]) -> str:
    """[0, 0, 0, 1, 0] -> "0x3-1-0"; the empty schedule is "-"."""
    if not choices:
        return "-"
    out = []
    prev = choices[0]
    count = 0
    for c in choices:
        if c == prev:
            count += 1
            continue
        out.append(f"{prev}x{count}" if count > 1 else str(prev))
        prev, count = c, 1
    out.append(f"{prev}x{count}" if count > 1 else str(prev))
    return "-".join(out)


def decode_schedule(text: str) -> list[int]:
    """The inverse of encode_schedule; ValueError names what is malformed."""
    text = text.strip()
    if text in ("", "-"):
        return []
    out: list[int] = []
    for part in text.split("-"):
        cpu, sep, count = part.partition("x")
        if not cpu.isdigit() or (sep and not count.isdigit()):
            raise ValueError(f"bad schedule item {part[:40]!r} in {text[:60]!r}: expected CPU or "
                             "CPUxCOUNT, joined by '-' (e.g. 0x3-1-0)")
        n = int(count) if sep else 1
        if n < 1 or len(out) + n > MAX_SCHEDULE:
            raise ValueError(f"bad repeat count in {part[:40]!r}: a schedule has from 1 to "
                             f"{MAX_SCHEDULE:,} choices")
        out.extend([int(cpu)] * n)
    return out


# --- strategies --------------------------------------------------------------------------

def default_choice(runnable: Sequence[int], current: int | None) -> int:
    """The non-preemptive policy: keep the current CPU, else the lowest runnable one."""
    if current is not None and current in runnable:
        return current
    return runnable[0]


def _next_after(runnable: Sequence[int], cpu: int) -> int:
    """Round robin: the first runnable CPU after `cpu` (a CPU yielding in cond_resched)."""
    for c in runnable:
        if c > cpu:
            return c
    return runnable[0]


#: a point whose name starts with this is a voluntary yield (kernel.schedule_point)
YIELD = "cond_resched"


class Strategy:
    """Picks the next CPU at a choice point (more than one CPU runnable).

    `runnable` is sorted; `current` is the CPU that reached the point (None
    when the previous one finished or blocked); `index` counts choice points;
    `what` names the operation (a name starting with YIELD is a voluntary
    yield: the current CPU waits for another); `default` is what the default
    policy would pick.
    """

    name = "default"
    seed: int | None = None

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        return default


class RandomStrategy(Strategy):
    """Uniform choice among runnable CPUs at every choice point, seeded."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        return runnable[self._rng.randrange(len(runnable))]


class PCTStrategy(Strategy):
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), depth `depth`.

    CPUs get random distinct priorities above `depth`; `depth - 1` change
    points are drawn among the first `length` choice points; at the i-th one
    the running CPU drops to priority i, below every initial one.  The highest
    priority runnable CPU always runs.  A bug of depth d is found with
    probability at least 1/(n * k^(d-1)) per run.
    """

    name = "pct"

    def __init__(self, seed: int, ncpus: int, depth: int, length: int) -> None:
        self.seed = seed
        rng = random.Random(seed)
        prios = list(range(depth, depth + ncpus))
        rng.shuffle(prios)
        self._prio = prios
        length = max(length, depth)
        points = rng.sample(range(1, length + 1), depth - 1) if depth > 1 else []
        self._changes = {p: i for i, p in enumerate(sorted(points))}

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        prio = self._prio
        drop = self._changes.get(index + 1)
        if drop is not None and current is not None:
            prio[current] = drop
        if current is not None and what.startswith(YIELD):
            # A CPU waiting in a yield loop must let the others run, or PCT's strict
            # priorities would spin it forever.
            prio[current] = min(prio) - 1
        return max(runnable, key=prio.__getitem__)


class ReplayStrategy(Strategy):
    """Follow a recorded schedule; past its end, the default policy.

    With `expect` (the original run's trace: the runnable set, as a bit mask,
    and the operation at each choice point) any difference is a
    NondeterminismError naming the step.
    """

    name = "replay"

    def __init__(self, schedule: str | Sequence[int],
                 expect: Sequence[tuple[int, str]] | None = None) -> None:
        self.choices = decode_schedule(schedule) if isinstance(schedule, str) else list(schedule)
        self.expect = expect

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        expect = self.expect
        if expect is not None:
            mask = _mask(runnable)
            if index >= len(expect) or expect[index] != (mask, what):
                was = (f"{_cpus_of(expect[index][0])} at {expect[index][1]}"
                       if index < len(expect) else "no such choice point")
                raise NondeterminismError(
                    f"choice point {index}: runnable CPUs {_cpus_of(mask)} at {what} on replay, "
                    f"{was} in the recorded run: the driver depends on something the schedule "
                    "does not fix (wall-clock time, real threads, unseeded randomness, id()-ordered "
                    "sets)")
        if index < len(self.choices):
            cpu = self.choices[index]
            if cpu not in runnable:
                raise NondeterminismError(
                    f"choice point {index} ({what}): the schedule picks cpu{cpu} but only "
                    f"{_cpus_of(_mask(runnable))} can run")
            return cpu
        return default


@define(slots=True)
class _Node:
    options: list[int]
    pos: int
    mask: int


class DFSStrategy(Strategy):
    """One run of a bounded exhaustive search (use `DFSSearch` to enumerate runs).

    Follows the nodes of its prefix, then the default policy, opening a node at
    each new choice point with the alternatives the preemption budget allows
    (a preemption is a switch away from a CPU that could have continued;
    Musuvathi and Qadeer's iterative context bounding, PLDI 2007).
    """

    name = "dfs"

    def __init__(self, stack: list[_Node], bound: int) -> None:
        self.stack = stack
        self.bound = bound
        self._preemptions = 0

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        stack = self.stack
        preemptible = (current is not None and current in runnable
                       and not what.startswith(YIELD))
        if index < len(stack):
            node = stack[index]
            if node.mask != _mask(runnable):
                raise NondeterminismError(
                    f"choice point {index} ({what}): runnable CPUs {_cpus_of(_mask(runnable))}, "
                    f"{_cpus_of(node.mask)} when this prefix was first run")
            cpu = node.options[node.pos]
        else:
            first = default
            options = [first]
            if not preemptible or self._preemptions < self.bound:
                options += [c for c in runnable if c != first]
            stack.append(_Node(options, 0, _mask(runnable)))
            cpu = first
        if preemptible and cpu != current:
            self._preemptions += 1
        return cpu


class DFSSearch:
    """Enumerates every schedule within the preemption bound, one run at a time."""

    def __init__(self, bound: int = 2) -> None:
        self.bound = bound
        self._stack: list[_Node] = []
        self._started = False
        self.exhausted = False

    def next_strategy(self) -> DFSStrategy | None:
        if self._started:
            stack = self._stack
            while stack and stack[-1].pos == len(stack[-1].options) - 1:
                stack.pop()
            if not stack:
                self.exhausted = True
                return None
            stack[-1].pos += 1
        self._started = True
        return DFSStrategy(self._stack, self.bound)


def _mask(cpus: Sequence[int]) -> int:
    m = 0
    for c in cpus:
        m |= 1 << c
    return m


def _cpus_of(mask: int) -> str:
    return "{" + ", ".join(f"cpu{i}" for i in range(mask.bit_length()) if mask >> i & 1) + "}"


# --- CPUs and what they hold ---------------------------------------------------------------

@define(slots=True, eq=False)
class Held:
    """One lock a CPU holds: its class, the lock (or page), how and where it was taken."""

    cls: LockClass
    obj: Any
    how: str
    where: str

    def describe(self) -> str:
        if self.cls is PAGE_LOCK:
            return f"page lock of pfn {self.obj.pfn:#x} ({self.how}, in {self.where})"
        return f"{self.cls} ({self.how}, in {self.where})"


@define(slots=True, eq=False)
class Cpu:
    """One simulated CPU: its task, greenlet, state, what it holds and waits for."""

    index: int
    task: Task
    glet: Any = None
    state: int = RUNNABLE
    holds: list[Held] = field(factory=list)
    #: (description, the lock or page) while BLOCKED
    waiting: tuple[str, Any] | None = None
    #: where the CPU is: "vm" (VM or scenario code) or "<driver>.<callback or call>"
    where: str = "vm"
    #: inside a migration callback of an ASYNC migration (MIG-10: never block)
    async_ctx: bool = False

    def describe(self, owner_of: Callable[[Any], "Cpu | None"]) -> str:
        holds = ", ".join(h.describe() for h in self.holds) or "nothing"
        text = f"cpu{self.index} [{_STATE_NAMES[self.state]}, in {self.where}] holds {holds}"
        if self.waiting is not None:
            desc, obj = self.waiting
            owner = owner_of(obj)
            text += f"; waits for {desc}" + (f" held by cpu{owner.index}" if owner else "")
        return text


@frozen(slots=True)
class CpuReport:
    """What one CPU held and waited for when a run ended (for deadlock reports)."""

    cpu: int
    state: str
    where: str
    holds: tuple[str, ...]
    waits: str | None

    def render(self) -> str:
        text = f"cpu{self.cpu} [{self.state}, in {self.where}] holds " + (
            ", ".join(self.holds) or "nothing")
        return text + (f"; waits for {self.waits}" if self.waits else "")


@define(slots=True)
class Outcome:
    """How one multi-CPU run ended."""

    error: BaseException | None = None
    #: CPU index the error was raised on (None: the scheduler found it)
    error_cpu: int | None = None
    deadlock: bool = False
    livelock: bool = False
    steps: int = 0
    choices: list[int] = field(factory=list)
    defaults: list[int] = field(factory=list)
    masks: list[int] = field(factory=list)
    whats: list[str] = field(factory=list)
    cpus: tuple[CpuReport, ...] = ()

    @property
    def trace(self) -> tuple[tuple[int, str], ...]:
        """(runnable mask, operation) at each choice point: what a replay must see again."""
        return tuple(zip(self.masks, self.whats))

    @property
    def schedule(self) -> str:
        """The picks, minus the trailing ones the default policy makes anyway."""
        n = len(self.choices)
        while n and self.choices[n - 1] == self.defaults[n - 1]:
            n -= 1
        return encode_schedule(self.choices[:n])


# --- locks for drivers --------------------------------------------------------------------

class SchedLock:
    """A spinlock (`sleeping=False`) or a mutex (`sleeping=True`) with an owner and waiters."""

    __slots__ = ("name", "sched", "owner", "waiters", "sleeping", "cls")

    def __init__(self, sched: "Scheduler", name: str, sleeping: bool, kind: str = "driver") -> None:
        self.name = name
        self.sched = sched
        self.owner: Cpu | None = None
        self.waiters: list[Cpu] = []
        self.sleeping = sleeping
        self.cls = LockClass(kind, name)

    def lock(self) -> None:
        s = self.sched
        cur = s._cur
        op = "mutex_lock" if self.sleeping else "spin_lock"
        if self.sleeping and cur.task.preempt_count:
            s._violation("LCK-1", f"{op}({self.name!r}) while a spinlock is held "
                         "(might_sleep in atomic context)")
        s._lockdep(cur, self.cls)
        s.point(op, self)
        while self.owner is not None:
            if self.owner is cur:
                raise Deadlock(f"{op}({self.name!r}) on cpu{cur.index}, which already holds it "
                               f"(recursive locking, in {cur.where})")
            if self.sleeping and cur.async_ctx:
                s._violation("LCK-1", f"contended {op}({self.name!r}) in an ASYNC migration "
                             "callback: ASYNC migration never sleeps (MIG-10)")
            s._wait(cur, repr(self.name), self, self.waiters)
        self._take(cur, "lock")

    def _take(self, cur: Cpu, how: str) -> None:
        self.owner = cur
        if not self.sleeping:
            cur.task.preempt_count += 1
        cur.holds.append(Held(self.cls, self, how, cur.where))

    def trylock(self) -> bool:
        s = self.sched
        s.point("mutex_trylock" if self.sleeping else "spin_trylock", self)
        if self.owner is not None:
            return False
        self._take(s._cur, "trylock")
        return True

    def unlock(self) -> None:
        s = self.sched
        cur = s._cur
        if self.owner is not cur:
            if s._stopping:
                return
            who = "nobody" if self.owner is None else f"cpu{self.owner.index}"
            s._violation("LCK-2", f"unlock of {self.name!r} on cpu{cur.index}, held by {who}")
        self.owner = None
        if not self.sleeping:
            cur.task.preempt_count -= 1
        s._drop_hold(cur, self)
        s._wake(self.waiters)
        s.point("mutex_unlock" if self.sleeping else "spin_unlock", self)

    def is_locked(self) -> bool:
        return self.owner is not None

    def __enter__(self) -> "SchedLock":
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    def __repr__(self) -> str:
        kind = "mutex" if self.sleeping else "spinlock"
        return f"<{kind} {self.name!r}>"


class SchedRWLock:
    """rwlock_t with per-CPU reader counts, a writer and waiters; holding it is atomic."""

    __slots__ = ("name", "sched", "readers", "writer", "waiters", "cls")

    def __init__(self, sched: "Scheduler", name: str) -> None:
        self.name = name
        self.sched = sched
        self.readers: dict[Cpu, int] = {}
        self.writer: Cpu | None = None
        self.waiters: list[Cpu] = []
        self.cls = LockClass("driver", name)

    @property
    def owner(self) -> Cpu | None:
        if self.writer is not None:
            return self.writer
        return next(iter(self.readers), None)

    def _take(self, cur: Cpu, how: str) -> None:
        cur.task.preempt_count += 1
        cur.holds.append(Held(self.cls, self, how, cur.where))

    def read_lock(self) -> None:
        s = self.sched
        cur = s._cur
        if cur not in self.readers:
            s._lockdep(cur, self.cls)
        s.point("read_lock", self)
        while self.writer is not None:
            if self.writer is cur:
                raise Deadlock(f"read_lock({self.name!r}) on cpu{cur.index}, which holds it "
                               "for writing")
            s._wait(cur, f"{self.name!r} (read)", self, self.waiters)
        self.readers[cur] = self.readers.get(cur, 0) + 1
        self._take(cur, "read")

    def read_trylock(self) -> bool:
        s = self.sched
        s.point("read_trylock", self)
        if self.writer is not None:
            return False
        cur = s._cur
        self.readers[cur] = self.readers.get(cur, 0) + 1
        self._take(cur, "read")
        return True

    def read_unlock(self) -> None:
        s = self.sched
        cur = s._cur
        n = self.readers.get(cur, 0)
        if not n:
            if s._stopping:
                return
            s._violation("LCK-2", f"read_unlock of {self.name!r} on cpu{cur.index}, which does "
                         "not hold it for reading")
        if n == 1:
            del self.readers[cur]
        else:
            self.readers[cur] = n - 1
        cur.task.preempt_count -= 1
        s._drop_hold(cur, self)
        s._wake(self.waiters)
        s.point("read_unlock", self)

    def write_lock(self) -> None:
        s = self.sched
        cur = s._cur
        s._lockdep(cur, self.cls)
        s.point("write_lock", self)
        while self.writer is not None or self.readers:
            if self.writer is cur or cur in self.readers:
                raise Deadlock(f"write_lock({self.name!r}) on cpu{cur.index}, which already "
                               "holds it")
            s._wait(cur, f"{self.name!r} (write)", self, self.waiters)
        self.writer = cur
        self._take(cur, "write")

    def write_trylock(self) -> bool:
        s = self.sched
        s.point("write_trylock", self)
        if self.writer is not None or self.readers:
            return False
        cur = s._cur
        self.writer = cur
        self._take(cur, "write")
        return True

    def write_unlock(self) -> None:
        s = self.sched
        cur = s._cur
        if self.writer is not cur:
            if s._stopping:
                return
            s._violation("LCK-2", f"write_unlock of {self.name!r} on cpu{cur.index}, which does "
                         "not hold it for writing")
        self.writer = None
        cur.task.preempt_count -= 1
        s._drop_hold(cur, self)
        s._wake(self.waiters)
        s.point("write_unlock", self)

    def is_locked(self) -> bool:
        return self.writer is not None or bool(self.readers)

    def __repr__(self) -> str:
        return f"<rwlock {self.name!r}>"


# --- the backend ----------------------------------------------------------------------------

_FAST_OPS = ("current", "point", "trylock_page", "lock_page", "unlock_page", "get_page",
             "get_page_unless_zero", "put_page", "spinlock", "mutex", "rwlock")


class Scheduler:
    """A SyncBackend with `cpus` simulated CPUs (mmplug.sync.SyncBackend).

    Outside `run()` the code runs on cpu0 and schedule points do nothing, so a
    scenario's setup and final checks are plain sequential code.  `run(bodies,
    strategy)` starts one CPU per body and interleaves them; it returns an
    Outcome (error, deadlock, schedule, per-CPU holds) and never raises for
    what the bodies do.
    """

    def __init__(self, cpus: int = 2, *, lockdep: bool | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS) -> None:
        if cpus < 1:
            raise ValueError("a machine needs at least one CPU")
        if lockdep is None:
            # With one CPU the lock-order graph is opt-in: it is the only cost left.
            lockdep = cpus > 1
        self.nr_cpus = cpus
        self.max_steps = max_steps
        self.fast = cpus == 1 and not lockdep
        self.lockdep = LockDep() if lockdep else None
        self._boot = Cpu(0, Task("cpu0", 0))
        self._cur = self._boot
        self._cpus: list[Cpu] = []
        self._running = False
        self._stopping = False
        self._nrunnable = 0
        self._page_owner: dict[int, Cpu] = {}
        self._page_waiters: dict[int, list[Cpu]] = {}
        self._strategy: Strategy = Strategy()
        self._outcome = Outcome()
        self._main: Any = None
        self._lane: Any = None
        #: every lock handed out, to check that none is left held
        self.locks: list[SchedLock | SchedRWLock] = []
        if self.fast:
            # One CPU, nothing recorded: the plain operations, bound directly.
            single = SingleCPU()
            single._current = self._boot.task
            for name in _FAST_OPS:
                setattr(self, name, getattr(single, name))

    # --- SyncBackend ---------------------------------------------------------------------
    def current(self) -> Task:
        return self._cur.task

    def point(self, what: str, obj: Any = None) -> None:
        """A schedule point: maybe let another CPU run."""
        if not self._running or self._stopping:
            return
        out = self._outcome
        out.steps += 1
        if out.steps > self.max_steps:
            out.livelock = True
            self._abort()
        if self._nrunnable < 2:
            return
        cur = self._cur
        nxt = self._pick(cur.index, what)
        if nxt is not cur:
            self._switch_to(nxt)

    def trylock_page(self, page: "Page") -> bool:
        self.point("trylock_page", page)
        flags = page.flags
        if flags & LOCKED:
            return False
        page.flags = flags | LOCKED
        self._own_page(self._cur, page, "trylock")
        return True

    def lock_page(self, page: "Page") -> None:
        cur = self._cur
        if cur.task.preempt_count:
            self._violation("LCK-1", "lock_page() while a spinlock is held (might_sleep in "
                            "atomic context)", page=page)
        self._lockdep(cur, PAGE_LOCK)
        self.point("lock_page", page)
        while page.flags & LOCKED:
            owner = self._page_owner.get(page.pfn)
            if owner is cur:
                raise Deadlock(f"lock_page() on pfn {page.pfn:#x}, already locked by cpu"
                               f"{cur.index} itself (in {cur.where}): it would sleep forever")
            if cur.async_ctx:
                self._violation("LCK-1", "contended lock_page() in an ASYNC migration callback: "
                                "ASYNC migration never sleeps (MIG-10)", page=page)
            self._wait(cur, f"page lock of pfn {page.pfn:#x}", page,
                       self._page_waiters.setdefault(page.pfn, []))
        page.flags |= LOCKED
        self._own_page(cur, page, "lock")

    def unlock_page(self, page: "Page") -> None:
        cur = self._cur
        if not page.flags & LOCKED:
            if self._stopping:
                return
            self._violation("LCK-2", "unlock_page() on a page that is not locked", page=page)
        owner = self._page_owner.pop(page.pfn, None)
        if owner is not None and owner is not cur:
            if self._stopping:
                return
            self._page_owner[page.pfn] = owner
            self._violation("LCK-2", f"unlock_page() on cpu{cur.index} of a page locked by "
                            f"cpu{owner.index}", page=page)
        page.flags &= ~LOCKED
        if owner is not None:
            self._drop_hold(owner, page)
        waiters = self._page_waiters.get(page.pfn)
        if waiters:
            self._wake(waiters)
        self.point("unlock_page", page)

    def get_page(self, page: "Page") -> None:
        self.point("get_page", page)
        if page._refcount <= 0:
            self._violation("REF-1", "get_page() on a page with no reference (freed page)",
                            page=page)
        page._refcount += 1

    def get_page_unless_zero(self, page: "Page") -> bool:
        self.point("get_page_unless_zero", page)
        if page._refcount == 0:
            return False
        page._refcount += 1
        return True

    def put_page(self, page: "Page") -> None:
        self.point("put_page", page)
        count = page._refcount - 1
        if count > 0:
            page._refcount = count
            return
        if count < 0:
            self._violation("REF-1", "put_page() on a page with no reference (refcount "
                            "underflow)", page=page)
        page._refcount = 0
        page.zone.release_page(page)

    def spinlock(self, name: str) -> SchedLock:
        lock = SchedLock(self, name, sleeping=False)
        self.locks.append(lock)
        return lock

    def mutex(self, name: str) -> SchedLock:
        lock = SchedLock(self, name, sleeping=True)
        self.locks.append(lock)
        return lock

    def rwlock(self, name: str) -> SchedRWLock:
        lock = SchedRWLock(self, name)
        self.locks.append(lock)
        return lock

    def vm_lock(self, name: str, sleeping: bool = False) -> SchedLock:
        """A lock of the VM's own (class kind "vm" in the lock-order graph)."""
        lock = SchedLock(self, name, sleeping=sleeping, kind="vm")
        self.locks.append(lock)
        return lock

    def enter(self, where: str) -> str:
        """The running CPU is now in `where` (e.g. "zsmalloc.free"); returns where it was."""
        cur = self._cur
        prev = cur.where
        cur.where = where
        return prev

    def leave(self, prev: str) -> None:
        """Back to where `enter` said the CPU was."""
        self._cur.where = prev

    def wrap_callback(self, fn: Callable, hook: str, driver: str) -> Callable:
        """Entry and exit are schedule points; the CPU remembers which callback it is in."""
        if self.fast:
            return fn
        sched = self
        where = f"{driver}.{hook}"

        def callback(*args: Any) -> Any:
            cur = sched._cur
            saved = cur.where, cur.async_ctx
            cur.where = where
            mode = args[-1] if len(args) in (2, 4) else None
            if hook == "isolate_page":
                cur.async_ctx = bool(mode & ISOLATE_ASYNC_MIGRATE)
            elif hook == "migratepage":
                cur.async_ctx = mode == MigrateMode.ASYNC
            else:
                cur.async_ctx = False
            page = args[0] if hook != "migratepage" else args[2]
            sched.point(f"enter {where}", page)
            try:
                return fn(*args)
            finally:
                cur.where, cur.async_ctx = saved
                sched.point(f"exit {where}", page)

        callback.__wrapped__ = fn  # type: ignore[attr-defined]
        return callback

    # --- running CPUs ---------------------------------------------------------------------
    def run(self, bodies: Sequence[Callable[[], Any]], strategy: Strategy | None = None
            ) -> Outcome:
        """Run one CPU per body until all finish, one fails, or none can run."""
        if not bodies:
            raise ValueError("run() needs at least one body")
        if len(bodies) > self.nr_cpus:
            raise ValueError(f"{len(bodies)} bodies for {self.nr_cpus} CPU(s)")
        if self._running:
            raise RuntimeError("run() is not reentrant")
        out = self._outcome = Outcome()
        if self.fast:
            try:
                bodies[0]()
            except Exception as exc:
                out.error, out.error_cpu = exc, 0
            return out
        self._strategy = strategy or Strategy()
        self._main = greenlet.getcurrent()
        cpus = self._cpus = []
        for i, body in enumerate(bodies):
            task = self._boot.task if i == 0 else Task(f"cpu{i}", i)
            cpu = Cpu(i, task)
            cpu.glet = greenlet(self._entry(cpu, body), parent=self._main)
            cpus.append(cpu)
        # cpu0 carries what setup left held (nothing, normally)
        cpus[0].holds = self._boot.holds
        for pfn, owner in list(self._page_owner.items()):
            if owner is self._boot:
                self._page_owner[pfn] = cpus[0]
        self._nrunnable = len(cpus)
        self._running = True
        # The watchdog's lane is the thread's: each CPU keeps its own driver call in it.
        lane = self._lane = watchdog_lane()
        outer = lane.call
        try:
            while out.error is None and not out.deadlock and not out.livelock:
                runnable = [c.index for c in cpus if c.state == RUNNABLE]
                if not runnable:
                    if any(c.state == BLOCKED for c in cpus):
                        out.deadlock = True
                    break
                try:
                    idx = runnable[0] if len(runnable) == 1 else self._choose(runnable, None,
                                                                               "schedule")
                except NondeterminismError as exc:
                    out.error = exc
                    break
                self._cur = cpus[idx]
                try:
                    cpus[idx].glet.switch()
                except BaseException as exc:  # a CPU body failed: the run is over
                    if is_user_interrupt(exc):
                        raise  # the user's Ctrl-C ends everything, at once
                    if out.error is None and not isinstance(exc, GreenletExit):
                        out.error, out.error_cpu = exc, self._cur.index
                finally:
                    lane.call = outer
        finally:
            out.cpus = tuple(self._report(c) for c in cpus)
            self._stop(cpus)
            lane.call = outer
            self._running = False
            self._boot.holds = []
            self._cur = self._boot
            self._page_owner.clear()
            self._page_waiters.clear()
            self._nrunnable = 0
        return out

    def _entry(self, cpu: Cpu, body: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            self._lane.call = None   # a CPU starts outside any driver call
            try:
                body()
            finally:
                if cpu.state != DONE:
                    cpu.state = DONE
                    self._nrunnable -= 1
        return run

    def _choose(self, runnable: list[int], current: int | None, what: str) -> int:
        out = self._outcome
        index = len(out.choices)
        if current is not None and what.startswith(YIELD):
            # A voluntary yield: the default moves on (leaving is no preemption).
            default = _next_after(runnable, current)
        else:
            default = default_choice(runnable, current)
        cpu = self._strategy.choose(runnable, current, index, what, default)
        out.choices.append(cpu)
        out.defaults.append(default)
        out.masks.append(_mask(runnable))
        out.whats.append(what)
        return cpu

    def _pick(self, current: int | None, what: str) -> Cpu:
        runnable = [c.index for c in self._cpus if c.state == RUNNABLE]
        if len(runnable) == 1:
            return self._cpus[runnable[0]]
        return self._cpus[self._choose(runnable, current, what)]

    def _switch_to(self, nxt: Cpu) -> None:
        me = self._cur
        self._cur = nxt
        lane = self._lane
        call = lane.call
        nxt.glet.switch()
        # back on this CPU: whoever switched here set _cur already
        self._cur = me
        lane.call = call

    def _wait(self, cur: Cpu, desc: str, obj: Any, waiters: list[Cpu]) -> None:
        """Park `cur` until a release wakes it; with nobody able to run, a deadlock."""
        if not self._running:
            raise Deadlock(f"cpu{cur.index} would wait for {desc} with no other CPU running "
                           f"(in {cur.where})")
        cur.state = BLOCKED
        cur.waiting = (desc, obj)
        waiters.append(cur)
        self._nrunnable -= 1
        if self._nrunnable == 0:
            self._outcome.deadlock = True
            self._abort()
        nxt = self._pick(None, f"blocked on {desc}")
        self._switch_to(nxt)
        if self._stopping:
            raise _Stop()

    def _wake(self, waiters: list[Cpu]) -> None:
        for w in waiters:
            if w.state == BLOCKED:
                w.state = RUNNABLE
                w.waiting = None
                self._nrunnable += 1
        waiters.clear()

    def _abort(self) -> None:
        """End the run from inside a CPU: back to the scheduler, never to return."""
        self._main.switch()
        raise _Stop()

    def _stop(self, cpus: list[Cpu]) -> None:
        """Unwind CPUs that did not finish, with every operation turned harmless."""
        self._stopping = True
        interrupted = None
        try:
            for cpu in cpus:
                g = cpu.glet
                if g is not None and not g.dead:
                    try:
                        g.throw(_Stop())
                    except BaseException as exc:
                        if is_user_interrupt(exc):
                            interrupted = exc
        finally:
            self._stopping = False
        if interrupted is not None:
            raise interrupted

    # --- ownership ---------------------------------------------------------------------------
    def _own_page(self, cur: Cpu, page: "Page", how: str) -> None:
        self._page_owner[page.pfn] = cur
        cur.holds.append(Held(PAGE_LOCK, page, how, cur.where))

    def _drop_hold(self, cpu: Cpu, obj: Any) -> None:
        holds = cpu.holds
        for i in range(len(holds) - 1, -1, -1):
            if holds[i].obj is obj:
                del holds[i]
                return

    def _lockdep(self, cur: Cpu, cls: LockClass) -> None:
        dep = self.lockdep
        if dep is not None and cur.holds:
            dep.acquire([h.cls for h in cur.holds], cls, Witness(cur.index, cur.where))

    def owner_of(self, obj: Any) -> Cpu | None:
        """The CPU holding a lock or a page's lock, if known."""
        if isinstance(obj, (SchedLock, SchedRWLock)):
            return obj.owner
        pfn = getattr(obj, "pfn", None)
        return self._page_owner.get(pfn) if pfn is not None else None

    def _report(self, cpu: Cpu) -> CpuReport:
        waits = None
        if cpu.waiting is not None:
            desc, obj = cpu.waiting
            owner = self.owner_of(obj)
            waits = desc + (f" held by cpu{owner.index}" if owner is not None else "")
        return CpuReport(cpu.index, _STATE_NAMES[cpu.state], cpu.where,
                         tuple(h.describe() for h in cpu.holds), waits)

    def _violation(self, rule: str, message: str, page: Any = None) -> None:
        cur = self._cur
        driver, _, hook = cur.where.partition(".")
        if not hook:
            driver = None
        raise ContractViolation(rule, f"{message} [cpu{cur.index}]", driver=driver,
                                hook=hook or None, page=page)

    def held_locks(self) -> list[str]:
        """Locks still held (after a run every lock should be free again)."""
        out = [f"{lock!r} held by cpu{lock.owner.index}" for lock in self.locks
               if lock.is_locked() and lock.owner is not None]
        return out
