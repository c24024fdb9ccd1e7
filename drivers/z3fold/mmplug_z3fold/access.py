"""Mapping objects: z3fold_map / z3fold_unmap and reading through a mapping.

mm/z3fold.c (v6.0): z3fold_map() locks the header through the handle
(get_z3fold_header, which retries on PAGE_MIGRATED: DRV-3F5), computes the
buddy's address, marks a mapped MIDDLE object (it must not be moved) and
counts the mapping; z3fold_unmap() undoes that.  While mapped_count is
nonzero the page is neither isolated nor migrated (DRV-3F2, DRV-3F3).

Reading through an address checks that the page still belongs to the pool:
reading a page that migration already released is the use after free of
BUG-13 and raises, naming DRV-3F5.

`store_object` and `load_object` are a store's and a read's map, copy and unmap.
On one CPU (`Z3foldPool.uniprocessor`) nothing can run between the three, and
when nothing is in the way (no lock held, no migration mark, the object inside
its page) they leave what the three leave with one look at the slot: the bytes
copied, mapped_count as it was, MIDDLE_CHUNK_MAPPED clear for a MIDDLE object.
Anything else, and every run on several CPUs, takes the three steps themselves
(drivers/z3fold/tests/test_access.py checks that both ways agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug import ContractViolation
from mmplug.kernel import page_address, pfn_to_page

from .flags import (
    BUDDY_MASK,
    BUDDY_SHIFT,
    FIRST,
    LAST,
    MIDDLE,
    MIDDLE_CHUNK_MAPPED,
    PAGE_HEADLESS,
    PAGE_MIGRATED,
    clear_bit,
    set_bit,
)
from .geometry import DIRECT_MAP
from .handles import (
    _SLOT_OFFSET,
    _SLOT_WORD,
    HEADLESS_BIT,
    SLOTS_SHIFT,
    get_z3fold_header,
    handle_to_buddy,
    handle_to_chunks,
    put_z3fold_header,
)

if TYPE_CHECKING:
    from .pool import Z3foldPool


def z3fold_map(pool: Z3foldPool, handle: int) -> int:
    """z3fold_map(): the object's address; counts the mapping (not for HEADLESS)."""
    geo = pool.geometry
    if handle & HEADLESS_BIT:
        return handle & geo.page_mask
    zhdr = get_z3fold_header(pool, handle)
    page = zhdr.page
    addr = DIRECT_MAP + page.pfn * geo.page_size   # page_address()
    if page.private >> PAGE_HEADLESS & 1:
        put_z3fold_header(zhdr)
        return addr
    buddy = handle_to_buddy(pool, handle)
    if buddy == FIRST:
        addr += geo.zhdr_size_aligned
    elif buddy == MIDDLE:
        addr += zhdr.start_middle << geo.chunk_shift
        set_bit(MIDDLE_CHUNK_MAPPED, page)
    elif buddy == LAST:
        addr += geo.page_size - (handle_to_chunks(pool, handle) << geo.chunk_shift)
    else:
        pool.warn(f"z3fold_map: unknown buddy id {buddy}", page)
        put_z3fold_header(zhdr)
        return 0
    zhdr.mapped_count += 1
    put_z3fold_header(zhdr)
    return addr


def z3fold_unmap(pool: Z3foldPool, handle: int) -> None:
    """z3fold_unmap()."""
    if handle & HEADLESS_BIT:
        return
    zhdr = get_z3fold_header(pool, handle)
    if handle_to_buddy(pool, handle) == MIDDLE:
        clear_bit(MIDDLE_CHUNK_MAPPED, zhdr.page)
    zhdr.mapped_count -= 1
    put_z3fold_header(zhdr)


