"""Zone memory as zsmalloc touches it: 64-bit words and object bytes.

zsmalloc keeps its metadata in the pages themselves, as the kernel does: a
free object's first word links the free list, an allocated object's first
word holds its handle (init_zspage, obj_malloc, obj_free).  In the kernel
those are single loads and stores through kmap_atomic(), which on x86-64 is
page_address(): a fixed offset from the pfn in the linear map.  The model's
zone memory is one buffer laid out the same way, so `ZoneMemory` reaches a
word as one index into that buffer seen as 64-bit words, and an object's
bytes as one slice of it: nothing is made per access.

The bytes are exactly those page_address() shows: words are little-endian,
as on x86-64.  `PageMemory` does every access through page_address() and
int.to_bytes; it is what a big-endian host uses, and the reference the
tests hold `ZoneMemory` to.
"""

from __future__ import annotations

import sys
from array import array
from typing import TYPE_CHECKING

from mmplug.kernel import page_address

if TYPE_CHECKING:
    from mmplug import Page
    from mmplug.kernel import LinearMap

WORD = 8
_MASK = 0xFFFF_FFFF_FFFF_FFFF


class PageMemory:
    """Word and byte access through page_address(), one page view per access."""

    __slots__ = ()

    def read(self, page: Page, off: int) -> int:
        """The word at byte `off` of `page` (8-aligned)."""
        return int.from_bytes(page_address(page)[off:off + WORD], "little")

    def write(self, page: Page, off: int, value: int) -> None:
        page_address(page)[off:off + WORD] = (value & _MASK).to_bytes(WORD, "little")

    def read_every(self, page: Page, off: int, step: int, end: int) -> list[int]:
        """The words at off, off + step, ... below byte `end` of the page."""
        view = page_address(page)
        return [int.from_bytes(view[o:o + WORD], "little") for o in range(off, end, step)]

    def write_every(self, page: Page, off: int, step: int,
                    values: range | list[int] | array) -> None:
        """values[i] into the word at off + i * step."""
        view = page_address(page)
        for i, value in enumerate(values):
            o = off + i * step
            view[o:o + WORD] = (value & _MASK).to_bytes(WORD, "little")

    def read_bytes(self, page: Page, off: int, n: int) -> bytes:
        return bytes(page_address(page)[off:off + n])

    def write_bytes(self, page: Page, off: int, data: bytes) -> None:
        page_address(page)[off:off + len(data)] = data


class ZoneMemory(PageMemory):
    """The zone's buffer as 64-bit native words (a little-endian host) and as bytes."""

    __slots__ = ("words", "bytes", "start_pfn", "page_size", "page_words")

    def __init__(self, ram: LinearMap) -> None:
        if sys.byteorder != "little":
            raise ValueError("ZoneMemory stores native words: little-endian hosts only")
        #: page `pfn` starts at byte (pfn - start_pfn) * page_size
        self.bytes = ram.view
        self.words = ram.view.cast("Q")
        self.start_pfn = ram.start_pfn
        self.page_size = ram.page_size
        self.page_words = ram.page_size // WORD

    def read(self, page: Page, off: int) -> int:
        return self.words[(page.pfn - self.start_pfn) * self.page_words + (off >> 3)]

    def write(self, page: Page, off: int, value: int) -> None:
        self.words[(page.pfn - self.start_pfn) * self.page_words + (off >> 3)] = value & _MASK

    def read_every(self, page: Page, off: int, step: int, end: int) -> list[int]:
        base = (page.pfn - self.start_pfn) * self.page_words
        return self.words[base + (off >> 3):base + ((end + WORD - 1) >> 3):step >> 3].tolist()

    def write_every(self, page: Page, off: int, step: int,
                    values: range | list[int] | array) -> None:
        n = len(values)
        if not n:
            return
        first = (page.pfn - self.start_pfn) * self.page_words + (off >> 3)
        stride = step >> 3
        self.words[first:first + (n - 1) * stride + 1:stride] = _word_array(values)

    def read_bytes(self, page: Page, off: int, n: int) -> bytes:
        at = (page.pfn - self.start_pfn) * self.page_size + off
        return self.bytes[at:at + n].tobytes()

    def write_bytes(self, page: Page, off: int, data: bytes) -> None:
        at = (page.pfn - self.start_pfn) * self.page_size + off
        self.bytes[at:at + len(data)] = data


def _word_array(values: range | list[int] | array) -> array:
    return values if isinstance(values, array) else array("Q", values)


def zone_memory(ram: LinearMap) -> PageMemory:
    """The fastest access this host allows to the memory `ram` maps."""
    return ZoneMemory(ram) if sys.byteorder == "little" else PageMemory()
