"""struct address_space and its movable operations.

In v4.8-v5.x a movable driver's callbacks live in `address_space_operations`
(include/linux/fs.h: isolate_page, migratepage, putback_page) of an inode it owns
(zsmalloc: pool->inode, balloon: balloon_mnt's inode, z3fold: pool->inode).
One driver instance owns one AddressSpace; pages point at it through the
tagged `page->mapping` word.  [v6.0] the word points at `movable_operations`
directly; the model keeps the address space, which is the same dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from attrs import define, frozen

if TYPE_CHECKING:
    from .watchdog import MovableCalls


@frozen(slots=True)
class MovableOps:
    """The three movable callbacks of one driver, called directly per page."""

    isolate_page: Callable[[Any, int], bool]
    migratepage: Callable[[Any, Any, Any, int], int]
    putback_page: Callable[[Any], None]


@define(slots=True, eq=False, weakref_slot=False)
class AddressSpace:
    """One driver instance's address space.

    `handle` is the 4-aligned value stored (with tag bits) in page->mapping
    (FLG-1); `private_data` is the driver instance (mapping->private_data).
    """

    handle: int
    driver: str
    a_ops: MovableOps | None
    private_data: Any = None
    serial: int = 0
    #: pages of this space the VM currently holds isolated (for REL-3 checks)
    nr_isolated: int = 0
    #: what the watchdog names while a callback runs: mmplug.migrate's call sites store it
    #: in the thread's lane around each call (None: no time limit)
    watch: MovableCalls | None = None

    @property
    def name(self) -> str:
        return f"{self.driver}#{self.serial}"

    def interpose(self, *, isolate_page: Callable[..., Any] | None = None,
                  migratepage: Callable[..., Any] | None = None,
                  putback_page: Callable[..., Any] | None = None) -> MovableOps:
        """Put wrappers in front of this space's callbacks, as the VM calls them per page.

        Each wrapper is called as ``wrapper(call, *args)`` with the callback's
        own arguments, where `call` is what it wraps (the driver's callback,
        or an earlier wrapper); it returns what the callback is to return.  A
        spy counts and checks around ``call(*args)``, a test may replace the
        callback by not calling it.  Returns the callbacks as they were, to
        put back with ``mapping.a_ops = ...``.
        """
        ops = self.a_ops
        if ops is None:
            raise ValueError(f"{self!r} has no callbacks any more: its instance was destroyed")
        self.a_ops = MovableOps(
            ops.isolate_page if isolate_page is None else partial(isolate_page, ops.isolate_page),
            ops.migratepage if migratepage is None else partial(migratepage, ops.migratepage),
            ops.putback_page if putback_page is None else partial(putback_page, ops.putback_page))
        return ops

    def __repr__(self) -> str:
        return f"<AddressSpace {self.name} handle={self.handle:#x}>"
