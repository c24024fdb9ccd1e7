"""What the conformance bench sees of a driver, as a debugging kernel would.

- an *ops spy* interposed in front of the driver's callbacks (the address
  space's interposer), which counts every call per page and, after each one,
  verifies the lru sentinels;
- *lru sentinels*: what the VM linked each isolated page's `lru` to (a
  sentinel, or the migration list it is on); the VM owns that field from
  isolation on, so finding anything else there after a driver call breaks
  ISO-4;
- page poisoning of every page freed by a migration (CONFIG_PAGE_POISONING,
  mm/page_poison.c), so a driver that still reads its old page reads poison,
  and one that still writes to it is caught overwriting the poison;
- snapshots of a page and of the driver's observable state, to prove that
  something "left everything as it was" (ISO-6, PUT-2);
- a watch on reads of the raw `page.mapping` word by driver code (FLG-7).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

from ..drivercode import DriverCode, Site
from ..journal import Journal, mapping_word_made_by_api
from ..migrate import PageList
from ..page import BUDDY, ISOLATED, PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE, TAIL, Page
from .outcomes import CheckFailed
from .violations import RELEASED_MOVABLE

if TYPE_CHECKING:
    from ..mapping import AddressSpace
    from ..vm import VM
    from .bench import Bench

#: mm/page_poison.c: PAGE_POISON, what a freed page is filled with
PAGE_POISON = 0xAA


class LruSentinel:
    """What the VM links an isolated page's lru to when it is on no migration list.

    The driver must leave page.lru alone while the page is isolated (ISO-4);
    finding anything else there afterwards proves it did not.
    """

    __slots__ = ("pfn",)

    def __init__(self, pfn: int) -> None:
        self.pfn = pfn

    def __repr__(self) -> str:
        return f"<VM lru sentinel of pfn {self.pfn:#x}>"


@define(slots=True, eq=False)
class LruSentinels:
    """Isolated page -> what the VM linked its lru to (a sentinel or a PageList)."""

    owner: dict[Page, Any] = field(factory=dict)

    def link(self, page: Page) -> None:
        """An isolated page on no list: its lru points at a sentinel."""
        sentinel = LruSentinel(page.pfn)
        page.lru = sentinel
        self.owner[page] = sentinel

    def verify(self, hook: str, skip: Page | None = None) -> None:
        """ISO-4: every isolated page's lru still holds what the VM linked it to.

        A page the VM itself took off its migration list (list_del before
        putback_page or migratepage) and that is still isolated because that
        callback failed holds what list_del left: that is the VM's doing.
        """
        for page, owner in self.owner.items():
            if page is skip or not page.flags & ISOLATED:
                continue  # only an isolated page's lru belongs to the VM
            if page.lru is not owner and not _unlinked_by_vm(page, owner):
                if page.mapping == PAGE_MAPPING_MOVABLE:
                    # released by the driver while isolated: list_del of a page the VM still
                    # holds is the release's mistake (the kernel's release paths leave it)
                    raise CheckFailed("REL-2", f"{hook} released an isolated page and changed "
                                      f"its lru (the VM left {owner!r}, found {page.lru!r}): "
                                      "a page released while isolated stays on the VM's list "
                                      "until the VM finishes it", page=page, hook=hook)
                raise CheckFailed("ISO-4", f"page.lru of an isolated page was changed during "
                                  f"{hook} (the VM left {owner!r}, found {page.lru!r})",
                                  page=page, hook=hook)

    def to_list(self, pages: Any) -> PageList:
        """Move isolated pages from their sentinels onto a migration list (cc->migratepages)."""
        plist = PageList()
        for page in pages:
            owner = self.owner.get(page)
            if page.lru is not owner and not _unlinked_by_vm(page, owner):
                raise CheckFailed("ISO-4", f"page.lru of an isolated page was changed (the VM "
                                  f"left {owner!r}, found {page.lru!r})", page=page)
            if isinstance(owner, PageList) and page in owner.pages:
                owner.delete(page)
            page.lru = None
            plist.add(page)
            self.owner[page] = plist
        return plist

    def still_isolated(self) -> list[Page]:
        return [p for p in self.owner if p.flags & ISOLATED]

    def forget_done(self, vm: VM) -> None:
        """Drop the pages whose isolation ended (migrated, put back or released)."""
        for page in list(self.owner):
            if page not in vm.isolated and not page.flags & ISOLATED:
                del self.owner[page]

    def freed(self) -> list[Page]:
        """The pages the VM held isolated that are free now (a migration freed them)."""
        return [p for p in self.owner if _free(p)]


def _free(page: Page) -> bool:
    """`page` is back with the allocator (a buddy page, or a page of a free block)."""
    return bool(page.flags & BUDDY) or (page._refcount == 0 and not page.flags & TAIL)


@define(slots=True, eq=False)
class Poison:
    """PAGE_POISON over every old page a migration freed (mm/page_poison.c), watched.

    A page that still holds nothing but poison before a call into the driver
    and not after it, while it stayed free, was written by that call: the
    driver still writes through a pointer to a page it gave up (the kernel's
    check_poison_mem() finds it when the page is next allocated).  A page
    allocated meanwhile, by anybody, is no longer watched.
    """

    zone: Any
    pages: dict[Page, None] = field(factory=dict)

    def fill(self, pages: Iterable[Page]) -> None:
        for page in pages:
            view = self.zone.page_address(page)
            view[:] = bytes([PAGE_POISON]) * len(view)
            self.pages[page] = None

    def armed(self) -> list[Page]:
        """The watched pages that are free and hold only poison now (the others are
        forgotten: something allocated them since)."""
        out = []
        for page in list(self.pages):
            if _free(page) and _poisoned(self.zone.page_address(page)):
                out.append(page)
            else:
                del self.pages[page]
        return out

    def verify(self, armed: list[Page], hook: str, journal: Journal) -> None:
        """Each page of `armed` (armed() before the call) still free holds only poison."""
        for page in armed:
            if not _free(page):
                continue
            view = self.zone.page_address(page)
            if _poisoned(view):
                continue
            at = next(i for i, b in enumerate(bytes(view)) if b != PAGE_POISON)
            old = journal.migrated_away(page)
            why = "a migration freed it" if old else "it was released"
            raise CheckFailed("MIG-7" if old else "REL-1",
                              f"{hook}() wrote into pfn {page.pfn:#x} (first at offset {at}), "
                              f"which is free: {why} and the driver still writes through a "
                              "pointer to it", page=page, hook=hook,
                              what="a write into a page freed by a migration" if old
                              else "a write into a released page")


def _poisoned(view: Any) -> bool:
    data = bytes(view)
    return data == bytes([PAGE_POISON]) * len(data)


def _unlinked_by_vm(page: Page, owner: Any) -> bool:
    """The VM took `page` off the list it was on (PageList.delete leaves lru None)."""
    return page.lru is None and isinstance(owner, PageList) and page not in owner.pages


class OpsSpy:
    """Interposed in front of a driver's callbacks: counts calls per page, keeps every
    result in the journal, and checks the lru sentinels after each call."""

    def __init__(self, sentinels: LruSentinels) -> None:
        self.sentinels = sentinels
        self.calls: Counter[tuple[str, int]] = Counter()
        self.results: list[tuple[str, int, Any]] = []
        self.refusals: list[int] = []
        #: what migratepage and putback_page did, for blaming what is found later
        self.journal = Journal()

    def install(self, mapping: AddressSpace) -> None:
        mapping.interpose(isolate_page=self.isolate_page, migratepage=self.migratepage,
                          putback_page=self.putback_page)

    def isolate_page(self, call: Callable[..., Any], page: Page, mode: int) -> Any:
        ret = call(page, mode)
        mapping_word_made_by_api("isolate_page", page)
        self._record("isolate_page", page, ret)
        if ret is False:
            self.refusals.append(page.pfn)
        return ret

    def migratepage(self, call: Callable[..., Any], mapping: Any, newpage: Page, page: Page,
                    mode: int) -> Any:
        ret = call(mapping, newpage, page, mode)
        mapping_word_made_by_api("migratepage", page)
        mapping_word_made_by_api("migratepage", newpage)
        self.journal.migrated(newpage, page, ret)
        self._record("migratepage", page, ret)
        return ret

    def putback_page(self, call: Callable[..., Any], page: Page) -> Any:
        word = page.mapping
        if page._refcount == 1 and word & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE \
                and word & ~PAGE_MAPPING_FLAGS:
            # only the VM's isolation reference is left, yet the page looks movable: the
            # driver released it, and putback_page would run for a page it no longer has
            raise CheckFailed("REL-1", f"{RELEASED_MOVABLE}: only the VM's isolation "
                              "reference is left when putback_page is about to be called",
                              page=page, what=RELEASED_MOVABLE)
        refs = page._refcount
        ret = call(page)
        mapping_word_made_by_api("putback_page", page)
        if page._refcount > refs and page.zone.vm.strict_refcounts:
            # (on several CPUs a concurrent isolator's get_page_unless_zero may be counted)
            raise CheckFailed("PUT-1", f"putback_page took {page._refcount - refs} "
                              "reference(s) on the page and kept them: putback gives the page "
                              "back with the references isolate_page left it",
                              page=page, hook="putback_page")
        self.journal.putback(page)
        self._record("putback_page", page, ret)
        return ret

    def _record(self, hook: str, page: Page, ret: Any) -> None:
        self.calls[hook, page.pfn] += 1
        self.results.append((hook, page.pfn, ret))
        self.sentinels.verify(hook, skip=page)

    def count(self, hook: str, page: Page | None = None) -> int:
        if page is None:
            return sum(n for (h, _), n in self.calls.items() if h == hook)
        return self.calls[hook, page.pfn]

    def reset(self) -> None:
        self.calls.clear()
        self.results.clear()
        self.refusals.clear()


@frozen(slots=True)
class PageSnapshot:
    """Everything of a struct page a refusal must leave unchanged (ISO-6)."""

    pfn: int
    flags: int
    refcount: int
    mapping: int
    private: Any
    lru: Any
    digest: bytes

    @classmethod
    def take(cls, vm: VM, page: Page) -> PageSnapshot:
        data = bytes(vm.zone.page_address(page))
        return cls(page.pfn, page.flags, page._refcount, page.mapping, page.private, page.lru,
                   data)

    def diff(self, other: PageSnapshot) -> list[str]:
        out = []
        for name in ("flags", "refcount", "mapping"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name} {a:#x} -> {b:#x}")
        if self.private is not other.private and self.private != other.private:
            out.append(f"private {self.private!r} -> {other.private!r}")
        if self.lru is not other.lru:
            out.append(f"lru {self.lru!r} -> {other.lru!r}")
        if self.digest != other.digest:
            out.append("contents changed")
        return out


@frozen(slots=True)
class DriverSnapshot:
    """The driver's observable state: every object's bytes, its pages, its own verdict."""

    objects: dict[Any, bytes]
    pfns: frozenset[int]
    verify_error: str | None

    @classmethod
    def take(cls, bench: Bench) -> DriverSnapshot:
        objects = {h: bench.read(h) for h in bench.objects}
        pfns = frozenset(p.pfn for p in bench.pages())
        return cls(objects, pfns, bench.guarded.verify())

    def diff(self, other: DriverSnapshot) -> list[str]:
        out = []
        for h, data in self.objects.items():
            if other.objects.get(h) != data:
                out.append(f"object {h!r} reads differently")
        if self.pfns != other.pfns:
            gone = sorted(self.pfns - other.pfns)
            new = sorted(other.pfns - self.pfns)
            out.append(f"pages() changed (no longer lists {[hex(p) for p in gone]}, "
                       f"now lists {[hex(p) for p in new]})")
        if other.verify_error and not self.verify_error:
            out.append(f"verify() now fails: {other.verify_error}")
        return out


#: the slot of struct page's mapping word, under the watch's property
_MAPPING_SLOT: Any = Page.__dict__["mapping"]


class RawMappingReads:
    """Every read of a page's raw `mapping` word made by driver code (FLG-7).

    The word carries tag bits (PAGE_MAPPING_MOVABLE, ANON, KSM) in its low
    bits: a driver must go through page_mapping(), has_movable_tag() or
    page_movable(), never compare or use the word itself.  While installed,
    every page of the zone is of a subclass of Page whose `mapping` is a
    property that records the driver frame reading it; mmplug's own reads
    (page_mapping() itself) are not the driver's.
    """

    def __init__(self, code: DriverCode) -> None:
        self.code = code
        #: where driver code read the word, in order, each place once
        self.sites: list[Site] = []
        self._seen: set[tuple[str, int]] = set()
        self._watched = self._page_class()

    def _page_class(self) -> type[Page]:
        watch = self

        def read(page: Page) -> int:
            frame = sys._getframe(1)
            code = frame.f_code
            if watch.code.contains(code.co_filename):
                key = (code.co_filename, frame.f_lineno)
                if key not in watch._seen:
                    watch._seen.add(key)
                    watch.sites.append(Site(code.co_qualname, code.co_filename,
                                            frame.f_lineno))
            word: int = _MAPPING_SLOT.__get__(page, Page)
            return word

        def write(page: Page, word: int) -> None:
            _MAPPING_SLOT.__set__(page, word)

        return type("WatchedPage", (Page,), {"__slots__": (), "mapping": property(read, write)})

    def install(self, vm: VM) -> None:
        for page in vm.zone.pages:
            page.__class__ = self._watched

    def remove(self, vm: VM) -> None:
        for page in vm.zone.pages:
            if type(page) is self._watched:
                page.__class__ = Page
