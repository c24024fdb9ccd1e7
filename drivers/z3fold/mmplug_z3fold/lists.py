"""The pool's lists: unbuddied/stale lists of headers and the LRU of pages.

A kernel list_head is intrusive; here a list is an insertion-ordered dict and
the member records which list it is on (zhdr->buddy, page->lru), so that
list_del_init and list_empty stay O(1) and "on which list" is checkable.
list_add puts an entry at the head, so the head is the newest entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class BuddyList:
    """A list of z3fold headers linked through zhdr->buddy (unbuddied[i], stale)."""

    __slots__ = ("entries", "name")

    def __init__(self, name: str) -> None:
        self.entries: dict[Any, None] = {}
        self.name = name

    def add(self, zhdr: Any) -> None:
        """list_add(&zhdr->buddy, list)."""
        if zhdr.buddy is not None:
            raise AssertionError(f"header of pfn {zhdr.page.pfn:#x} added to {self.name} while "
                                 f"still on {zhdr.buddy.name}")
        zhdr.buddy = self
        self.entries[zhdr] = None

    def first(self) -> Any:
        """list_first_entry_or_null()."""
        if not self.entries:
            return None
        return next(reversed(self.entries))

    def delete(self, zhdr: Any) -> None:
        """list_del_init(&zhdr->buddy)."""
        entries = self.entries
        if next(reversed(entries), None) is zhdr:
            # The head goes by popitem(), which also drops the dict's empty slots behind
            # it: taking entry after entry from the head would otherwise make each look
            # for the head (first()) step over every slot emptied before.
            entries.popitem()
        else:
            del entries[zhdr]
        zhdr.buddy = None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Any]:
        return iter(tuple(self.entries))

    def __repr__(self) -> str:
        return f"<BuddyList {self.name} of {len(self.entries)}>"


def list_del_init(zhdr: Any) -> None:
    """list_del_init(&zhdr->buddy) on whichever list the header is (no-op if none)."""
    if zhdr.buddy is not None:
        zhdr.buddy.delete(zhdr)


class PageLru:
    """pool->lru: z3fold pages linked through page->lru, newest first.

    A page is on this list exactly when `page.lru is` the list; an isolated
    page's lru belongs to the VM (ISO-4), so every removal checks membership.
    """

    __slots__ = ("pages", "name")

    def __init__(self, name: str) -> None:
        self.pages: dict[Any, None] = {}
        self.name = name

    def add(self, page: Any) -> None:
        """list_add(&page->lru, &pool->lru)."""
        if page.lru is not None:
            raise AssertionError(f"pfn {page.pfn:#x} added to {self.name} while its lru is "
                                 f"{page.lru!r}")
        page.lru = self
        self.pages[page] = None

    def delete(self, page: Any) -> None:
        """list_del_init(&page->lru)."""
        del self.pages[page]
        page.lru = None

    def holds(self, page: Any) -> bool:
        """!list_empty(&page->lru), for a page z3fold owns the lru of."""
        return page.lru is self

    def oldest_first(self) -> Iterator[Any]:
        """list_for_each_prev(pos, &pool->lru): reclaim starts at the tail."""
        return iter(tuple(self.pages))

    def __len__(self) -> int:
        return len(self.pages)

    def __repr__(self) -> str:
        return f"<PageLru {self.name} of {len(self.pages)}>"