def _owned_page(pool: Z3foldPool, addr: int, length: int):
    pfn = (addr - DIRECT_MAP) // pool.geometry.page_size
    page = pfn_to_page(pool.vm, pfn)   # virt_to_page()
    if pfn not in pool.headers and pfn not in pool.headless:
        raise ContractViolation(
            "DRV-3F5", f"a reader touches pfn {page.pfn:#x} through an address it mapped, but "
            "the pool no longer owns that page: migration released it under the reader "
            "(use after free, BUG-13)", driver="z3fold", page=page)
    off = addr & ~pool.geometry.page_mask
    if off + length > pool.geometry.page_size:
        raise AssertionError(f"object of {length} bytes at offset {off} runs off its page")
    return page, off


def read_mapped(pool: Z3foldPool, addr: int, length: int) -> bytes:
    """memcpy from a mapped object (zswap's decompression source)."""
    page, off = _owned_page(pool, addr, length)
    return bytes(page_address(page)[off:off + length])


def write_mapped(pool: Z3foldPool, addr: int, data: bytes) -> None:
    """memcpy into a mapped object (zswap storing the compressed page)."""
    page, off = _owned_page(pool, addr, len(data))
    page_address(page)[off:off + len(data)] = data


def store_object(pool: Z3foldPool, handle: int, data: bytes) -> None:
    """z3fold_map(), write_mapped() and z3fold_unmap(): a store's copy of its object."""
    at = _uncontended(pool, handle, len(data)) if pool.uniprocessor else None
    if at is None:
        addr = z3fold_map(pool, handle)
        write_mapped(pool, addr, data)
        z3fold_unmap(pool, handle)
        return
    pool.memory.view[at:at + len(data)] = data


def load_object(pool: Z3foldPool, handle: int, length: int) -> bytes:
    """z3fold_map(), read_mapped() and z3fold_unmap(): a read's copy of its object."""
    at = _uncontended(pool, handle, length) if pool.uniprocessor else None
    if at is None:
        addr = z3fold_map(pool, handle)
        try:
            return read_mapped(pool, addr, length)
        finally:
            z3fold_unmap(pool, handle)
    return bytes(pool.memory.view[at:at + length])


def _uncontended(pool: Z3foldPool, handle: int, length: int) -> int | None:
    """Where in the linear map the object of `handle` is, if z3fold_map() would find its
    header at once and the copy of `length` bytes would stay inside its page; else None.

    On one CPU a map and an unmap with a copy between them change nothing but the
    MIDDLE_CHUNK_MAPPED bit of a MIDDLE object, which the unmap leaves clear; that is
    done here.  Every case in which the three steps would do more (raise, warn, wait
    for a lock, retry on PAGE_MIGRATED) returns None, for the caller to take them.
    """
    if handle & HEADLESS_BIT:
        return None
    slots = pool.slots_cache.live.get(handle >> SLOTS_SHIFT)
    if slots is None or slots.lock.writer:
        return None
    addr = slots.slot[(handle & _SLOT_OFFSET) // _SLOT_WORD]
    geo = pool.geometry
    page_size = geo.page_size
    base = addr & geo.page_mask
    zhdr = pool.headers.get((base - DIRECT_MAP) // page_size)
    if zhdr is None or zhdr.freed or zhdr.page_lock.held:
        return None
    page = zhdr.page
    state = page.private
    if state >> PAGE_HEADLESS & 1 or (state >> PAGE_MIGRATED & 1 and "BUG-13" not in pool.bugs):
        return None
    buddy = (addr - zhdr.first_num) & BUDDY_MASK
    if buddy == FIRST:
        off = geo.zhdr_size_aligned
    elif buddy == MIDDLE:
        off = zhdr.start_middle << geo.chunk_shift
    elif buddy == LAST:
        off = page_size - (((addr & ~geo.page_mask) >> BUDDY_SHIFT) << geo.chunk_shift)
    else:
        return None
    pfn = page.pfn
    if not 0 <= off < page_size or off + length > page_size or \
            pfn != (base - DIRECT_MAP) // page_size:
        return None
    memory = pool.memory
    if buddy == MIDDLE:
        page.private = state & ~(1 << MIDDLE_CHUNK_MAPPED)
    return (pfn - memory.start_pfn) * page_size + off
