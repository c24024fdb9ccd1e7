"""Several simulated CPUs on one thread: the `Scheduler` CPU backend.

Each CPU is a greenlet.  Only one runs at a time, and it gives the processor
up only at a schedule point: every page-lock, driver-lock and refcount
operation, every page-flag operation a driver does through mmplug.kernel,
and entry to and exit from each driver callback.  At a point where more than
one CPU could run, a strategy (mmplug.cpus.schedule) picks the next one; the
picks are the schedule that replays the run exactly.

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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from attrs import define, field, frozen
from greenlet import GreenletExit, greenlet

from ..constants import ISOLATE_ASYNC_MIGRATE, MigrateMode
from ..errors import ContractViolation, Deadlock
from ..page import LOCKED
from ..watchdog import is_user_interrupt, lane as watchdog_lane
from .backend import PageOperations, Task
from .lockdep import PAGE_LOCK, LockClass, LockDep, Witness
from .locks import SchedLock, SchedRWLock
from .schedule import (
    YIELD,
    NondeterminismError,
    Strategy,
    cpu_mask,
    default_choice,
    encode_schedule,
    next_after,
)
from .single import SingleCPU

if TYPE_CHECKING:
    from ..page import Page

RUNNABLE, BLOCKED, DONE = 0, 1, 2
_STATE_NAMES = {RUNNABLE: "runnable", BLOCKED: "blocked", DONE: "done"}

#: a run that passes this many schedule points is reported as a livelock
DEFAULT_MAX_STEPS = 20_000


class _Stop(GreenletExit):
    """Thrown into CPUs still running when a run ends early, to unwind them."""


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

    def describe(self, owner_of: Callable[[Any], Cpu | None]) -> str:
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
        return tuple(zip(self.masks, self.whats, strict=True))

    @property
    def departures(self) -> int:
        """Choice points where the pick was not the default policy's (preemptions)."""
        return sum(c != d for c, d in zip(self.choices, self.defaults, strict=True))

    @property
    def schedule(self) -> str:
        """The picks, minus the trailing ones the default policy makes anyway."""
        n = len(self.choices)
        while n and self.choices[n - 1] == self.defaults[n - 1]:
            n -= 1
        return encode_schedule(self.choices[:n])


# --- the backend ----------------------------------------------------------------------------

_FAST_OPS = ("current", "point", "trylock_page", "lock_page", "unlock_page", "get_page",
             "get_page_unless_zero", "put_page", "spinlock", "mutex", "rwlock")


