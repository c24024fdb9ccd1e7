"""struct z3fold_header, its per-page lock and its kref.

mm/z3fold.c (v6.0): the header sits in the first ZHDR_CHUNKS of every
non-headless page and is found from the page (page_address) or from a handle
(the slot holds the header's address plus the buddy index).  In the model the
header is a Python object the pool finds by pfn; migration copies it to the
new page, as the kernel's memcpy of the whole page does.

A header whose page was freed (or migrated away) is marked `freed`: taking its
lock or its kref afterwards is the use after free KASAN would report, raised
as a REF-1 violation naming the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define

from mmplug import ContractViolation
from mmplug.kernel import schedule_point

if TYPE_CHECKING:
    from mmplug import Page

    from .handles import BuddySlots
    from .lists import BuddyList
    from .workqueue import Work


@define(slots=True, eq=False)
class Z3foldHeader:
    """struct z3fold_header (buddy, page_lock, refcount, work, slots, pool, cpu, chunk counts)."""

    page: Page
    pool: Any
    page_lock: Any
    slots: BuddySlots | None
    work: Work | None = None
    #: kref: one per object in the page, plus isolation, plus pending compaction work
    refcount: int = 1
    #: the CPU whose unbuddied list holds the page, -1 if none
    cpu: int = -1
    first_chunks: int = 0
    middle_chunks: int = 0
    last_chunks: int = 0
    start_middle: int = 0
    #: 2-bit field: which slot index FIRST uses; bumped when MIDDLE becomes FIRST
    first_num: int = 0
    mapped_count: int = 0
    foreign_handles: int = 0
    #: zhdr->buddy: the unbuddied or stale list the header is on, or None
    buddy: BuddyList | None = None
    freed: bool = False

    def __repr__(self) -> str:
        return (f"<z3fold header pfn {self.page.pfn:#x} chunks {self.first_chunks}/"
                f"{self.middle_chunks}@{self.start_middle}/{self.last_chunks} "
                f"kref {self.refcount} first_num {self.first_num}>")


def _use_after_free(zhdr: Z3foldHeader, what: str) -> ContractViolation:
    return ContractViolation(
        "REF-1", f"{what} on the z3fold header of pfn {zhdr.page.pfn:#x}, whose page was "
        "already freed or migrated away (use after free)", driver="z3fold", page=zhdr.page)


def z3fold_page_lock(zhdr: Z3foldHeader) -> None:
    """z3fold_page_lock(): spin on zhdr->page_lock."""
    if zhdr.freed:
        raise _use_after_free(zhdr, "z3fold_page_lock()")
    zhdr.page_lock.lock()


def z3fold_page_trylock(zhdr: Z3foldHeader) -> bool:
    """z3fold_page_trylock()."""
    if zhdr.freed:
        raise _use_after_free(zhdr, "z3fold_page_trylock()")
    return zhdr.page_lock.trylock()


def z3fold_page_unlock(zhdr: Z3foldHeader) -> None:
    """z3fold_page_unlock()."""
    zhdr.page_lock.unlock()


def kref_get(zhdr: Z3foldHeader) -> None:
    """kref_get(&zhdr->refcount): only valid while somebody else holds a reference."""
    if zhdr.refcount <= 0 or zhdr.freed:
        raise _use_after_free(zhdr, "kref_get()")
    zhdr.refcount += 1


def kref_put(zhdr: Z3foldHeader, release: Callable[[Z3foldHeader], None]) -> bool:
    """kref_put(): drop one reference; the last one calls `release` and returns True."""
    if zhdr.refcount <= 0 or zhdr.freed:
        raise _use_after_free(zhdr, "kref_put() (reference count underflow)")
    zhdr.refcount -= 1
    if zhdr.refcount:
        return False
    release(zhdr)
    return True


def cpu_relax(vm: Any, what: str) -> None:
    """cpu_relax() in a retry loop: let another simulated CPU make progress."""
    schedule_point(vm, what)
