"""Deferred freeing of empty zspages: pool->free_work (mm/zsmalloc.c, v4.19).

A zspage cannot always be freed where it becomes empty: free_zspage() runs
under class->lock and may only trylock the subpages, and zs_page_putback()
runs under the page lock the VM holds.  Both queue pool->free_work instead;
async_free_zspage() later takes every ZS_EMPTY zspage off its class, locks all
its subpages (lock_zspage, which may sleep) and frees it.

The work queue is explicit: `schedule` marks the work pending (schedule_work:
a second call while pending does nothing) and the pool runs it at the entry
of store/free/compact, on `run_deferred_work()`, and flushes it in destroy —
never inside a driver callback, so never under a page lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mmplug.kernel import get_page, lock_page, page_locked, put_page, trylock_page

from .sizeclass import Fullness, distinct_classes
from .waits import wait_event
from .zspage import Zspage

if TYPE_CHECKING:
    from mmplug import Page

    from .pool import ZsPool


class WorkQueue:
    """The system workqueue as far as one pool sees it: work items pending or not."""

    __slots__ = ("pending", "runs")

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        #: how many work items ran (for tests and stats)
        self.runs = 0

    def schedule(self, work: Callable[[], None]) -> bool:
        """schedule_work(): False if the work was already pending."""
        if work in self.pending:
            return False
        self.pending.append(work)
        return True

    def run_pending(self) -> int:
        """The kworker: run every pending item once (an item may queue itself again)."""
        ran = 0
        while self.pending:
            work = self.pending.pop(0)
            work()
            ran += 1
        self.runs += ran
        return ran

    def flush(self, work: Callable[[], None]) -> None:
        """flush_work(): return only when `work` is neither pending nor running."""
        while work in self.pending:
            self.pending.remove(work)
            work()
            self.runs += 1


def wait_on_page_locked(pool: ZsPool, page: Page, what: str) -> None:
    """wait_on_page_locked(): sleep until the page lock is free (without taking it)."""
    wait_event(pool.vm, lambda: not page_locked(page), what)


def sleeping_lock_page(pool: ZsPool, page: Page, what: str) -> None:
    """lock_page(), with the wait made a schedule point another CPU can use."""
    if trylock_page(page):
        return
    wait_on_page_locked(pool, page, what)
    lock_page(page)


def lock_zspage(pool: ZsPool, zspage: Zspage) -> list[Page]:
    """lock_zspage(): lock every subpage before the zspage is torn down.

    Fixed (2505a981114d): each subpage is found and trylocked under the
    zspage's migrate read lock, and a busy one is waited for outside it with a
    reference held, then the walk resumes from the last page locked — so a
    subpage migrated meanwhile is never locked in place of its replacement.

    With bug "BUG-7" this is v4.19's walk: read the next link, then sleep in
    lock_page; a subpage that migrates during the sleep has had its link reset,
    so the walk locks the old page and stops short of the rest.

    Returns the pages locked, in order.
    """
    sp = pool.struct_pages
    what = "lock_zspage: wait for a subpage's lock"
    locked: list[Page] = []
    if "BUG-7" in pool.bugs:
        page = zspage.first_page
        while page is not None:
            sleeping_lock_page(pool, page, what)
            locked.append(page)
            page = sp.get_next_page(page)
        return locked
    lock = zspage.lock
    while True:
        lock.read_lock()
        page = zspage.first_page
        if trylock_page(page):
            break
        get_page(page)
        lock.read_unlock()
        wait_on_page_locked(pool, page, what)
        put_page(page)
    locked.append(page)
    curr = page
    while (page := sp.get_next_page(curr)) is not None:
        if trylock_page(page):
            locked.append(page)
            curr = page
        else:
            get_page(page)
            lock.read_unlock()
            wait_on_page_locked(pool, page, what)
            put_page(page)
            lock.read_lock()
    lock.read_unlock()
    return locked


def async_free_zspage(pool: ZsPool) -> None:
    """async_free_zspage(): free every zspage waiting in a ZS_EMPTY list.

    The classes are walked upward and each ZS_EMPTY list is spliced to the
    *head* of the private list (list_splice_init), so the frees start with
    the largest class and, inside a class, with the zspage at its list head.
    """
    spliced: list[list[Zspage]] = []
    for cls in distinct_classes(pool.size_class):
        with cls.lock:
            empties = cls.fullness_list[Fullness.ZS_EMPTY]
            taken = list(empties)
            for zspage in taken:
                zspage.list = "deferred"
            spliced.append(taken)
            # The kernel leaves CLASS_EMPTY as it was (nothing reads it); the
            # model keeps the per-group count exact for verify().
            cls.stats[Fullness.ZS_EMPTY] -= len(taken)
            empties.clear()
    free_pages = [zspage for taken in reversed(spliced) for zspage in taken]
    for zspage in free_pages:
        zspage.list = None
        lock_zspage(pool, zspage)
        if zspage.fullness != Fullness.ZS_EMPTY:
            raise AssertionError(f"async_free_zspage: {zspage!r} is not ZS_EMPTY")
        cls = pool.size_class[zspage.class_idx]
        with cls.lock:
            pool.free_locked_zspage(cls, zspage)