class Scheduler(PageOperations):
    """A CpuBackend with `cpus` simulated CPUs (mmplug.cpus.backend.CpuBackend).

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
        #: called at every schedule point of a run as recorder(cpu, where, what, obj), and
        #: when a CPU blocks (what "blocked on ..."): a traced run (mmplug.races.interleaving)
        self.recorder: Callable[[int, str, str, Any], None] | None = None
        if self.fast:
            # One CPU, nothing recorded: the plain operations, bound directly.
            single = SingleCPU()
            single.task = self._boot.task
            for name in _FAST_OPS:
                setattr(self, name, getattr(single, name))

    # --- CpuBackend ----------------------------------------------------------------------
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
        cur = self._cur
        if self.recorder is not None:
            self.recorder(cur.index, cur.where, what, obj)
        if self._nrunnable < 2:
            return
        nxt = self._pick(cur.index, what)
        if nxt is not cur:
            self._switch_to(nxt)

    # The page lock and refcount: PageOperations', each after its schedule point, with
    # the owner of every page lock recorded.
    def trylock_page(self, page: Page) -> bool:
        self.point("trylock_page", page)
        if not super().trylock_page(page):
            return False
        self._own_page(self._cur, page, "trylock")
        return True

    def lock_page(self, page: Page) -> None:
        cur = self._cur
        self.might_sleep(cur.task, "lock_page()", page)
        self.lockdep_acquire(cur, PAGE_LOCK)
        self.point("lock_page", page)
        while page.flags & LOCKED:
            owner = self._page_owner.get(page.pfn)
            if owner is cur:
                raise Deadlock(f"lock_page() on pfn {page.pfn:#x}, already locked by cpu"
                               f"{cur.index} itself (in {cur.where}): it would sleep forever")
            if cur.async_ctx:
                self.violation("LCK-1", "contended lock_page() in an ASYNC migration callback: "
                               "ASYNC migration never sleeps (MIG-10)", page=page)
            self.wait(cur, f"page lock of pfn {page.pfn:#x}", page,
                      self._page_waiters.setdefault(page.pfn, []))
        page.flags |= LOCKED
        self._own_page(cur, page, "lock")

    def unlock_page(self, page: Page) -> None:
        cur = self._cur
        locked = page.flags & LOCKED
        if not locked and self._stopping:
            return
        # (not locked: the operation itself reports LCK-2)
        owner = self._page_owner.pop(page.pfn, None) if locked else None
        if owner is not None and owner is not cur:
            if self._stopping:
                return
            self._page_owner[page.pfn] = owner
            self.violation("LCK-2", f"unlock_page() on cpu{cur.index} of a page locked by "
                           f"cpu{owner.index}", page=page)
        super().unlock_page(page)
        if owner is not None:
            self.release(owner, page)
        waiters = self._page_waiters.get(page.pfn)
        if waiters:
            self.wake(waiters)
        self.point("unlock_page", page)

    def get_page(self, page: Page) -> None:
        self.point("get_page", page)
        super().get_page(page)

    def get_page_unless_zero(self, page: Page) -> bool:
        self.point("get_page_unless_zero", page)
        return super().get_page_unless_zero(page)

    def put_page(self, page: Page) -> None:
        self.point("put_page", page)
        super().put_page(page)

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
        """The running CPU is now in `where` (e.g. "mypool.free"); returns where it was."""
        cur = self._cur
        prev = cur.where
        cur.where = where
        return prev

    def leave(self, prev: str) -> None:
        """Back to where `enter` said the CPU was."""
        self._cur.where = prev

    def wrap_callback(self, fn: Callable[..., Any], hook: str, driver: str
                      ) -> Callable[..., Any]:
        """Entry and exit are schedule points; the CPU remembers which callback it is in."""
        if self.fast:
            return fn
        sched = self
        where = f"{driver}.{hook}"

        def callback(*args: Any) -> Any:
            cur = sched._cur
            saved = cur.where, cur.async_ctx
            cur.where = where
            if hook == "isolate_page":
                cur.async_ctx = bool(args[1] & ISOLATE_ASYNC_MIGRATE)
            elif hook == "migratepage":
                cur.async_ctx = args[3] == MigrateMode.ASYNC
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
                    # (out.error may have been set by the body that just ran)
                    if (out.error is None  # type: ignore[redundant-expr]
                            and not isinstance(exc, GreenletExit)):
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
            default = next_after(runnable, current)
        else:
            default = default_choice(runnable, current)
        cpu = self._strategy.choose(runnable, current, index, what, default)
        out.choices.append(cpu)
        out.defaults.append(default)
        out.masks.append(cpu_mask(runnable))
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

    # --- the lock API: what mmplug.cpus.locks may use -------------------------------------
    @property
    def running_cpu(self) -> Cpu:
        """The CPU running now (cpu0 outside `run()`)."""
        return self._cur

    @property
    def stopping(self) -> bool:
        """The run is being unwound: a release of what is not held is no error then."""
        return self._stopping

    def violation(self, rule: str, message: str, page: Page | None = None) -> NoReturn:
        """Raise the ContractViolation of `rule` on the running CPU, naming the driver and
        the callback it is in."""
        cur = self._cur
        driver: str | None
        driver, _, hook = cur.where.partition(".")
        if not hook:
            driver = None
        raise ContractViolation(rule, f"{message} [cpu{cur.index}]", driver=driver,
                                hook=hook or None, page=page)

    def lockdep_acquire(self, cpu: Cpu, cls: LockClass) -> None:
        """`cpu` is about to wait for a lock of class `cls`: one more edge of the lock-order
        graph from each class it holds (LCK-3)."""
        dep = self.lockdep
        if dep is not None and cpu.holds:
            dep.acquire([h.cls for h in cpu.holds], cls, Witness(cpu.index, cpu.where))

    def wait(self, cpu: Cpu, desc: str, obj: Any, waiters: list[Cpu]) -> None:
        """Park `cpu` on `waiters` until a release wakes it; with nobody able to run, the
        run ends as a deadlock.  `desc` names what it waits for, `obj` is the lock (or page)."""
        if not self._running:
            raise Deadlock(f"cpu{cpu.index} would wait for {desc} with no other CPU running "
                           f"(in {cpu.where})")
        if self.recorder is not None:
            self.recorder(cpu.index, cpu.where, f"blocked on {desc}", None)
        cpu.state = BLOCKED
        cpu.waiting = (desc, obj)
        waiters.append(cpu)
        self._nrunnable -= 1
        if self._nrunnable == 0:
            self._outcome.deadlock = True
            self._abort()
        nxt = self._pick(None, f"blocked on {desc}")
        self._switch_to(nxt)
        if self._stopping:
            raise _Stop()

    def wake(self, waiters: list[Cpu]) -> None:
        """Make every CPU parked on `waiters` runnable again (they compete anew)."""
        for w in waiters:
            if w.state == BLOCKED:
                w.state = RUNNABLE
                w.waiting = None
                self._nrunnable += 1
        waiters.clear()

    def hold(self, cpu: Cpu, obj: Any, cls: LockClass, how: str) -> None:
        """`cpu` now holds `obj` (a lock or a page), taken by `how` ("lock", "read", ...)."""
        cpu.holds.append(Held(cls, obj, how, cpu.where))

    def release(self, cpu: Cpu, obj: Any) -> None:
        """`cpu` no longer holds `obj`."""
        holds = cpu.holds
        for i in range(len(holds) - 1, -1, -1):
            if holds[i].obj is obj:
                del holds[i]
                return

    # --- owners ------------------------------------------------------------------------------
    def _own_page(self, cur: Cpu, page: Page, how: str) -> None:
        self._page_owner[page.pfn] = cur
        self.hold(cur, page, PAGE_LOCK, how)

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

    def held_locks(self) -> list[str]:
        """Locks still held (after a run every lock should be free again)."""
        out = [f"{lock!r} held by cpu{lock.owner.index}" for lock in self.locks
               if lock.is_locked() and lock.owner is not None]
        return out
