"""The generic balloon page book-keeping: mm/balloon_compaction.c and
include/linux/balloon_compaction.h, v4.19 (DRV-B1, DRV-B2, DRV-B4).

A balloon device keeps the pages it took from the guest on one list under a
spinlock and counts the ones compaction has isolated; the pages point back at
the device through page->private (balloon_page_device()).  The three
address-space callbacks (balloon_aops) live here; the device-specific part of
migration (telling the host) is the device's `migratepage` hook, as
`balloon_dev_info->migratepage` is in the kernel.

`compaction=False` models a kernel built without CONFIG_BALLOON_COMPACTION:
pages are not made movable, are allocated unmovable, and PG_isolated means
nothing to the balloon (it is PG_reclaim, FLG-6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from attrs import define, field

from mmplug import ContractViolation
from mmplug.kernel import (
    EINVAL,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    MigrateMode,
    Page,
    alloc_page,
    clear_page_movable,
    count_vm_event,
    page_isolated,
    page_locked,
    set_page_movable,
    spinlock,
    trylock_page,
    unlock_page,
)

if TYPE_CHECKING:
    from mmplug import VM, AddressSpace

#: balloon_dev_info->migratepage(b_dev_info, newpage, page, mode)
MigrateHook = Callable[["BalloonDevInfo", Page, Page, int], int]


class BalloonPageList:
    """`b_dev_info->pages`: a list_head of pages linked through page->lru.

    list_add() puts a page at the head and list_for_each_entry_safe() walks from
    the head, so the newest page is dequeued first.  A listed page has
    `page.lru is` this list, which is what the VM's ISO-4 check looks at.
    """

    __slots__ = ("_pages", "name")

    def __init__(self, name: str) -> None:
        # dict as an ordered set: O(1) list_del, insertion order = age
        self._pages: dict[Page, None] = {}
        self.name = name

    def add(self, page: Page) -> None:
        """list_add(&page->lru, &b_dev_info->pages)."""
        page.lru = self
        self._pages[page] = None

    def delete(self, page: Page) -> None:
        """list_del(&page->lru)."""
        pages = self._pages
        if next(reversed(pages), None) is page:
            # The head goes by popitem(), which also drops the dict's empty slots behind
            # it: a deflation takes page after page from the head, and each look for the
            # head would otherwise step over every slot emptied before.
            pages.popitem()
        else:
            del pages[page]
        page.lru = None

    def __iter__(self) -> Iterator[Page]:
        """list_for_each_entry_safe() from the head: the next entry is fetched before the
        walker sees this one, so the walker may delete the entry it stands on.  The walk
        goes lazily (a deflation stops at the first page it can take), and entries added
        behind the walk are not visited, as in a snapshot."""
        pages = self._pages
        walk = reversed(pages)
        page = next(walk, None)
        while page is not None:
            size = len(pages)
            after = next(walk, None)
            yield page
            if after is not None and len(pages) != size:
                # the list changed under the walk: go on from `after`
                walk = reversed(pages)
                for p in walk:
                    if p is after:
                        break
            page = after

    def __contains__(self, page: object) -> bool:
        return page in self._pages

    def __len__(self) -> int:
        return len(self._pages)

    def __bool__(self) -> bool:
        return bool(self._pages)

    def __repr__(self) -> str:
        return f"<BalloonPageList {self.name} of {len(self._pages)}>"


@define(slots=True, eq=False, repr=False)
class BalloonDevInfo:
    """struct balloon_dev_info (include/linux/balloon_compaction.h)."""

    vm: VM
    #: inode->i_mapping of the balloon's pseudo file system: what page->mapping points at
    mapping: AddressSpace
    pages_lock: Any
    pages: BalloonPageList
    migratepage: MigrateHook | None = None
    #: CONFIG_BALLOON_COMPACTION
    compaction: bool = True
    #: pages compaction holds isolated: off the list, still the balloon's
    isolated_pages: int = 0
    #: bug ids reintroduced (mmplug_balloon.bugs)
    bugs: frozenset[str] = field(factory=frozenset)

    def __repr__(self) -> str:
        return (f"<balloon_dev_info {self.mapping.name}: {len(self.pages)} listed, "
                f"{self.isolated_pages} isolated>")


def balloon_devinfo_init(vm: VM, mapping: AddressSpace, *, compaction: bool = True,
                         migratepage: MigrateHook | None = None,
                         bugs: frozenset[str] = frozenset()) -> BalloonDevInfo:
    """balloon_devinfo_init(): an empty list, its lock, no isolated pages."""
    return BalloonDevInfo(vm=vm, mapping=mapping,
                          pages_lock=spinlock(vm, f"{mapping.name}.pages_lock"),
                          pages=BalloonPageList(f"{mapping.name}.pages"),
                          migratepage=migratepage, compaction=compaction, bugs=bugs)


def balloon_mapping_gfp_mask(compaction: bool) -> int:
    """balloon_mapping_gfp_mask(): movable only if compaction can move the pages.

    Without compaction the kernel uses GFP_HIGHUSER; highmem does not exist on
    x86-64, so it is GFP_KERNEL's unmovable placement that matters.
    """
    return GFP_HIGHUSER_MOVABLE if compaction else GFP_KERNEL


def balloon_page_alloc(b_dev_info: BalloonDevInfo) -> Page | None:
    """balloon_page_alloc(): one page for the balloon, or None (no retries, no reserves)."""
    return alloc_page(b_dev_info.vm, balloon_mapping_gfp_mask(b_dev_info.compaction))


def balloon_page_device(page: Page) -> BalloonDevInfo:
    """balloon_page_device(): the device a page belongs to, from page->private.

    A page whose private was already cleared would be a NULL dereference in
    the kernel; that is only reachable with BUG-12 reintroduced.
    """
    device = page.private
    if not isinstance(device, BalloonDevInfo):
        raise ContractViolation("BUG-12", "balloon_page_device(): page->private is "
                                f"{device!r}, not a balloon device (a NULL dereference in the "
                                "kernel): deflation cleared it while the page was reachable",
                                page=page)
    return device


def balloon_page_insert(b_dev_info: BalloonDevInfo, page: Page) -> None:
    """balloon_page_insert(): movable, private = device, on the list (DRV-B1).

    Caller holds the page lock and pages_lock.  __SetPageBalloon (a page type
    kept in _mapcount, read only by /proc/kpageflags) is not modelled.  Without
    CONFIG_BALLOON_COMPACTION the header's other variant only lists the page:
    nothing reads page->private then, so it is left alone.
    """
    if b_dev_info.compaction:
        set_page_movable(page, b_dev_info.mapping)
        page.private = b_dev_info
    b_dev_info.pages.add(page)


def balloon_page_delete(b_dev_info: BalloonDevInfo, page: Page) -> None:
    """balloon_page_delete(): not movable, no device, off the list unless isolated.

    An isolated page's lru belongs to the VM (ISO-4, REL-2): it is left alone
    and the VM finishes the page when it next looks at it.  Caller holds the
    page lock and pages_lock.  Without CONFIG_BALLOON_COMPACTION: list_del only.
    """
    if b_dev_info.compaction:
        clear_page_movable(page)
        page.private = 0
        if not page_isolated(page):
            b_dev_info.pages.delete(page)
    else:
        b_dev_info.pages.delete(page)


def balloon_page_enqueue(b_dev_info: BalloonDevInfo, page: Page) -> None:
    """balloon_page_enqueue(): lock the fresh page, insert it, count balloon_inflate."""
    # Nobody else can know this page yet, so the lock cannot be contended.
    if not trylock_page(page):
        raise ContractViolation("DRV-B1", "balloon_page_enqueue(): a freshly allocated page "
                                "is locked by someone else (BUG_ON)", page=page)
    with b_dev_info.pages_lock:
        balloon_page_insert(b_dev_info, page)
        count_vm_event(b_dev_info.vm, "balloon_inflate")
    unlock_page(page)


def balloon_page_dequeue(b_dev_info: BalloonDevInfo) -> Page | None:
    """balloon_page_dequeue(): take one page off the balloon for deflation (DRV-B1, DRV-B4).

    Pages whose lock is taken (a compactor or migration has them) and pages
    compaction isolated are skipped; None means "try again later".  Finding
    nothing while nothing is listed and nothing is isolated means pages were
    lost: the kernel BUG()s rather than let the driver loop forever.
    """
    check_isolated = b_dev_info.compaction or "BUG-10" in b_dev_info.bugs
    dequeued = None
    with b_dev_info.pages_lock:
        for page in b_dev_info.pages:
            if not trylock_page(page):
                continue
            # With compaction off the bit is PG_reclaim and says nothing about
            # isolation (BUG-10).
            if check_isolated and page_isolated(page):
                unlock_page(page)
                continue
            balloon_page_delete(b_dev_info, page)
            count_vm_event(b_dev_info.vm, "balloon_deflate")
            unlock_page(page)
            dequeued = page
            break
    if dequeued is None:
        with b_dev_info.pages_lock:
            if not b_dev_info.pages and not b_dev_info.isolated_pages:
                raise ContractViolation("DRV-B4", "balloon pages are lost: deflation found no "
                                        "page on the list and none isolated, yet the device "
                                        "still counts pages in the balloon")
    return dequeued


# --- balloon_aops: the movable callbacks (CONFIG_BALLOON_COMPACTION) --------------------

def balloon_page_isolate(page: Page, mode: int) -> bool:
    """balloon_page_isolate(): off the list, isolated_pages++, always True (DRV-B2)."""
    b_dev_info = balloon_page_device(page)
    with b_dev_info.pages_lock:
        b_dev_info.pages.delete(page)
        b_dev_info.isolated_pages += 1
    return True


def balloon_page_putback(page: Page) -> None:
    """balloon_page_putback(): back on the list, isolated_pages-- (DRV-B2)."""
    b_dev_info = balloon_page_device(page)
    with b_dev_info.pages_lock:
        b_dev_info.pages.add(page)
        b_dev_info.isolated_pages -= 1


def balloon_page_migrate(mapping: AddressSpace, newpage: Page, page: Page, mode: int) -> int:
    """balloon_page_migrate(): the device's migratepage does the work (DRV-B3, MIG-10).

    v4.19 cannot leave the copy to a DMA engine, so MIGRATE_SYNC_NO_COPY is
    refused with -EINVAL (a permanent failure: the page is put back).
    """
    b_dev_info = balloon_page_device(page)
    if mode == MigrateMode.SYNC_NO_COPY:
        return -EINVAL
    if not page_locked(page) or not page_locked(newpage):
        raise ContractViolation("MIG-7", "balloon_page_migrate() without both page locks",
                                page=page if not page_locked(page) else newpage)
    return b_dev_info.migratepage(b_dev_info, newpage, page, mode)
