"""Chunk geometry of a z3fold page, derived from the VM's page size.

mm/z3fold.c (v6.0): NCHUNKS_ORDER 6 cuts a page into 64 chunks
(CHUNK_SHIFT = PAGE_SHIFT - 6); the header takes the first ZHDR_CHUNKS of
them, rounded up from sizeof(struct z3fold_header); objects bigger than
PAGE_SIZE - ZHDR_SIZE_ALIGNED - CHUNK_SIZE get a HEADLESS page of their own
(z3fold_alloc).  init_z3fold's BUILD_BUG_ON becomes a ValueError here.
"""

from __future__ import annotations

from attrs import field, frozen

NCHUNKS_ORDER = 6
#: sizeof(struct z3fold_header) on x86-64 without spinlock debugging:
#: buddy list_head 16, page_lock 4, kref 4, work_struct 32, slots 8, pool 8,
#: cpu 2, five unsigned shorts 10 (the bitfields share the last one) -> 84, aligned to 8.
Z3FOLD_HEADER_SIZE = 88
#: the LAST buddy's chunk count is kept in the handle above BUDDY_SHIFT, below PAGE_MASK
_MIN_PAGE_SIZE = 256
#: the direct map: page addresses are DIRECT_MAP + pfn * PAGE_SIZE (page_address())
DIRECT_MAP = 0xFFFF888000000000


def _round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


@frozen(slots=True)
class Geometry:
    """CHUNK_SHIFT, CHUNK_SIZE, ZHDR_SIZE_ALIGNED, ZHDR_CHUNKS, TOTAL_CHUNKS, NCHUNKS."""

    page_size: int
    chunk_shift: int
    chunk_size: int
    zhdr_size_aligned: int
    zhdr_chunks: int
    total_chunks: int
    nchunks: int
    #: PAGE_MASK, kept rather than derived: every handle and address lookup uses it
    page_mask: int = field()
    #: objects larger than this get a HEADLESS page (z3fold_alloc)
    headless_above: int = field()

    @page_mask.default
    def _page_mask(self) -> int:
        return ~(self.page_size - 1)

    @headless_above.default
    def _headless_above(self) -> int:
        return self.page_size - self.zhdr_size_aligned - self.chunk_size

    @classmethod
    def for_page_size(cls, page_size: int) -> "Geometry":
        if page_size < _MIN_PAGE_SIZE or page_size & (page_size - 1):
            raise ValueError(f"z3fold needs a power-of-two page size of at least "
                             f"{_MIN_PAGE_SIZE} bytes, not {page_size}")
        page_shift = page_size.bit_length() - 1
        chunk_shift = page_shift - NCHUNKS_ORDER
        chunk_size = 1 << chunk_shift
        zhdr_size_aligned = _round_up(Z3FOLD_HEADER_SIZE, chunk_size)
        if zhdr_size_aligned > page_size - chunk_size:
            raise ValueError(f"page size {page_size}: the z3fold header leaves no room for a buddy")
        total = page_size >> chunk_shift
        zhdr_chunks = zhdr_size_aligned >> chunk_shift
        return cls(page_size, chunk_shift, chunk_size, zhdr_size_aligned, zhdr_chunks, total,
                   total - zhdr_chunks)

    def size_to_chunks(self, size: int) -> int:
        """size_to_chunks(): bytes to chunks, rounded up."""
        return (size + self.chunk_size - 1) >> self.chunk_shift

