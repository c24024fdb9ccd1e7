"""Handles and object locations (mm/zsmalloc.c, v4.19).

An object's location is one word, `obj = ((pfn << OBJ_INDEX_BITS) | obj_idx) << 1`
(location_to_obj / obj_to_location), where pfn is the subpage the object
starts in and obj_idx its index inside the zspage.  The user holds a *handle*:
the address of a word that holds `obj`.  The handle word's low bit is the pin
bit (HANDLE_PIN_BIT): whoever holds it (zs_map_object, zs_free, migration,
zs_compact) keeps the object where it is.  A handle address is 8-aligned, so
`handle | OBJ_ALLOCATED_TAG` can sit in the object's first word and tell an
allocated object from a free one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .sizeclass import OBJ_TAG_BITS, Layout

if TYPE_CHECKING:
    from mmplug import Page

HANDLE_PIN_BIT = 0
PIN = 1 << HANDLE_PIN_BIT
OBJ_ALLOCATED_TAG = 1
#: The last free-list link: -1UL << OBJ_TAG_BITS, as a 64-bit word.
FREELIST_END = (-1 << OBJ_TAG_BITS) & 0xFFFF_FFFF_FFFF_FFFF
#: Where handle "addresses" start: a kernel slab address, 8-aligned.
_HANDLE_BASE = 0xFFFF_8880_4000_0000
_HANDLE_STRIDE = 8
#: a handle's slot in the cache, the key of HandleTable.words: handle >> HANDLE_SHIFT.
#: The addresses share their low bits, all of which a dict's first probe uses (every
#: lookup in a table of a million handles would probe several times); their quotients
#: are consecutive and hash evenly.
HANDLE_SHIFT = _HANDLE_STRIDE.bit_length() - 1


def location_to_obj(layout: Layout, page: Page, obj_idx: int) -> int:
    """location_to_obj()."""
    obj = page.pfn << layout.obj_index_bits
    obj |= obj_idx & layout.obj_index_mask
    return obj << OBJ_TAG_BITS


def obj_to_location(layout: Layout, obj: int,
                    pfn_to_page: Callable[[int], Page]) -> tuple[Page, int]:
    """obj_to_location(): (the subpage the object starts in, its index in the zspage)."""
    obj >>= OBJ_TAG_BITS
    return pfn_to_page(obj >> layout.obj_index_bits), obj & layout.obj_index_mask


class HandleTable:
    """The zs_handle kmem_cache: handle address -> the word it holds.

    `words` is keyed by slot (handle >> HANDLE_SHIFT); `items()` gives handles.
    `trypin`/`pin`/`unpin` are bit_spin_trylock/bit_spin_lock/bit_spin_unlock
    on that word's low bit.  On the model a pin is a plain bit: it does not
    disable preemption, so a test may hold one across VM calls (the "pin" knob).
    """

    __slots__ = ("words", "_next")

    def __init__(self) -> None:
        #: handle >> HANDLE_SHIFT -> the word at the handle
        self.words: dict[int, int] = {}
        self._next = 0

    def alloc(self) -> int:
        """cache_alloc_handle()."""
        self._next += 1
        handle = _HANDLE_BASE + self._next * _HANDLE_STRIDE
        self.words[handle >> HANDLE_SHIFT] = 0
        return handle

    def free(self, handle: int) -> None:
        """cache_free_handle()."""
        del self.words[handle >> HANDLE_SHIFT]

    def __contains__(self, handle: int) -> bool:
        return not handle & (_HANDLE_STRIDE - 1) and handle >> HANDLE_SHIFT in self.words

    def __len__(self) -> int:
        return len(self.words)

    def items(self) -> Iterator[tuple[int, int]]:
        """(handle, word) of every live handle."""
        return ((slot << HANDLE_SHIFT, word) for slot, word in self.words.items())

    def handles(self) -> set[int]:
        return {slot << HANDLE_SHIFT for slot in self.words}

    def handle_to_obj(self, handle: int) -> int:
        """handle_to_obj(): the word, pin bit included."""
        return self.words[handle >> HANDLE_SHIFT]

    def record_obj(self, handle: int, obj: int) -> None:
        """record_obj(): one store of the whole word (pin bit as given)."""
        self.words[handle >> HANDLE_SHIFT] = obj

    def testpin(self, handle: int) -> bool:
        return bool(self.words[handle >> HANDLE_SHIFT] & PIN)

    def trypin(self, handle: int) -> bool:
        slot = handle >> HANDLE_SHIFT
        word = self.words[slot]
        if word & PIN:
            return False
        self.words[slot] = word | PIN
        return True

    def unpin(self, handle: int) -> None:
        slot = handle >> HANDLE_SHIFT
        word = self.words[slot]
        if not word & PIN:
            raise AssertionError(f"unpin_tag() of handle {handle:#x}, which is not pinned")
        self.words[slot] = word & ~PIN
