"""A driver's locks on several simulated CPUs: spinlock, mutex and rwlock with owners and
waiters (include/linux/spinlock.h, mutex.h, rwlock.h).

Every operation is a schedule point.  A lock that is taken waits, for real,
until its holder releases it (the releaser wakes every waiter, which then
competes again).  The locks know the scheduler only through its lock API
(`Scheduler.running_cpu`, `stopping`, `violation`, `lockdep_acquire`,
`wait`, `wake`, `hold`, `release` and `point`), documented there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import Deadlock
from .lockdep import LockClass

if TYPE_CHECKING:
    from .scheduler import Cpu, Scheduler


class SchedLock:
    """A spinlock (`sleeping=False`) or a mutex (`sleeping=True`) with an owner and waiters."""

    __slots__ = ("name", "sched", "owner", "waiters", "sleeping", "cls")

    def __init__(self, sched: Scheduler, name: str, sleeping: bool, kind: str = "driver") -> None:
        self.name = name
        self.sched = sched
        self.owner: Cpu | None = None
        self.waiters: list[Cpu] = []
        self.sleeping = sleeping
        self.cls = LockClass(kind, name)

    def lock(self) -> None:
        s = self.sched
        cur = s.running_cpu
        op = "mutex_lock" if self.sleeping else "spin_lock"
        if self.sleeping and cur.task.preempt_count:
            s.violation("LCK-1", f"{op}({self.name!r}) while a spinlock is held "
                        "(might_sleep in atomic context)")
        s.lockdep_acquire(cur, self.cls)
        s.point(op, self)
        while self.owner is not None:
            if self.owner is cur:
                raise Deadlock(f"{op}({self.name!r}) on cpu{cur.index}, which already holds it "
                               f"(recursive locking, in {cur.where})")
            if self.sleeping and cur.async_ctx:
                s.violation("LCK-1", f"contended {op}({self.name!r}) in an ASYNC migration "
                            "callback: ASYNC migration never sleeps (MIG-10)")
            s.wait(cur, repr(self.name), self, self.waiters)
        self._take(cur, "lock")

    def _take(self, cur: Cpu, how: str) -> None:
        self.owner = cur
        if not self.sleeping:
            cur.task.preempt_count += 1
        self.sched.hold(cur, self, self.cls, how)

    def trylock(self) -> bool:
        s = self.sched
        s.point("mutex_trylock" if self.sleeping else "spin_trylock", self)
        if self.owner is not None:
            return False
        self._take(s.running_cpu, "trylock")
        return True

    def unlock(self) -> None:
        s = self.sched
        cur = s.running_cpu
        if self.owner is not cur:
            if s.stopping:
                return
            who = "nobody" if self.owner is None else f"cpu{self.owner.index}"
            s.violation("LCK-2", f"unlock of {self.name!r} on cpu{cur.index}, held by {who}")
        self.owner = None
        if not self.sleeping:
            cur.task.preempt_count -= 1
        s.release(cur, self)
        s.wake(self.waiters)
        s.point("mutex_unlock" if self.sleeping else "spin_unlock", self)

    def is_locked(self) -> bool:
        return self.owner is not None

    def __enter__(self) -> SchedLock:
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

    def __init__(self, sched: Scheduler, name: str) -> None:
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
        self.sched.hold(cur, self, self.cls, how)

    def _drop(self, cur: Cpu) -> None:
        s = self.sched
        cur.task.preempt_count -= 1
        s.release(cur, self)
        s.wake(self.waiters)

    def read_lock(self) -> None:
        s = self.sched
        cur = s.running_cpu
        if cur not in self.readers:
            s.lockdep_acquire(cur, self.cls)
        s.point("read_lock", self)
        while self.writer is not None:
            if self.writer is cur:
                raise Deadlock(f"read_lock({self.name!r}) on cpu{cur.index}, which holds it "
                               "for writing")
            s.wait(cur, f"{self.name!r} (read)", self, self.waiters)
        self.readers[cur] = self.readers.get(cur, 0) + 1
        self._take(cur, "read")

    def read_trylock(self) -> bool:
        s = self.sched
        s.point("read_trylock", self)
        if self.writer is not None:
            return False
        cur = s.running_cpu
        self.readers[cur] = self.readers.get(cur, 0) + 1
        self._take(cur, "read")
        return True

    def read_unlock(self) -> None:
        s = self.sched
        cur = s.running_cpu
        n = self.readers.get(cur, 0)
        if not n:
            if s.stopping:
                return
            s.violation("LCK-2", f"read_unlock of {self.name!r} on cpu{cur.index}, which does "
                        "not hold it for reading")
        if n == 1:
            del self.readers[cur]
        else:
            self.readers[cur] = n - 1
        self._drop(cur)
        s.point("read_unlock", self)

    def write_lock(self) -> None:
        s = self.sched
        cur = s.running_cpu
        s.lockdep_acquire(cur, self.cls)
        s.point("write_lock", self)
        while self.writer is not None or self.readers:
            if self.writer is cur or cur in self.readers:
                raise Deadlock(f"write_lock({self.name!r}) on cpu{cur.index}, which already "
                               "holds it")
            s.wait(cur, f"{self.name!r} (write)", self, self.waiters)
        self.writer = cur
        self._take(cur, "write")

    def write_trylock(self) -> bool:
        s = self.sched
        s.point("write_trylock", self)
        if self.writer is not None or self.readers:
            return False
        cur = s.running_cpu
        self.writer = cur
        self._take(cur, "write")
        return True

    def write_unlock(self) -> None:
        s = self.sched
        cur = s.running_cpu
        if self.writer is not cur:
            if s.stopping:
                return
            s.violation("LCK-2", f"write_unlock of {self.name!r} on cpu{cur.index}, which does "
                        "not hold it for writing")
        self.writer = None
        self._drop(cur)
        s.point("write_unlock", self)

    def is_locked(self) -> bool:
        return self.writer is not None or bool(self.readers)

    def __repr__(self) -> str:
        return f"<rwlock {self.name!r}>"
