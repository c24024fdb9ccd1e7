"""What the VM and drivers need from the CPUs: the backend protocol, `current`, and the
page lock and refcount operations every backend performs.

Everything that can sleep or race in the kernel goes through a CPU backend:
the page lock (mm/filemap.c: trylock_page, lock_page, unlock_page), the page
refcount (include/linux/mm.h: get_page, get_page_unless_zero, put_page) and the
locks drivers use for their own structures (spinlock, rwlock, mutex).
`PageOperations` holds those operations on the page itself, written once: the
single-CPU backend inherits them as they are, the scheduler adds its schedule
point and its bookkeeping of owners around them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from attrs import define

from ..errors import ContractViolation
from ..page import LOCKED

if TYPE_CHECKING:
    from ..page import Page

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


class CpuBackend(Protocol):
    """What the VM and drivers need from a backend of CPUs (`vm.cpus`)."""

    def current(self) -> Task:
        """The task running now."""
        ...

    #: False if `point` never switches CPUs (one CPU): hot paths then skip the call
    schedules: bool

    def point(self, what: str, obj: Any = None) -> None:
        """A schedule point: another CPU may run here."""
        ...

    def trylock_page(self, page: Page) -> bool: ...
    def lock_page(self, page: Page) -> None: ...
    def unlock_page(self, page: Page) -> None: ...
    def get_page(self, page: Page) -> None: ...
    def get_page_unless_zero(self, page: Page) -> bool: ...
    def put_page(self, page: Page) -> None: ...
    def spinlock(self, name: str) -> Any: ...
    def rwlock(self, name: str) -> Any: ...
    def mutex(self, name: str) -> Any: ...

    def wrap_callback(self, fn: Callable[..., Any], hook: str, driver: str
                      ) -> Callable[..., Any]:
        """`fn`, a driver's movable callback, as this backend runs it."""
        ...

    def enter(self, where: str) -> str:
        """The running CPU is now in `where` (e.g. "mypool.free"); returns where it was."""
        ...

    def leave(self, prev: str) -> None:
        """Back to where `enter` said the CPU was."""
        ...


class PageOperations:
    """The page lock (mm/filemap.c) and the refcount (include/linux/mm.h) on the page
    itself, written once for every backend.

    The single-CPU backend uses them as they are; the scheduler runs each after
    its schedule point and records who holds a page lock.  A broken rule is
    reported through `violation`, which a backend may make say on which CPU it
    happened.
    """

    __slots__ = ()

    #: whether `point` may switch CPUs; False lets a hot path skip the call to it
    schedules = True

    def violation(self, rule: str, message: str, page: Page | None = None) -> NoReturn:
        """Raise the ContractViolation of `rule` about `page`."""
        raise ContractViolation(rule, message, page=page)

    def might_sleep(self, task: Task, what: str, page: Page | None = None) -> None:
        """might_sleep(): sleeping while a spinlock is held is LCK-1."""
        if task.preempt_count:
            self.violation("LCK-1", f"{what} while a spinlock is held (might_sleep in atomic "
                           "context)", page)

    def trylock_page(self, page: Page) -> bool:
        """trylock_page(): take PG_locked if it is free; never sleeps."""
        flags = page.flags
        if flags & LOCKED:
            return False
        page.flags = flags | LOCKED
        return True

    def unlock_page(self, page: Page) -> None:
        """unlock_page(): only a locked page can be unlocked (LCK-2)."""
        flags = page.flags
        if not flags & LOCKED:
            self.violation("LCK-2", "unlock_page() on a page that is not locked", page)
        page.flags = flags & ~LOCKED

    def get_page(self, page: Page) -> None:
        """get_page(): a reference on a page that has one (REF-1)."""
        if page._refcount <= 0:
            self.violation("REF-1", "get_page() on a page with no reference (freed page)", page)
        page._refcount += 1

    def get_page_unless_zero(self, page: Page) -> bool:
        """get_page_unless_zero(): a reference, unless the page is being freed."""
        if page._refcount == 0:
            return False
        page._refcount += 1
        return True

    def put_page(self, page: Page) -> None:
        """put_page(): drop a reference; the last one frees the page, one too many is REF-1."""
        count = page._refcount - 1
        if count > 0:
            page._refcount = count
            return
        if count < 0:
            self.violation("REF-1", "put_page() on a page with no reference (refcount "
                           "underflow)", page)
        page._refcount = 0
        page.zone.release_page(page)
