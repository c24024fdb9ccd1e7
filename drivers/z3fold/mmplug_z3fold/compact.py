"""In-page compaction: do_compact_page and what it calls (compact_wq work).

mm/z3fold.c (v6.0).  After a free the page is marked NEEDS_COMPACTING and
compacted, inline or from compact_wq: drop the reference the work held; if
the page is still alive and nobody claimed it, either move its single
object into another page (compact_single_buddy, leaving a foreign handle),
or slide the middle object toward the header or the last object
(z3fold_compact_page) and put the page back on an unbuddied list.  A mapped
middle object or an isolated page is never moved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug.kernel import page_address, page_isolated

from . import alloc as _alloc
from .flags import (
    BUDDY_MASK,
    BUDDY_SHIFT,
    FIRST,
    LAST,
    MIDDLE,
    MIDDLE_CHUNK_MAPPED,
    NEEDS_COMPACTING,
    PAGE_CLAIMED,
    PAGE_STALE,
    clear_bit,
    test_and_clear_bit,
    test_and_set_bit,
    test_bit,
)
from .handles import buddy_index
from .header import Z3foldHeader, kref_put, z3fold_page_lock, z3fold_page_unlock
from .lists import list_del_init
from .release import release_z3fold_page_locked

if TYPE_CHECKING:
    from .pool import Z3foldPool

#: move the middle object only for a gain of at least this many chunks
BIG_CHUNK_GAP = 3


def buddy_single(zhdr: Z3foldHeader) -> bool:
    """buddy_single(): at most one buddy in use."""
    return not ((zhdr.first_chunks and zhdr.middle_chunks)
                or (zhdr.first_chunks and zhdr.last_chunks)
                or (zhdr.middle_chunks and zhdr.last_chunks))


def mchunk_memmove(pool: Z3foldPool, zhdr: Z3foldHeader, dst_chunk: int) -> None:
    """mchunk_memmove(): move the middle object to `dst_chunk`."""
    shift = pool.geometry.chunk_shift
    mem = page_address(zhdr.page)
    src = zhdr.start_middle << shift
    n = zhdr.middle_chunks << shift
    dst = dst_chunk << shift
    mem[dst:dst + n] = bytes(mem[src:src + n])


def compact_single_buddy(pool: Z3foldPool, zhdr: Z3foldHeader) -> Z3foldHeader | None:
    """compact_single_buddy(): move the only object into another unbuddied page.

    The object's slot (in this page's slots) is rewritten to the new page,
    which counts it as a foreign handle.  Runs with zhdr locked and claimed.
    """
    geo = pool.geometry
    shift = geo.chunk_shift
    slots = zhdr.slots
    if slots is None:
        return None
    src_off = size = 0
    old_idx = -1
    moved = ""
    if zhdr.first_chunks and slots.slot[buddy_index(zhdr, FIRST)]:
        src_off, size = geo.zhdr_size_aligned, zhdr.first_chunks << shift
        old_idx, moved = buddy_index(zhdr, FIRST), "first_chunks"
    elif zhdr.middle_chunks and slots.slot[buddy_index(zhdr, MIDDLE)]:
        src_off, size = zhdr.start_middle << shift, zhdr.middle_chunks << shift
        old_idx, moved = buddy_index(zhdr, MIDDLE), "middle_chunks"
    elif zhdr.last_chunks and slots.slot[buddy_index(zhdr, LAST)]:
        src_off = geo.page_size - (zhdr.last_chunks << shift)
        size = zhdr.last_chunks << shift
        old_idx, moved = buddy_index(zhdr, LAST), "last_chunks"
    if not size:
        return None
    chunks = geo.size_to_chunks(size)
    new_zhdr = _alloc.z3fold_alloc_existing(pool, size, False)
    if new_zhdr is None:
        return None
    if new_zhdr is zhdr:
        pool.warn("compact_single_buddy() found the page it is emptying", zhdr.page)
        return _out_fail(pool, new_zhdr)
    new_bud = _alloc.get_free_buddy(new_zhdr, chunks, geo.zhdr_chunks)
    if new_bud == FIRST:
        new_zhdr.first_chunks = chunks
        dst_off = geo.zhdr_size_aligned
    elif new_bud == MIDDLE:
        new_zhdr.middle_chunks = chunks
        new_zhdr.start_middle = new_zhdr.first_chunks + geo.zhdr_chunks
        dst_off = new_zhdr.start_middle << shift
    elif new_bud == LAST:
        new_zhdr.last_chunks = chunks
        dst_off = geo.page_size - (chunks << shift)
    else:
        return _out_fail(pool, new_zhdr)
    new_zhdr.foreign_handles += 1
    page_address(new_zhdr.page)[dst_off:dst_off + size] = \
        page_address(zhdr.page)[src_off:src_off + size]
    value = pool.virt(new_zhdr.page) + buddy_index(new_zhdr, new_bud)
    if new_bud == LAST:
        value |= new_zhdr.last_chunks << BUDDY_SHIFT
    slots.lock.write_lock()
    slots.slot[old_idx] = value
    slots.lock.write_unlock()
    _alloc.add_to_unbuddied(pool, new_zhdr)
    z3fold_page_unlock(new_zhdr)
    setattr(zhdr, moved, 0)
    return new_zhdr


def _out_fail(pool: Z3foldPool, new_zhdr: Z3foldHeader) -> None:
    if not kref_put(new_zhdr, release_z3fold_page_locked):
        _alloc.add_to_unbuddied(pool, new_zhdr)
        z3fold_page_unlock(new_zhdr)
    return None


def z3fold_compact_page(pool: Z3foldPool, zhdr: Z3foldHeader) -> bool:
    """z3fold_compact_page(): slide the middle object where it frees the most room."""
    geo = pool.geometry
    page = zhdr.page
    if test_bit(MIDDLE_CHUNK_MAPPED, page):
        return False  # a mapped middle object must stay where its user sees it
    if page_isolated(page):
        return False
    if zhdr.middle_chunks == 0:
        return False
    if zhdr.first_chunks == 0 and zhdr.last_chunks == 0:
        mchunk_memmove(pool, zhdr, geo.zhdr_chunks)
        zhdr.first_chunks = zhdr.middle_chunks
        zhdr.middle_chunks = 0
        zhdr.start_middle = 0
        # MIDDLE's slot now reads as FIRST: the handle need not change.
        zhdr.first_num = (zhdr.first_num + 1) & BUDDY_MASK
        return True
    if (zhdr.first_chunks and not zhdr.last_chunks
            and zhdr.start_middle - (zhdr.first_chunks + geo.zhdr_chunks) >= BIG_CHUNK_GAP):
        mchunk_memmove(pool, zhdr, zhdr.first_chunks + geo.zhdr_chunks)
        zhdr.start_middle = zhdr.first_chunks + geo.zhdr_chunks
        return True
    if (zhdr.last_chunks and not zhdr.first_chunks
            and geo.total_chunks - (zhdr.last_chunks + zhdr.start_middle + zhdr.middle_chunks)
            >= BIG_CHUNK_GAP):
        new_start = geo.total_chunks - zhdr.last_chunks - zhdr.middle_chunks
        mchunk_memmove(pool, zhdr, new_start)
        zhdr.start_middle = new_start
        return True
    return False


def do_compact_page(zhdr: Z3foldHeader, locked: bool) -> None:
    """do_compact_page(): the compaction of one page, holding the reference it was queued with."""
    pool = zhdr.pool
    page = zhdr.page
    if locked:
        if zhdr.page_lock.trylock():
            pool.warn("do_compact_page(locked=True) without the page lock", page)
    else:
        z3fold_page_lock(zhdr)
    if not test_and_clear_bit(NEEDS_COMPACTING, page):
        pool.warn("do_compact_page() on a page that does not need compacting", page)
        z3fold_page_unlock(zhdr)
        return
    pool.lock.lock()
    list_del_init(zhdr)
    pool.lock.unlock()
    if kref_put(zhdr, release_z3fold_page_locked):
        return
    if test_bit(PAGE_STALE, page) or test_and_set_bit(PAGE_CLAIMED, page):
        z3fold_page_unlock(zhdr)
        return
    if (not zhdr.foreign_handles and buddy_single(zhdr) and zhdr.mapped_count == 0
            and compact_single_buddy(pool, zhdr) is not None):
        if not kref_put(zhdr, release_z3fold_page_locked):
            clear_bit(PAGE_CLAIMED, page)
            z3fold_page_unlock(zhdr)
        return
    z3fold_compact_page(pool, zhdr)
    _alloc.add_to_unbuddied(pool, zhdr)
    clear_bit(PAGE_CLAIMED, page)
    z3fold_page_unlock(zhdr)


def compact_page_work(zhdr: Z3foldHeader) -> None:
    """compact_page_work(): the work function of zhdr->work."""
    do_compact_page(zhdr, False)


__all__ = ["do_compact_page", "compact_page_work", "z3fold_compact_page", "compact_single_buddy"]
