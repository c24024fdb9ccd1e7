"""page->private state bits of a z3fold page, and the buddy numbering.

mm/z3fold.c (v6.0): enum z3fold_page_flags lives in page->private, which
z3fold owns for its pages; enum buddy names the three slots of a page plus
HEADLESS; enum z3fold_handle_flags marks a slots structure whose handles must
not be freed (the on-stack one of z3fold_reclaim_page).  The bit operations
mirror set_bit/test_and_set_bit on that word.
"""

from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType
from typing import Any

PAGE_HEADLESS = 0
MIDDLE_CHUNK_MAPPED = 1
NEEDS_COMPACTING = 2
PAGE_STALE = 3
#: by reclaim, free, isolation or in-page compaction: whoever set it owns the page
PAGE_CLAIMED = 4
#: the v6.0 fix for BUG-13: the header was copied to a new page; readers retry
PAGE_MIGRATED = 5

FLAG_NAMES = MappingProxyType({
    PAGE_HEADLESS: "HEADLESS", MIDDLE_CHUNK_MAPPED: "MIDDLE_CHUNK_MAPPED",
    NEEDS_COMPACTING: "NEEDS_COMPACTING", PAGE_STALE: "STALE", PAGE_CLAIMED: "CLAIMED",
    PAGE_MIGRATED: "MIGRATED"})

#: z3fold_handle_flags, kept in the low bits of slots->pool
HANDLES_NOFREE = 0
HANDLE_FLAG_MASK = 0x3
BUDDY_MASK = 0x3
BUDDY_SHIFT = 2
SLOTS_ALIGN = 0x40


class Buddy(IntEnum):
    """enum buddy."""

    HEADLESS = 0
    FIRST = 1
    MIDDLE = 2
    LAST = 3


# The members under their kernel names, looked up without the enum class on hot paths.
HEADLESS, FIRST, MIDDLE, LAST = Buddy


def test_bit(nr: int, page: Any) -> bool:
    return bool(page.private >> nr & 1)


def set_bit(nr: int, page: Any) -> None:
    page.private |= 1 << nr


def clear_bit(nr: int, page: Any) -> None:
    page.private &= ~(1 << nr)


def test_and_set_bit(nr: int, page: Any) -> bool:
    old = page.private
    page.private = old | 1 << nr
    return bool(old >> nr & 1)


def test_and_clear_bit(nr: int, page: Any) -> bool:
    old = page.private
    page.private = old & ~(1 << nr)
    return bool(old >> nr & 1)


def describe_flags(word: int) -> str:
    names = [name for bit, name in FLAG_NAMES.items() if word >> bit & 1]
    return "|".join(names) if names else "none"
