"""Reclaim from the bottom: z3fold_reclaim_page and the zpool shrink loop.

mm/z3fold.c (v6.0).  Reclaim walks the pool LRU from its oldest end, claims
a page (PAGE_CLAIMED, under the page lock for a shared page), takes a
header reference of its own and unlists it, encodes the page's handles into
an on-stack slots structure (HANDLES_NOFREE: z3fold_free must not free
them), then calls the user's evict() for MIDDLE, FIRST and LAST; evict is
expected to write the object back and z3fold_free() it.  Afterwards the
page is released if that was its last reference, else it goes back on the
LRU and an unbuddied list.

The reference reclaim holds is what keeps a z3fold_free() of the last
object from releasing the page under it (BUG-14); with BUG-14 selected it
is not taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug.kernel import EAGAIN, EINVAL

from .alloc import add_to_unbuddied
from .flags import (
    FIRST,
    LAST,
    MIDDLE,
    PAGE_CLAIMED,
    PAGE_HEADLESS,
    clear_bit,
    test_and_set_bit,
    test_bit,
)
from .handles import encode_handle_in
from .header import kref_get, kref_put, z3fold_page_lock, z3fold_page_trylock, z3fold_page_unlock
from .lists import list_del_init
from .release import free_z3fold_page, release_z3fold_page_locked

if TYPE_CHECKING:
    from .pool import Z3foldPool


def z3fold_reclaim_page(pool: Z3foldPool, retries: int) -> int:
    """z3fold_reclaim_page(): 0 if a page was freed, -EINVAL, or -EAGAIN after `retries`."""
    slots = pool.slots_cache.alloc_on_stack()
    try:
        return _reclaim(pool, retries, slots)
    finally:
        pool.slots_cache.free(slots)


def _reclaim(pool: Z3foldPool, retries: int, slots) -> int:
    ret = -1
    pool.lock.lock()
    if pool.evict is None or retries == 0:
        pool.lock.unlock()
        return -EINVAL
    for _ in range(retries):
        if not len(pool.lru):
            pool.lock.unlock()
            return -EINVAL
        zhdr = None
        page = None
        for candidate in pool.lru.oldest_first():
            if test_bit(PAGE_HEADLESS, candidate):
                # No header lock to race __z3fold_alloc with; the claim bit keeps free away.
                if test_and_set_bit(PAGE_CLAIMED, candidate):
                    continue
                page = candidate
                break
            header = pool.header_of(candidate)
            if not z3fold_page_trylock(header):
                continue
            if header.foreign_handles or test_and_set_bit(PAGE_CLAIMED, candidate):
                z3fold_page_unlock(header)
                continue
            list_del_init(header)
            header.cpu = -1
            if "BUG-14" not in pool.bugs:
                kref_get(header)
            zhdr, page = header, candidate
            break
        if page is None:
            break
        pool.lru.delete(page)
        pool.lock.unlock()
        handles = []
        if zhdr is not None:
            slots.slot = [0] * len(slots.slot)
            for bud, chunks in ((MIDDLE, zhdr.middle_chunks),
                                (FIRST, zhdr.first_chunks),
                                (LAST, zhdr.last_chunks)):
                if chunks:
                    handles.append(encode_handle_in(pool, zhdr, slots, bud))
            z3fold_page_unlock(zhdr)
        else:
            handles.append(pool.virt(page) | 1 << PAGE_HEADLESS)
        for handle in handles:
            ret = pool.evict(pool, handle)
            if ret:
                break
        if zhdr is None:
            if ret == 0:
                free_z3fold_page(pool, page, True)
                pool.pages_nr -= 1
                return 0
            pool.lock.lock()
            pool.lru.add(page)
            pool.lock.unlock()
            clear_bit(PAGE_CLAIMED, page)
        else:
            own_slots = zhdr.slots
            z3fold_page_lock(zhdr)
            if kref_put(zhdr, release_z3fold_page_locked):
                pool.slots_cache.free(own_slots)
                return 0
            pool.lock.lock()
            pool.lru.add(page)
            pool.lock.unlock()
            if zhdr.buddy is None:
                add_to_unbuddied(pool, zhdr)
            clear_bit(PAGE_CLAIMED, page)
            z3fold_page_unlock(zhdr)
        pool.lock.lock()
    pool.lock.unlock()
    return -EAGAIN
