"""What a driver's movable callbacks did, page by page, and which rule a symptom breaks.

A symptom seen later (a page nobody owns, an object that reads back wrong, a
foreign flag on a driver page) says little about its cause; the history of
the callbacks does.  A page nobody owns that was the old page of a successful
migration is the migration's leak (MIG-7: the driver kept its reference); the
new page of a failed migration, kept, is MIG-8; any other is a release that
forgot put_page (REL-1).  An object that read back right before a successful
migratepage and wrong after it was not moved (MIG-7), and so on.  The
conformance bench and the race explorer keep one `Journal` per driver
instance and blame symptoms through the functions here, so that the same
mistake is reported under the same rule wherever it is found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field

from . import rules
from .errors import ContractViolation
from .page import ISOLATED, PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE

if TYPE_CHECKING:
    from .mapping import AddressSpace
    from .page import Page


#: a page in use that nobody owns: the finding, as every check names it (blame_leak blames it)
LEAKED = "a page in use that nobody owns (leaked)"


@define(slots=True, eq=False)
class Journal:
    """The outcome of every migratepage and putback_page of one address space.

    `seq` counts the callbacks recorded; `last_migration` and `last_putback`
    are the seq of the last of each, so that "since" questions can be asked.
    A frame freed and allocated again starts a new life, so `forget_freed()`
    forgets the pages that went back to the allocator before anything new is
    allocated (the bench and the race environment call it before every store;
    the new page of a successful migration starts its new life when recorded).  An old
    page of a migration that was freed is still remembered as such while it
    stays free: a driver that lists it later kept a pointer to it.
    """

    seq: int = 0
    #: old pages of successful migrations
    migrated_from: dict[int, Page] = field(factory=dict)
    #: new pages of successful migrations
    migrated_to: dict[int, Page] = field(factory=dict)
    #: new pages a failed migratepage was given
    failed_targets: dict[int, Page] = field(factory=dict)
    #: old pages of successful migrations that were freed since (and not reused yet)
    freed_sources: dict[int, Page] = field(factory=dict)
    last_migration: int = 0
    last_putback: int = 0
    #: migratepage calls entered and not yet returned (other CPUs run meanwhile)
    migrating: int = 0

    def install(self, mapping: AddressSpace) -> None:
        """Record every migratepage and putback_page of `mapping` from now on, and check
        the mapping words every callback leaves."""
        mapping.interpose(isolate_page=self.isolate_page, migratepage=self.migratepage,
                          putback_page=self.putback_page)

    def isolate_page(self, call: Callable[..., Any], page: Page, mode: int) -> Any:
        ret = call(page, mode)
        mapping_word_made_by_api("isolate_page", page)
        return ret

    def migratepage(self, call: Callable[..., Any], mapping: Any, newpage: Page, page: Page,
                    mode: int) -> Any:
        self.migrating += 1
        try:
            rc = call(mapping, newpage, page, mode)
        finally:
            self.migrating -= 1
        mapping_word_made_by_api("migratepage", page)
        mapping_word_made_by_api("migratepage", newpage)
        self.migrated(newpage, page, rc)
        return rc

    def putback_page(self, call: Callable[..., Any], page: Page) -> Any:
        ret = call(page)
        mapping_word_made_by_api("putback_page", page)
        self.putback(page)
        return ret

    def migrated(self, newpage: Page, page: Page, rc: Any) -> None:
        """migratepage(newpage, page) returned `rc`."""
        if newpage.flags & ISOLATED:
            # Nobody isolated newpage: the flag is the driver's doing, wherever it shows
            # later (a page freed still PG_isolated, a page isolated after every CPU ended).
            raise ContractViolation("FLG-6", "migratepage left PG_isolated (PG_reclaim) set on "
                                    "the new page: only the VM sets it, on pages it isolates",
                                    hook="migratepage", page=newpage)
        self.seq += 1
        pfn = newpage.pfn
        if rc == 0:
            # newpage is the driver's now: whatever its frame was before is another life
            for pages in (self.migrated_from, self.migrated_to, self.failed_targets,
                          self.freed_sources):
                pages.pop(pfn, None)
            self.migrated_from[page.pfn] = page
            self.migrated_to[pfn] = newpage
            self.last_migration = self.seq
        else:
            # lent by the VM and given back: the frame's life as the driver saw it goes on
            self.failed_targets[pfn] = newpage

    def putback(self, page: Page) -> None:
        self.seq += 1
        self.last_putback = self.seq

    def forget_freed(self) -> None:
        """Forget the pages that went back to the allocator: their frames may be reused."""
        reused = [pfn for pfn, page in self.freed_sources.items() if page._refcount]
        for pfn in reused:
            del self.freed_sources[pfn]
        for pages in (self.migrated_from, self.migrated_to, self.failed_targets):
            freed = [pfn for pfn, page in pages.items() if not page._refcount]
            for pfn in freed:
                if pages is self.migrated_from:
                    self.freed_sources[pfn] = pages[pfn]
                del pages[pfn]

    def migrated_away(self, page: Page) -> bool:
        """`page` is the old page of a successful migration (and was not reused since)."""
        pfn = page.pfn
        return pfn in self.migrated_from or (pfn in self.freed_sources and not page._refcount)

    def moved_here(self, page: Page) -> bool:
        """`page` is the new page of a successful migration."""
        return page.pfn in self.migrated_to

    def failed_target(self, page: Page) -> bool:
        """`page` is a new page a failed migratepage was given."""
        return page.pfn in self.failed_targets


def blame_leak(journal: Journal, page: Page) -> str:
    """The rule a page in use that nobody owns breaks (see the module docstring)."""
    if journal.migrated_away(page):
        return "MIG-7"
    if journal.failed_target(page) and not page.mapping:
        return "MIG-8"
    return "REL-1"


def mapping_word_made_by_api(hook: str, page: Page) -> None:
    """FLG-1: after a callback a page's mapping word is one __SetPageMovable (an address
    space with the movable tag), __ClearPageMovable (the tag alone) or the allocator (0)
    makes: tag bits the driver wrote itself would make the VM take the page for an
    anonymous or file page and follow its mapping as one."""
    word = page.mapping
    if word and word & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE:
        raise ContractViolation("FLG-1", f"{hook} left page->mapping {word:#x}, tag bits "
                                f"{word & PAGE_MAPPING_FLAGS:#x}: a word neither "
                                "__SetPageMovable nor __ClearPageMovable makes (the driver "
                                "wrote it itself)", hook=hook, page=page)


def blame_bad_read(journal: Journal, since: int, default: str) -> str:
    """The rule an object that read back right at `since` and wrong now breaks: a successful
    migration meanwhile did not move it, or one under way let readers see its new page
    before it was set up (MIG-7), else a putback did not restore it (PUT-2), else
    `default`."""
    if journal.last_migration > since or journal.migrating:
        return "MIG-7"
    if journal.last_putback > since:
        return "PUT-2"
    return default


def blame_page(journal: Journal, page: Page, default: str) -> str:
    """The rule a page the driver got from a successful migration and left in a wrong state
    breaks (MIG-7: migratepage sets newpage up); `default` for any other page."""
    return "MIG-7" if journal.moved_here(page) else default


_RULE_ID = re.compile(r"\b([A-Z]{2,4}-[0-9A-Z]{1,3})\b")


def rule_named(message: str, default: str) -> str:
    """The first contract rule id a message names (a driver's verify() says "DRV-B1: ..."),
    else `default`."""
    for m in _RULE_ID.finditer(message):
        if rules.exists(m.group(1)):
            return m.group(1)
    return default


__all__ = ["LEAKED", "Journal", "blame_bad_read", "blame_leak", "blame_page",
           "mapping_word_made_by_api", "rule_named"]
