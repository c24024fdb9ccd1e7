"""Locks, refcounts and `current`: the single-CPU backend.

Everything that can sleep or race in the kernel goes through a sync backend:
the page lock (mm/filemap.c: trylock_page, lock_page, unlock_page), the page
refcount (include/linux/mm.h: get_page, get_page_unless_zero, put_page) and the
locks drivers use for their own structures (spinlock, rwlock, mutex).

`SingleCPU` is the backend of a VM with one CPU: no schedule points, no
bookkeeping of owners, nothing that costs in the hot loop.  A lock that is
already held can never be released on one CPU, so taking it again is a
`Deadlock`, reported with the lock's name.  mmplug.sched provides the backend
with several simulated CPUs; both implement `SyncBackend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

from attrs import define

from .errors import ContractViolation, Deadlock
from .page import LOCKED

if TYPE_CHECKING:
    from .page import Page

#: include/linux/sched.h: task flags the model looks at.
PF_MEMALLOC = 0x00000800


@define(slots=True, eq=False)
class Task:
    """`current`: the task running on a CPU."""

    name: str = "cpu0"
    cpu: int = 0
    flags: int = 0
    #: spinlocks held: sleeping while > 0 is a bug (might_sleep, LCK-1)
    preempt_count: int = 0
    #: TIF_NEED_RESCHED: need_resched(); ASYNC compaction backs off on it (cc->contended)
    need_resched: bool = False
    #: SIGKILL pending: fatal_signal_pending(); every compaction backs off on it
    sigkill_pending: bool = False


class SyncBackend(Protocol):
    """What the VM and drivers need from a backend of CPUs."""

    def current(self) -> Task: ...
    def point(self, what: str, obj: Any = None) -> None: ...
    def trylock_page(self, page: "Page") -> bool: ...
    def lock_page(self, page: "Page") -> None: ...
    def unlock_page(self, page: "Page") -> None: ...
    def get_page(self, page: "Page") -> None: ...
    def get_page_unless_zero(self, page: "Page") -> bool: ...
    def put_page(self, page: "Page") -> None: ...
    def spinlock(self, name: str) -> Any: ...
    def rwlock(self, name: str) -> Any: ...
    def mutex(self, name: str) -> Any: ...
    def wrap_callback(self, fn: Callable, hook: str, driver: str) -> Callable: ...


class _Lock:
    """Shared shape of the single-CPU locks: a name, a holder count, a context manager."""

    __slots__ = ("name", "held", "_task", "sleeping")

    def __init__(self, name: str, task: Task, sleeping: bool) -> None:
        self.name = name
        self.held = False
        self._task = task
        self.sleeping = sleeping

    def _might_sleep(self) -> None:
        if self.sleeping and self._task.preempt_count:
            raise ContractViolation(
                "LCK-1", f"sleeping lock {self.name!r} taken while a spinlock is held "
                "(might_sleep in atomic context)")

    def lock(self) -> None:
        self._might_sleep()
        if self.held:
            raise Deadlock(f"{self.name!r} is already held on this CPU and nobody else can "
                           "release it (recursive locking)")
        self.held = True
        if not self.sleeping:
            self._task.preempt_count += 1

    def trylock(self) -> bool:
        if self.held:
            return False
        self.held = True
        if not self.sleeping:
            self._task.preempt_count += 1
        return True

    def unlock(self) -> None:
        if not self.held:
            raise ContractViolation("LCK-2", f"unlock of {self.name!r}, which is not held")
        self.held = False
        if not self.sleeping:
            self._task.preempt_count -= 1

    def is_locked(self) -> bool:
        return self.held

    def __enter__(self) -> "_Lock":
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


class SpinLock(_Lock):
    """spinlock_t: never sleeps; holding one makes the CPU atomic."""

    __slots__ = ()

    def __init__(self, name: str, task: Task) -> None:
        super().__init__(name, task, sleeping=False)


class Mutex(_Lock):
    """struct mutex: a sleeping lock (mutex_lock, mutex_trylock, mutex_unlock)."""

    __slots__ = ()

    def __init__(self, name: str, task: Task) -> None:
        super().__init__(name, task, sleeping=True)


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
            raise ContractViolation("LCK-2", f"read_unlock of {self.name!r}, which is not read-held")
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
            raise ContractViolation("LCK-2", f"write_unlock of {self.name!r}, which is not write-held")
        self.writer = False
        self._task.preempt_count -= 1

    def is_locked(self) -> bool:
        return self.writer or self.readers > 0


class SingleCPU:
    """The backend of a one-CPU VM: plain operations, no schedule points."""

    def __init__(self) -> None:
        self._current = Task()

    def current(self) -> Task:
        return self._current

    def point(self, what: str, obj: Any = None) -> None:
        """A schedule point: nothing to switch to on one CPU."""

    # --- page lock (mm/filemap.c) ------------------------------------------------
    def trylock_page(self, page: "Page") -> bool:
        flags = page.flags
        if flags & LOCKED:
            return False
        page.flags = flags | LOCKED
        return True

    def lock_page(self, page: "Page") -> None:
        if self._current.preempt_count:
            raise ContractViolation("LCK-1", "lock_page() while a spinlock is held "
                                    "(might_sleep in atomic context)", page=page)
        if page.flags & LOCKED:
            raise Deadlock(f"lock_page() on pfn {page.pfn:#x}, already locked on this CPU: "
                           "it would sleep forever")
        page.flags |= LOCKED

    def unlock_page(self, page: "Page") -> None:
        if not page.flags & LOCKED:
            raise ContractViolation("LCK-2", "unlock_page() on a page that is not locked", page=page)
        page.flags &= ~LOCKED

    # --- refcount (include/linux/mm.h) ---------------------------------------------
    def get_page(self, page: "Page") -> None:
        if page._refcount <= 0:
            raise ContractViolation("REF-1", "get_page() on a page with no reference (freed page)",
                                    page=page)
        page._refcount += 1

    def get_page_unless_zero(self, page: "Page") -> bool:
        if page._refcount == 0:
            return False
        page._refcount += 1
        return True

    def put_page(self, page: "Page") -> None:
        count = page._refcount - 1
        if count > 0:
            page._refcount = count
            return
        if count < 0:
            raise ContractViolation("REF-1", "put_page() on a page with no reference "
                                    "(refcount underflow)", page=page)
        page._refcount = 0
        page.zone.release_page(page)

    # --- locks for drivers ---------------------------------------------------------
    def spinlock(self, name: str) -> SpinLock:
        return SpinLock(name, self._current)

    def mutex(self, name: str) -> Mutex:
        return Mutex(name, self._current)

    def rwlock(self, name: str) -> RWLock:
        return RWLock(name, self._current)

    def wrap_callback(self, fn: Callable, hook: str, driver: str) -> Callable:
        """Entry and exit of a driver callback are schedule points; none on one CPU."""
        return fn
