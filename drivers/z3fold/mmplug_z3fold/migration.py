"""The movable callbacks: z3fold_page_isolate, z3fold_page_migrate, z3fold_page_putback.

mm/z3fold.c (v6.0), DRV-3F2..DRV-3F4.  Isolation claims the page
(PAGE_CLAIMED) and takes a header reference; migration copies the page and
its header, marks the old one PAGE_MIGRATED before unlocking it (readers
retry: DRV-3F5), re-encodes the handles to the new page, and queues
compaction of the new page, which inherits the isolation reference;
putback gives everything back.

v6.0 copies page->private to the new page with PAGE_CLAIMED (set by
isolation) in it; the queued compaction then finds the page claimed and
never lists it again, so a migrated page takes no new objects and is neither
reclaimed nor isolated again.  The model drops that one bit from the copy,
so that the compaction it queues re-lists the page; bugs={"newpage-claimed"}
keeps the word as v6.0 copies it.
"""

from __future__ import annotations

from typing import Any

from mmplug.kernel import (
    EAGAIN,
    EBUSY,
    MIGRATEPAGE_SUCCESS,
    clear_page_movable,
    copy_highpage,
    get_page,
    page_mapping,
    put_page,
    schedule_point,
    set_page_movable,
)

from .alloc import add_to_unbuddied
from .flags import (
    FIRST,
    LAST,
    MIDDLE,
    NEEDS_COMPACTING,
    PAGE_CLAIMED,
    PAGE_HEADLESS,
    PAGE_MIGRATED,
    PAGE_STALE,
    clear_bit,
    set_bit,
    test_and_set_bit,
    test_bit,
)
from .handles import encode_handle
from .header import (
    Z3foldHeader,
    kref_get,
    kref_put,
    z3fold_page_lock,
    z3fold_page_trylock,
    z3fold_page_unlock,
)
from .lists import list_del_init
from .release import release_z3fold_page_locked
from .workqueue import Work, work_pending

#: the schedule point between unlocking the old header and re-encoding the handles:
#: the window of BUG-13
MIGRATE_WINDOW = "z3fold_page_migrate: old header unlocked, handles not yet moved"


def z3fold_page_isolate(page: Any, mode: int) -> bool:
    """z3fold_page_isolate() (DRV-3F2)."""
    if test_bit(PAGE_HEADLESS, page):
        return False
    pool = page_mapping(page).private_data
    zhdr = pool.header_of(page)
    z3fold_page_lock(zhdr)
    if (test_bit(NEEDS_COMPACTING, page) or test_bit(PAGE_STALE, page)
            or zhdr.mapped_count or zhdr.foreign_handles
            or test_and_set_bit(PAGE_CLAIMED, page)):
        z3fold_page_unlock(zhdr)
        return False
    pool.lock.lock()
    list_del_init(zhdr)
    if pool.lru.holds(page):
        pool.lru.delete(page)
    pool.lock.unlock()
    kref_get(zhdr)
    z3fold_page_unlock(zhdr)
    return True


def z3fold_page_migrate(mapping: Any, newpage: Any, page: Any, mode: int) -> int:
    """z3fold_page_migrate() (DRV-3F3)."""
    pool = mapping.private_data
    zhdr = pool.header_of(page)
    if not test_bit(PAGE_CLAIMED, page):
        pool.warn("z3fold_page_migrate() of a page that is not PAGE_CLAIMED", page)
    if not z3fold_page_trylock(zhdr):
        return -EAGAIN
    if zhdr.mapped_count or zhdr.foreign_handles:
        clear_bit(PAGE_CLAIMED, page)
        z3fold_page_unlock(zhdr)
        return -EBUSY
    if work_pending(zhdr.work):
        z3fold_page_unlock(zhdr)
        return -EAGAIN
    copy_highpage(newpage, page)
    new_zhdr = _copy_header(pool, zhdr, newpage)
    newpage.private = page.private
    if "newpage-claimed" not in pool.bugs:
        clear_bit(PAGE_CLAIMED, newpage)
    if "BUG-13" not in pool.bugs:
        set_bit(PAGE_MIGRATED, page)
    z3fold_page_unlock(zhdr)
    schedule_point(page, MIGRATE_WINDOW)
    clear_page_movable(page)
    get_page(newpage)
    z3fold_page_lock(new_zhdr)
    if new_zhdr.first_chunks:
        encode_handle(pool, new_zhdr, FIRST)
    if new_zhdr.last_chunks:
        encode_handle(pool, new_zhdr, LAST)
    if new_zhdr.middle_chunks:
        encode_handle(pool, new_zhdr, MIDDLE)
    set_bit(NEEDS_COMPACTING, newpage)
    new_zhdr.cpu = pool.this_cpu()
    pool.unbuddied_of(new_zhdr.cpu)
    pool.lock.lock()
    pool.lru.add(newpage)
    pool.lock.unlock()
    set_page_movable(newpage, mapping)
    z3fold_page_unlock(new_zhdr)
    pool.compact_wq.queue_work(new_zhdr.work)
    # The old copy is the VM's now: PAGE_CLAIMED and PAGE_MIGRATED go with it.
    page.private = 0
    del pool.headers[page.pfn]
    zhdr.freed = True
    put_page(page)
    return MIGRATEPAGE_SUCCESS


def _copy_header(pool: Any, zhdr: Z3foldHeader, newpage: Any) -> Z3foldHeader:
    """memcpy of the header, then spin_lock_init, INIT_WORK and INIT_LIST_HEAD on the copy."""
    from .compact import compact_page_work
    new_zhdr = Z3foldHeader(
        page=newpage, pool=pool,
        page_lock=pool.new_spinlock(f"z3fold_header.page_lock[{newpage.pfn:#x}]"),
        slots=zhdr.slots, refcount=zhdr.refcount, cpu=zhdr.cpu,
        first_chunks=zhdr.first_chunks, middle_chunks=zhdr.middle_chunks,
        last_chunks=zhdr.last_chunks, start_middle=zhdr.start_middle, first_num=zhdr.first_num,
        mapped_count=zhdr.mapped_count, foreign_handles=zhdr.foreign_handles)
    new_zhdr.work = Work(compact_page_work, new_zhdr)
    newpage.lru = None
    pool.headers[newpage.pfn] = new_zhdr
    return new_zhdr


def z3fold_page_putback(page: Any) -> None:
    """z3fold_page_putback() (DRV-3F4)."""
    pool = page_mapping(page).private_data
    zhdr = pool.header_of(page)
    z3fold_page_lock(zhdr)
    # v6.0 unlists without the pool lock; the model takes it, the list being shared.
    pool.lock.lock()
    list_del_init(zhdr)
    pool.lock.unlock()
    if kref_put(zhdr, release_z3fold_page_locked):
        return
    pool.lock.lock()
    pool.lru.add(page)
    pool.lock.unlock()
    if zhdr.buddy is None:
        add_to_unbuddied(pool, zhdr)
    clear_bit(PAGE_CLAIMED, page)
    z3fold_page_unlock(zhdr)
