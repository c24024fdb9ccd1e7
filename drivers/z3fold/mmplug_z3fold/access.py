"""Mapping objects: z3fold_map / z3fold_unmap and reading through a mapping.

mm/z3fold.c (v6.0): z3fold_map() locks the header through the handle
(get_z3fold_header, which retries on PAGE_MIGRATED: DRV-3F5), computes the
buddy's address, marks a mapped MIDDLE object (it must not be moved) and
counts the mapping; z3fold_unmap() undoes that.  While mapped_count is
nonzero the page is neither isolated nor migrated (DRV-3F2, DRV-3F3).

Reading through an address checks that the page still belongs to the pool:
reading a page that migration already released is the use after free of
BUG-13 and raises, naming DRV-3F5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug import ContractViolation
from mmplug.kernel import page_address, pfn_to_page

from .flags import FIRST, LAST, MIDDLE, MIDDLE_CHUNK_MAPPED, PAGE_HEADLESS, clear_bit, set_bit
from .geometry import DIRECT_MAP
from .handles import (
    HEADLESS_BIT, get_z3fold_header, handle_to_buddy, handle_to_chunks, put_z3fold_header,
)

if TYPE_CHECKING:
    from .pool import Z3foldPool


def z3fold_map(pool: "Z3foldPool", handle: int) -> int:
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


def z3fold_unmap(pool: "Z3foldPool", handle: int) -> None:
    """z3fold_unmap()."""
    if handle & HEADLESS_BIT:
        return
    zhdr = get_z3fold_header(pool, handle)
    if handle_to_buddy(pool, handle) == MIDDLE:
        clear_bit(MIDDLE_CHUNK_MAPPED, zhdr.page)
    zhdr.mapped_count -= 1
    put_z3fold_header(zhdr)


def _owned_page(pool: "Z3foldPool", addr: int, length: int):
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


def read_mapped(pool: "Z3foldPool", addr: int, length: int) -> bytes:
    """memcpy from a mapped object (zswap's decompression source)."""
    page, off = _owned_page(pool, addr, length)
    return bytes(page_address(page)[off:off + length])


def write_mapped(pool: "Z3foldPool", addr: int, data: bytes) -> None:
    """memcpy into a mapped object (zswap storing the compressed page)."""
    page, off = _owned_page(pool, addr, len(data))
    page_address(page)[off:off + len(data)] = data
