"""The backend of a VM with one CPU: `SingleCPU` and its locks.

No schedule points, no bookkeeping of owners, nothing that costs in the hot
loop: the page lock and refcount operations are mmplug.cpus.backend's
PageOperations, as they are.  A lock that is already held can never be released on one CPU, so
taking it again is a `Deadlock`, reported with the lock's name.
mmplug.cpus.scheduler provides the backend with several simulated CPUs; both
implement `CpuBackend`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ContractViolation, Deadlock
from ..page import LOCKED
from .backend import PageOperations, Task

if TYPE_CHECKING:
    from ..page import Page


class _Lock:
    """Shared shape of the single-CPU locks: a name, whether it is held, a context manager.

    Each kind writes its lock() and unlock() out, and __enter__/__exit__ repeat them
    rather than call them: a driver takes a lock per object it stores or reads, and
    on one CPU the checks (might_sleep, recursion, LCK-2) are all a lock costs.
    """

    __slots__ = ("name", "held", "_task")

    #: a mutex may sleep (might_sleep, LCK-1); holding a spinlock makes the CPU atomic
    sleeping = False

    def __init__(self, name: str, task: Task) -> None:
        self.name = name
        self.held = False
        self._task = task

    def _recursive(self) -> Deadlock:
        return Deadlock(f"{self.name!r} is already held on this CPU and nobody else can "
                        "release it (recursive locking)")

    def _not_held(self) -> ContractViolation:
        return ContractViolation("LCK-2", f"unlock of {self.name!r}, which is not held")

    def is_locked(self) -> bool:
        return self.held


class SpinLock(_Lock):
    """spinlock_t: never sleeps; holding one makes the CPU atomic (preempt_count)."""

    __slots__ = ()

    def lock(self) -> None:
        if self.held:
            raise self._recursive()
        self.held = True
        self._task.preempt_count += 1

    def trylock(self) -> bool:
        if self.held:
            return False
        self.held = True
        self._task.preempt_count += 1
        return True

    def unlock(self) -> None:
        if not self.held:
            raise self._not_held()
        self.held = False
        self._task.preempt_count -= 1

    def __enter__(self) -> SpinLock:
        if self.held:            # lock(), written out
            raise self._recursive()
        self.held = True
        self._task.preempt_count += 1
        return self

    def __exit__(self, typ: object, value: object, tb: object) -> None:
        # (the three arguments named: a *args tuple built per exit costs more)
        if not self.held:        # unlock(), written out
            raise self._not_held()
        self.held = False
        self._task.preempt_count -= 1


class Mutex(_Lock):
    """struct mutex: a sleeping lock (mutex_lock, mutex_trylock, mutex_unlock)."""

    __slots__ = ()
    sleeping = True

    def _might_sleep(self) -> None:
        if self._task.preempt_count:
            raise ContractViolation(
                "LCK-1", f"sleeping lock {self.name!r} taken while a spinlock is held "
                "(might_sleep in atomic context)")

    def lock(self) -> None:
        if self._task.preempt_count:
            self._might_sleep()
        if self.held:
            raise self._recursive()
        self.held = True

    def trylock(self) -> bool:
        if self.held:
            return False
        self.held = True
        return True

    def unlock(self) -> None:
        if not self.held:
            raise self._not_held()
        self.held = False

    def __enter__(self) -> Mutex:
        if self._task.preempt_count:   # lock(), written out
            self._might_sleep()
        if self.held:
            raise self._recursive()
        self.held = True
        return self

    def __exit__(self, typ: object, value: object, tb: object) -> None:
        if not self.held:              # unlock(), written out
            raise self._not_held()
        self.held = False


class RWLock:
    """rwlock_t: many readers or one writer (read_lock/write_lock and trylocks)."""

    __slots__ = ("name", "readers", "writer", "_task")

    def __init__(self, name: str, task: Task) -> None:
        self.name = name
        self.readers = 0
        self.writer = False
        self._task = task

    def read_lock(self) -> None:
        if self.writer:
            raise Deadlock(f"read_lock({self.name!r}) while this CPU holds it for writing")
        self.readers += 1
        self._task.preempt_count += 1

    def read_trylock(self) -> bool:
        if self.writer:
            return False
        self.read_lock()
        return True

    def read_unlock(self) -> None:
        if self.readers <= 0:
            raise ContractViolation("LCK-2",
                                    f"read_unlock of {self.name!r}, which is not read-held")
        self.readers -= 1
        self._task.preempt_count -= 1

    def write_lock(self) -> None:
        if self.writer or self.readers:
            raise Deadlock(f"write_lock({self.name!r}) while this CPU already holds it")
        self.writer = True
        self._task.preempt_count += 1

    def write_trylock(self) -> bool:
        if self.writer or self.readers:
            return False
        self.write_lock()
        return True

    def write_unlock(self) -> None:
        if not self.writer:
            raise ContractViolation("LCK-2",
                                    f"write_unlock of {self.name!r}, which is not write-held")
        self.writer = False
        self._task.preempt_count -= 1

    def is_locked(self) -> bool:
        return self.writer or self.readers > 0


class SingleCPU(PageOperations):
    """The backend of a one-CPU VM: plain operations, no schedule points.

    Its page operations are PageOperations' own, and the per-page paths of
    mmplug.kernel and mmplug.migrate do them in place when `type(vm.cpus) is
    SingleCPU`.  So the class has slots (nothing replaces an operation on an
    instance); a backend that logs, scripts or delays an operation subclasses
    it, and the VM then calls every operation through it.
    """

    # `schedules` is a slot, not a class attribute: the driver helpers of mmplug.kernel read
    # it once or more per page, and an instance's slot is the read the interpreter makes fast
    __slots__ = ("task", "schedules")

    def __init__(self) -> None:
        self.schedules = False
        #: the one task, `current()` (the VM's per-page paths read its preempt_count)
        self.task = Task()

    def current(self) -> Task:
        return self.task

    def point(self, what: str, obj: Any = None) -> None:
        """A schedule point: nothing to switch to on one CPU."""

    # --- the page lock and refcount: PageOperations' own, and lock_page ---------------
    def lock_page(self, page: Page) -> None:
        if self.task.preempt_count:   # tested first: the hot path makes no call for it
            self.might_sleep(self.task, "lock_page()", page)
        if page.flags & LOCKED:
            raise Deadlock(f"lock_page() on pfn {page.pfn:#x}, already locked on this CPU: "
                           "it would sleep forever")
        page.flags |= LOCKED

    # --- locks for drivers ---------------------------------------------------------
    def spinlock(self, name: str) -> SpinLock:
        return SpinLock(name, self.task)

    def mutex(self, name: str) -> Mutex:
        return Mutex(name, self.task)

    def rwlock(self, name: str) -> RWLock:
        return RWLock(name, self.task)

    def wrap_callback(self, fn: Callable[..., Any], hook: str, driver: str
                      ) -> Callable[..., Any]:
        """Entry and exit of a driver callback are schedule points; none on one CPU."""
        return fn

    def enter(self, where: str) -> str:
        """Where a CPU is matters to reports of several CPUs only."""
        return where

    def leave(self, prev: str) -> None:
        """Nothing to restore on one CPU."""
