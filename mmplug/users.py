"""Page users that are not movable drivers: slab caches and LRU (anonymous) pages.

They make fragmentation realistic.  Slab pages are unmovable and overlay the
mapping word (BUG-1); LRU pages are movable by the VM itself, through the LRU
branch of migration, and can be pinned by an extra reference (GUP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator
from zlib import crc32

from .constants import GFP_COMP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, LIST_POISON2
from .page import LRU, PAGE_MAPPING_ANON, SLAB, Page

if TYPE_CHECKING:
    from .vm import VM


def _digest(data: bytes | memoryview) -> int:
    """A checksum of an LRU page, to find it changed at the end of the same run: a CRC
    is enough for that, at a quarter of the time of a cryptographic hash."""
    return crc32(data)


class SlabCache:
    """A kmem_cache's slabs: unmovable, possibly compound pages with PG_slab.

    In v4.19 `slab_cache` overlays page->mapping (a 4-aligned pointer, no tag).
    A slab with `poisoned=True` shows the v6.x layout where the word holds
    LIST_POISON2 (0x122), whose low bits read as PAGE_MAPPING_MOVABLE: the
    false positive of __PageMovable that commit 8b8817630ae8 guards against.
    """

    def __init__(self, vm: "VM", name: str = "kmalloc-256", order: int = 0) -> None:
        self.vm = vm
        self.name = name
        self.order = order
        self.space = vm.new_address_space(f"slab:{name}", None, private_data=self)
        self.slabs: set[Page] = set()

    def alloc_slab(self, *, poisoned: bool = False) -> Page | None:
        gfp = GFP_KERNEL | (GFP_COMP if self.order else 0)
        page = self.vm.zone.alloc_pages(self.order, gfp)
        if page is None:
            return None
        page.flags |= SLAB
        page.mapping = LIST_POISON2 if poisoned else self.space.handle
        self.slabs.add(page)
        return page

    def free_slab(self, page: Page) -> None:
        """__free_slab(): clear PG_slab and the overlay, give the pages back."""
        self.slabs.remove(page)
        page.flags &= ~SLAB
        page.mapping = 0
        self.vm.cpus.put_page(page)

    def pfns(self) -> Iterator[int]:
        n = 1 << self.order
        for page in self.slabs:
            yield from range(page.pfn, page.pfn + n)


class LruPages:
    """Anonymous pages on the LRU, each mapped once (one reference), with checked contents."""

    def __init__(self, vm: "VM") -> None:
        self.vm = vm
        # the anon_vma: pages point at it with PAGE_MAPPING_ANON
        self.space = vm.new_address_space("lru", None, private_data=self)
        self.pages: dict[int, Page] = {}
        self.digests: dict[int, int] = {}
        self.pinned: dict[int, int] = {}
        self._next = 0

    def alloc(self, data: bytes | None = None) -> int | None:
        """Fault in one anonymous page; returns its key, or None if memory is short."""
        zone = self.vm.zone
        page = zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
        if page is None:
            return None
        key = self._next
        self._next += 1
        view = zone.page_address(page)
        if data is not None:
            view[:len(data)] = data
        zone.lru_add(page)
        page.mapping = self.space.handle | PAGE_MAPPING_ANON
        page.private = key
        self.pages[key] = page
        self.digests[key] = _digest(view)
        return key

    def free(self, key: int) -> None:
        """Unmap the page: its reference goes; the VM finishes a page it holds isolated."""
        page = self.pages.pop(key)
        del self.digests[key]
        for _ in range(self.pinned.pop(key, 0)):
            self.vm.cpus.put_page(page)
        if page.flags & LRU:
            page.zone.lru_del(page)
        self.vm.cpus.put_page(page)

    def pin(self, key: int) -> None:
        """get_user_pages(): an extra reference makes migration fail with -EAGAIN."""
        self.vm.cpus.get_page(self.pages[key])
        self.pinned[key] = self.pinned.get(key, 0) + 1

    def unpin(self, key: int) -> None:
        self.pinned[key] -= 1
        if not self.pinned[key]:
            del self.pinned[key]
        self.vm.cpus.put_page(self.pages[key])

    def replace_page(self, old: Page, new: Page) -> None:
        """remove_migration_ptes(): the mapping now points at `new`."""
        key = old.private
        new.private = key
        new._refcount += 1
        old._refcount -= 1
        self.pages[key] = new

    def verify(self) -> list[int]:
        """Keys whose contents changed."""
        zone = self.vm.zone
        return [k for k, p in self.pages.items()
                if _digest(zone.page_address(p)) != self.digests[k]]

    def keys(self) -> Iterable[int]:
        return self.pages.keys()


def claimed_by_users(vm: "VM") -> set[int]:
    """pfns held by slab caches and LRU owners registered on the VM."""
    out: set[int] = set()
    for space in vm.mappings.values():
        user = space.private_data
        if isinstance(user, SlabCache):
            out.update(user.pfns())
        elif isinstance(user, LruPages):
            out.update(p.pfn for p in user.pages.values())
    return out
