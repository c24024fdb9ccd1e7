"""struct address_space and its movable operations.

In v4.8-v5.x a movable driver's callbacks live in `address_space_operations`
(include/linux/fs.h: isolate_page, migratepage, putback_page) of an inode it owns
(zsmalloc: pool->inode, balloon: balloon_mnt's inode, z3fold: pool->inode).
One driver instance owns one AddressSpace; pages point at it through the
tagged `page->mapping` word.  [v6.0] the word points at `movable_operations`
directly; the model keeps the address space, which is the same dispatch.
"""

from __future__ import annotations

from typing import Any, Callable

from attrs import define, field, frozen


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

    @property
    def name(self) -> str:
        return f"{self.driver}#{self.serial}"

    def __repr__(self) -> str:
        return f"<AddressSpace {self.name} handle={self.handle:#x}>"
