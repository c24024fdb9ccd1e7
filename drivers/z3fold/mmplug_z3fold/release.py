"""Releasing z3fold pages: the stale list and the release work.

mm/z3fold.c (v6.0): when a header's last reference goes,
__release_z3fold_page() marks the page STALE, takes it off the LRU, puts the
header on pool->stale and queues free_pages_work on release_wq; the work
frees each stale page after cancelling its compaction work, outside any
spinlock because free_z3fold_page() takes the page lock to
__ClearPageMovable() it (REL-1).  Headless pages have no header, are never
movable, and are freed at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmplug.kernel import (
    clear_page_movable,
    lock_page,
    put_page,
    schedule_point,
    unlock_page,
)

from .flags import NEEDS_COMPACTING, PAGE_STALE, clear_bit, set_bit, test_bit
from .header import Z3foldHeader, z3fold_page_unlock
from .lists import list_del_init

if TYPE_CHECKING:
    from .pool import Z3foldPool


def free_z3fold_page(pool: Z3foldPool, page: Any, headless: bool) -> None:
    """free_z3fold_page(): clear movable under the page lock (not headless), free the page."""
    if not headless:
        lock_page(page)
        clear_page_movable(page)
        unlock_page(page)
        zhdr = pool.headers.pop(page.pfn)
        zhdr.freed = True
    else:
        del pool.headless[page.pfn]
    page.private = 0
    put_page(page)


def _release_z3fold_page(zhdr: Z3foldHeader, locked: bool) -> None:
    """__release_z3fold_page(): STALE, off the LRU, onto the stale list, queue the release."""
    pool = zhdr.pool
    page = zhdr.page
    if zhdr.buddy is not None:
        pool.warn("__release_z3fold_page() of a header still on a buddy list", page)
    set_bit(PAGE_STALE, page)
    clear_bit(NEEDS_COMPACTING, page)
    pool.lock.lock()
    if pool.lru.holds(page):
        pool.lru.delete(page)
    pool.lock.unlock()
    if locked:
        z3fold_page_unlock(zhdr)
    pool.stale_lock.lock()
    pool.stale.add(zhdr)
    try:
        pool.release_wq.queue_work(pool.work)
    finally:
        pool.stale_lock.unlock()
    pool.pages_nr -= 1


def release_z3fold_page_locked(zhdr: Z3foldHeader) -> None:
    """release_z3fold_page_locked(): the kref release with the page lock held."""
    if zhdr.page_lock.trylock():
        zhdr.pool.warn("release_z3fold_page_locked() without the page lock", zhdr.page)
    _release_z3fold_page(zhdr, True)


def release_z3fold_page_locked_list(zhdr: Z3foldHeader) -> None:
    """release_z3fold_page_locked_list(): also take the header off its unbuddied list."""
    pool = zhdr.pool
    pool.lock.lock()
    list_del_init(zhdr)
    pool.lock.unlock()
    if zhdr.page_lock.trylock():
        pool.warn("release_z3fold_page_locked_list() without the page lock", zhdr.page)
    _release_z3fold_page(zhdr, True)


def free_pages_work(pool: Z3foldPool) -> None:
    """free_pages_work(): free every page on the stale list (release_wq)."""
    pool.stale_lock.lock()
    while len(pool.stale):
        zhdr = pool.stale.first()
        pool.stale.delete(zhdr)
        page = zhdr.page
        if not test_bit(PAGE_STALE, page):
            pool.warn("a page on the stale list is not PAGE_STALE", page)
            continue
        pool.stale_lock.unlock()
        if zhdr.work is not None:
            pool.compact_wq.cancel_work_sync(zhdr.work)
        free_z3fold_page(pool, page, False)
        schedule_point(pool.vm, "free_pages_work: cond_resched")
        pool.stale_lock.lock()
    pool.stale_lock.unlock()


__all__ = ["free_z3fold_page", "release_z3fold_page_locked", "release_z3fold_page_locked_list",
           "free_pages_work"]
