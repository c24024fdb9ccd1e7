"""One memory zone: page frames, zone memory, the buddy allocator, pageblocks.

Models mm/page_alloc.c of v4.19: __free_one_page (merging buddies),
__rmqueue_smallest / expand (splitting), __rmqueue_fallback,
find_suitable_fallback and steal_suitable_fallback (mixing migratetypes),
free_pages_prepare / free_pages_check (bad page state), zone watermarks and
__zone_watermark_ok; and the zone fields compaction keeps (include/linux/mmzone.h).

A free list is a `FreeList`: a dict keyed by pfn whose last key is the list's
head (list_add is an insertion, list_first_entry the last key, list_del of an
arbitrary buddy O(1)), plus the blocks added at the tail (list_add_tail).  The
head page of a free block carries PG_buddy, its order in `private`
(page_order) and its list's migratetype in `lru`.

Not modelled: the per-CPU page lists (order-0 pages are freed to and taken
from the buddy lists directly, as with pcp->high = 0), highatomic reserves,
CMA and isolated pageblocks, guard pages.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

from .constants import (
    GFP_COMP,
    NR_MIGRATETYPES,
    MigrateType,
    gfp_migratetype,
)
from .errors import ContractViolation
from .page import (
    BUDDY,
    COMPOUND,
    FLAGS_CHECK_AT_FREE,
    HEAD,
    ISOLATED,
    LRU,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_MOVABLE,
    TAIL,
    Page,
    flag_names,
)

if TYPE_CHECKING:
    from .cpus.backend import CpuBackend
    from .mapping import AddressSpace
    from .vm import VM

#: mm/page_alloc.c fallbacks[]: where each migratetype may steal from, in order.
FALLBACKS: dict[int, tuple[MigrateType, ...]] = {
    MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
    MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
    MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
    # No row of its own (a gfp with both mobility bits asks for it): its four zeroes read
    # as MIGRATE_UNMOVABLE, and find_suitable_fallback() stops at the next row's
    # MIGRATE_TYPES (mm/page_alloc.c:2213-2223, 2514-2517).
    MigrateType.HIGHATOMIC: (MigrateType.UNMOVABLE,),
}
#: the types with free lists a normal allocation may use (no HIGHATOMIC/CMA/ISOLATE here).
PCPTYPES = (MigrateType.UNMOVABLE, MigrateType.MOVABLE, MigrateType.RECLAIMABLE)


#: what FreeList.remove's probe finds for a pfn that is not a key (values are None)
_ABSENT = object()


class FreeList(dict[int, None]):
    """free_area[order].free_list[migratetype]: pfn -> None, in list order.

    Blocks added at the head (list_add) are the dict's own keys, the latest
    last; blocks added at the tail (list_add_tail) wait in `tail`, the oldest
    first, and become the dict's keys, in list order, when the head part runs
    out.  So the dict is empty only when the list is, and its last key is
    always list_first_entry().  Iteration runs from the tail to the head.
    """

    __slots__ = ("tail",)

    def __init__(self) -> None:
        super().__init__()
        self.tail: dict[int, None] = {}

    def add_tail(self, pfn: int) -> None:
        """list_add_tail()."""
        if self:
            self.tail[pfn] = None
        else:
            self[pfn] = None

    def remove(self, pfn: int) -> None:
        """list_del()."""
        # One probe, no exception: a merging buddy is often in the tail part.
        if self.pop(pfn, _ABSENT) is _ABSENT:
            del self.tail[pfn]
        elif not self and self.tail:
            self._refill()

    def pop_head(self) -> int:
        """list_first_entry() + list_del()."""
        pfn = self.popitem()[0]
        if not self and self.tail:
            self._refill()
        return pfn

    def _refill(self) -> None:
        for pfn in reversed(self.tail):
            self[pfn] = None
        self.tail.clear()

    def size(self) -> int:
        return len(self) + len(self.tail)

    def __iter__(self) -> Iterator[int]:
        yield from reversed(self.tail)
        yield from dict.__iter__(self)


def default_min_free_pages(nr_pages: int, page_size: int) -> int:
    """init_per_zone_wmark_min(): min_free_kbytes = sqrt(lowmem_kbytes * 16), 128..65536 KiB."""
    kbytes = nr_pages * page_size // 1024
    min_kb = min(max(int(math.isqrt(kbytes * 16)), 128), 65536)
    return max(min_kb * 1024 // page_size, 1)


#: a page freed with any of these flags is in a bad state (free_pages_prepare)
BAD_AT_FREE = BUDDY | FLAGS_CHECK_AT_FREE | ISOLATED


def _bad_page_at_free(page: Page) -> NoReturn:
    """bad_page(): what is wrong with a page being freed, the first problem found."""
    if page.flags & BUDDY:
        problem = "page is already free (double free)"
    elif page.mapping:
        problem = f"non-NULL mapping {page.mapping:#x}"
    elif page._refcount:
        problem = f"nonzero refcount {page._refcount}"
    elif page.flags & FLAGS_CHECK_AT_FREE:
        problem = f"flags {flag_names(page.flags & FLAGS_CHECK_AT_FREE)} set"
    else:
        problem = "still PG_isolated: somebody dropped the VM's isolation reference"
    rule = "REL-2" if "isolated" in problem else "FREE-1"
    raise ContractViolation(rule, f"bad page state at free: {problem}", page=page)


class Zone:
    """ZONE_NORMAL of one node: `nr_pages` frames over one bytearray."""

    def __init__(self, vm: VM, nr_pages: int, *, page_size: int = 4096, start_pfn: int = 0,
                 pageblock_order: int = 9, max_order: int = 11,
                 min_free_pages: int | None = None) -> None:
        pb = 1 << pageblock_order
        if nr_pages <= 0 or nr_pages % pb:
            raise ValueError(f"a zone holds whole pageblocks: {nr_pages} pages is not a "
                             f"multiple of {pb}")
        if pageblock_order >= max_order:
            raise ValueError("pageblock_order must be below max_order")
        if page_size < 64 or page_size & (page_size - 1):
            raise ValueError(f"page size {page_size} is not a power of two >= 64")
        self.vm = vm
        self.cpus: CpuBackend = vm.cpus
        self.mappings: dict[int, AddressSpace] = vm.mappings
        self.nr_pages = nr_pages
        self.page_size = page_size
        self.start_pfn = start_pfn
        self.end_pfn = start_pfn + nr_pages
        #: zone_start_pfn and zone_end_pfn(): where compaction's scanners start and stop.  A
        #: zone modelled from a real machine spans less than its memmap of whole pageblocks.
        self.zone_start_pfn = start_pfn
        self.zone_end_pfn = self.end_pfn
        self.pageblock_order = pageblock_order
        self.pageblock_nr_pages = pb
        self.max_order = max_order
        # A zone of whole aligned MAX_ORDER-1 blocks holds every buddy __free_one_page can
        # look at (below MAX_ORDER-1, a block's buddy is inside the same top block): its
        # bounds checks are skipped, since every freed page comes there.
        top_block = 1 << (max_order - 1)
        self._buddies_inside = not start_pfn % top_block and not nr_pages % top_block
        # An anonymous mapping: zero-filled on first touch, so an idle 4 GiB
        # zone costs no memory until pages are written.
        self.mem = mmap.mmap(-1, nr_pages * page_size)
        self.view = memoryview(self.mem)
        self.pages = [Page(pfn, self) for pfn in range(start_pfn, start_pfn + nr_pages)]
        # free_area[order][migratetype] -> {pfn: None}, the head last
        self.free_area: list[list[FreeList]] = [
            [FreeList() for _ in range(NR_MIGRATETYPES)] for _ in range(max_order)]
        self.nr_free = [0] * max_order
        self.nr_free_pages = 0
        nr_blocks = nr_pages // pb
        # memmap_init_zone(): every pageblock starts MOVABLE
        self.pageblock_mt = bytearray([MigrateType.MOVABLE]) * nr_blocks
        self.pageblock_skip = bytearray(nr_blocks)
        # watermarks (mm/page_alloc.c: __setup_per_zone_wmarks, watermark_scale_factor 10)
        wmin = (default_min_free_pages(nr_pages, page_size) if min_free_pages is None
                else min_free_pages)
        tmp = max(wmin >> 2, nr_pages * 10 // 10000)
        self.wmark_min = wmin
        self.wmark_low = wmin + tmp
        self.wmark_high = wmin + 2 * tmp
        # compaction state (include/linux/mmzone.h)
        # Zeroed with the rest of struct zone and first set by reset_cached_positions():
        # compact_zone()'s range checks put an out-of-zone value back (mm/compaction.c:
        # 1594-1602), but a zone that starts at pfn 0 takes a cached free_pfn of 0 as it is.
        self.compact_cached_free_pfn = 0
        self.compact_cached_migrate_pfn = [0, 0]
        self.compact_considered = 0
        self.compact_defer_shift = 0
        self.compact_order_failed = 0
        self.compact_blockskip_flush = False
        # NR_ISOLATED_ANON/FILE: LRU pages only (BUG-3: never non-LRU movable pages)
        self.nr_isolated_lru = 0
        # NR_{IN,}ACTIVE_{ANON,FILE}: pages on the LRU lists (too_many_isolated)
        self.nr_lru = 0
        self._free_boot_memory()

    # --- lookups -------------------------------------------------------------------
    def pfn_to_page(self, pfn: int) -> Page:
        return self.pages[pfn - self.start_pfn]

    def page_address(self, page: Page) -> memoryview:
        """page_address(): the page's bytes, a writable view into zone memory."""
        ps = self.page_size
        off = (page.pfn - self.start_pfn) * ps
        return self.view[off:off + ps]

    def copy_page(self, dst: Page, src: Page) -> None:
        """copy_highpage(): copy one page's bytes (one memmove inside the zone's mapping,
        without the two views a slice copy makes: every migrated page copies once)."""
        ps = self.page_size
        start = self.start_pfn
        self.mem.move((dst.pfn - start) * ps, (src.pfn - start) * ps, ps)

    def pageblock_index(self, pfn: int) -> int:
        return (pfn - self.start_pfn) >> self.pageblock_order

    def get_pageblock_migratetype(self, pfn: int) -> int:
        return self.pageblock_mt[(pfn - self.start_pfn) >> self.pageblock_order]

    def set_pageblock_migratetype(self, pfn: int, mt: int) -> None:
        self.pageblock_mt[(pfn - self.start_pfn) >> self.pageblock_order] = mt

    def compound_head(self, page: Page) -> Page:
        """compound_head(): a tail page keeps its head in the first word (lru)."""
        return page.lru if page.flags & TAIL else page

    def compound_order(self, page: Page) -> int:
        """compound_order(): kept in the first tail page, as the kernel does."""
        if not page.flags & HEAD:
            return 0
        order: int = self.pages[page.pfn - self.start_pfn + 1].private
        return order

    def iter_pages(self, start: int | None = None, end: int | None = None) -> Iterator[Page]:
        lo = (self.start_pfn if start is None else start) - self.start_pfn
        hi = (self.end_pfn if end is None else end) - self.start_pfn
        return iter(self.pages[lo:hi])

    # --- free lists --------------------------------------------------------------------
    def _add_free(self, pfn: int, order: int, mt: int) -> None:
        """set_page_order() + list_add(): the block becomes the head of its list."""
        page = self.pages[pfn - self.start_pfn]
        page.flags = BUDDY
        page.private = order
        page.lru = mt
        self.free_area[order][mt][pfn] = None
        self.nr_free[order] += 1

    def _del_free(self, page: Page, order: int) -> None:
        self.free_area[order][page.lru].remove(page.pfn)
        self.nr_free[order] -= 1
        page.flags = 0
        page.private = 0
        page.lru = None

    def _move_free(self, page: Page, order: int, mt: int) -> None:
        """list_move(): to the head of another migratetype's list."""
        pfn = page.pfn
        self.free_area[order][page.lru].remove(pfn)
        page.lru = mt
        self.free_area[order][mt][pfn] = None

    def free_list_head(self, order: int, mt: int) -> int | None:
        """list_first_entry_or_null(): the pfn the allocator takes next from this list."""
        lst = self.free_area[order][mt]
        return next(reversed(lst)) if lst else None

    def _free_boot_memory(self) -> None:
        """__free_pages_memory(): every frame to the buddy allocator, largest aligned blocks
        first, each through __free_one_page as __free_pages_boot_core frees it."""
        order = self.max_order - 1
        pfn = self.start_pfn
        while pfn < self.end_pfn:
            o = order
            while o and (pfn & ((1 << o) - 1) or pfn + (1 << o) > self.end_pfn):
                o -= 1
            self._free_one_page(pfn, o, MigrateType.MOVABLE)
            pfn += 1 << o

    def _free_one_page(self, pfn: int, order: int, mt: int) -> None:
        """__free_one_page() (mm/page_alloc.c:831-934): merge with free buddies as far as
        they go; the result goes to the tail of its list when the buddy of the next order
        up is free, since the block is then likely to merge further soon."""
        pages = self.pages
        start = self.start_pfn
        n = self.nr_pages
        top = self.max_order - 1
        free_area = self.free_area
        nr_free = self.nr_free
        inside = self._buddies_inside
        size = 1 << order
        self.nr_free_pages += size
        # (plain comparisons, and `size` doubled rather than shifted: the cheaper operations
        # on ints, since every freed page comes here)
        while order < top:
            buddy_pfn = pfn ^ size
            bidx = buddy_pfn - start
            if not inside and (bidx < 0 or bidx >= n):
                break
            buddy = pages[bidx]
            flags = buddy.flags
            if (flags != BUDDY and not flags & BUDDY) or buddy.private != order:
                break
            # the buddy leaves its list (list_del, rmv_page_order): FreeList.remove, in place
            lst = free_area[order][buddy.lru]
            if lst.pop(buddy_pfn, _ABSENT) is _ABSENT:
                del lst.tail[buddy_pfn]
            elif not lst and lst.tail:
                lst._refill()
            nr_free[order] -= 1
            buddy.flags = 0
            buddy.private = 0
            buddy.lru = None
            if buddy_pfn < pfn:
                pfn = buddy_pfn
            order += 1
            size += size
        page = pages[pfn - start]
        page.flags = BUDDY
        page.private = order
        page.lru = mt
        nr_free[order] += 1
        # done_merging: is the buddy of our order+1 parent free at order+1?
        if order < top - 1:
            hidx = ((pfn & ~size) ^ (size + size)) - start
            if inside or (hidx >= 0 and hidx < n):
                higher = pages[hidx]
                if higher.flags & BUDDY and higher.private == order + 1:
                    lst = free_area[order][mt]
                    if lst:                             # FreeList.add_tail(), in place
                        lst.tail[pfn] = None
                    else:
                        lst[pfn] = None
                    return
        free_area[order][mt][pfn] = None                  # list_add

    def _expand(self, pfn: int, low: int, high: int, mt: int) -> None:
        """expand(): give back the upper halves of a block split down to `low`."""
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._add_free(pfn + size, high, mt)

    def _rmqueue_smallest(self, order: int, mt: int) -> int | None:
        """__rmqueue_smallest(): the smallest free block of this migratetype that fits."""
        free_area = self.free_area
        for o in range(order, self.max_order):
            lst = free_area[o][mt]
            if lst:
                pfn = lst.pop_head()
                page = self.pages[pfn - self.start_pfn]
                self.nr_free[o] -= 1
                page.flags = 0
                page.private = 0
                page.lru = None
                self._expand(pfn, order, o, mt)
                return pfn
        return None

    def can_steal_fallback(self, order: int, start_mt: int) -> bool:
        """can_steal_fallback() (mm/page_alloc.c:2389-2408): may the whole block be taken?"""
        return (order >= self.pageblock_order or order >= self.pageblock_order // 2
                or start_mt in (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE))

    def find_suitable_fallback(self, order: int, migratetype: int,
                               only_stealable: bool) -> tuple[int, bool]:
        """find_suitable_fallback() (mm/page_alloc.c:2504-2533): (fallback type or -1, can_steal).

        The first fallbacks[] type with a free block of `order`; with `only_stealable`
        only if the whole block could be stolen.
        """
        if not self.nr_free[order]:
            return -1, False
        area = self.free_area[order]
        can_steal = False
        for mt in FALLBACKS.get(migratetype, ()):
            if not area[mt]:
                continue
            if self.can_steal_fallback(order, migratetype):
                can_steal = True
            if not only_stealable or can_steal:
                return mt, can_steal
        return -1, can_steal

    def _rmqueue_fallback(self, order: int, start_mt: int) -> bool:
        """__rmqueue_fallback() (mm/page_alloc.c:2673-2748): steal from another migratetype,
        the largest block first; a movable request that cannot take the whole block
        splits the smallest instead (find_smallest)."""
        for current in range(self.max_order - 1, order - 1, -1):
            fallback_mt, can_steal = self.find_suitable_fallback(current, start_mt, False)
            if fallback_mt == -1:
                continue
            if not can_steal and start_mt == MigrateType.MOVABLE and current > order:
                for current in range(order, self.max_order):
                    fallback_mt, can_steal = self.find_suitable_fallback(current, start_mt,
                                                                         False)
                    if fallback_mt != -1:
                        break
            break
        else:
            return False
        pfn = self.free_list_head(current, fallback_mt)
        assert pfn is not None
        self._steal_suitable_fallback(pfn, start_mt, can_steal)
        return True

    def _steal_suitable_fallback(self, pfn: int, start_type: int, whole_block: bool) -> None:
        """steal_suitable_fallback() (mm/page_alloc.c:2427-2496): move the block's free pages,
        and claim the pageblock when at least half of it is free or alike.

        "Alike" is the kernel's count: for a movable request the movable pages; for
        another request in a MOVABLE block every page neither free nor movable; else 0.
        """
        page = self.pages[pfn - self.start_pfn]
        current_order = page.private
        old_block_type = self.get_pageblock_migratetype(pfn)
        if old_block_type != MigrateType.HIGHATOMIC:
            if current_order >= self.pageblock_order:
                # change_pageblock_range(): the whole run of pageblocks changes type
                for i in range(1 << (current_order - self.pageblock_order)):
                    self.set_pageblock_migratetype(pfn + i * self.pageblock_nr_pages, start_type)
            elif whole_block:
                free_pages, movable_pages = self._move_freepages_block(pfn, start_type)
                if start_type == MigrateType.MOVABLE:
                    alike_pages = movable_pages
                elif old_block_type == MigrateType.MOVABLE:
                    alike_pages = self.pageblock_nr_pages - (free_pages + movable_pages)
                else:
                    alike_pages = 0
                if free_pages:
                    if free_pages + alike_pages >= 1 << (self.pageblock_order - 1):
                        self.set_pageblock_migratetype(pfn, start_type)
                    return
        # single_page:
        self._move_free(page, current_order, start_type)

    def _move_freepages_block(self, pfn: int, mt: int) -> tuple[int, int]:
        """move_freepages_block() + move_freepages() (mm/page_alloc.c:2261-2351): every free
        block of the pageblock to the head of `mt`'s lists.

        Returns (free pages moved, pages in use that PageLRU or __PageMovable says
        could be migrated: num_movable, counted without trying to isolate them).
        A pageblock the zone does not span to its end moves nothing, and one that
        begins before the zone is moved from `pfn` on (do not cross zone boundaries).
        """
        pb = self.pageblock_nr_pages
        start = pfn & ~(pb - 1)
        if start + pb - 1 >= self.zone_end_pfn:
            return 0, 0
        idx = (start if start >= self.zone_start_pfn else pfn) - self.start_pfn
        end = start - self.start_pfn + pb
        moved = movable = 0
        pages = self.pages
        while idx < end:
            page = pages[idx]
            flags = page.flags
            if flags & BUDDY:
                order = page.private
                self._move_free(page, order, mt)
                moved += 1 << order
                idx += 1 << order
                continue
            # PageLRU() looks at the head of a compound page; __PageMovable at the page itself
            lru = page.lru.flags & LRU if flags & TAIL else flags & LRU
            if lru or page.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE:
                movable += 1
            idx += 1
        return moved, movable

    # --- the LRU lists (mm/swap.c, mm/vmscan.c), as far as compaction looks at them ------
    def lru_add(self, page: Page) -> None:
        """lru_cache_add() + __pagevec_lru_add(): PG_lru set, one more page on the LRU."""
        page.flags |= LRU
        self.nr_lru += 1

    def lru_del(self, page: Page) -> None:
        """del_page_from_lru_list() + ClearPageLRU()."""
        page.flags &= ~LRU
        self.nr_lru -= 1

    # --- allocation --------------------------------------------------------------------
    def watermark_ok(self, order: int, mark: int, free_pages: int | None = None) -> bool:
        """__zone_watermark_ok() (mm/page_alloc.c:3515-3597): more than `mark` free pages
        (NR_FREE_PAGES unless given), and a free block of `order` or more in a list a
        normal allocation may use."""
        free = (self.nr_free_pages if free_pages is None else free_pages) - ((1 << order) - 1)
        if free <= mark:
            return False
        if not order:
            return True
        free_area = self.free_area
        for o in range(order, self.max_order):
            area = free_area[o]
            for mt in PCPTYPES:
                if area[mt]:
                    return True
        return False

    def alloc_pages(self, order: int, gfp: int, *, ignore_watermark: bool = False) -> Page | None:
        """alloc_pages() without reclaim: a refcounted block of 2^order pages, or None.

        An order-0 allocation may not take the zone below its min watermark
        (ALLOC_WMARK_MIN); direct compaction is the caller's to try.
        """
        if not order:
            return self._alloc_page(gfp, ignore_watermark)
        if not ignore_watermark and not self.watermark_ok(order, self.wmark_min):
            return None
        mt = gfp_migratetype(gfp)
        if mt is MigrateType.HIGHATOMIC:
            self._warn_both_mobility_bits(gfp)
        # __rmqueue(): after a successful steal the request is retried from the top
        pfn = self._rmqueue_smallest(order, mt)
        while pfn is None:
            if not self._rmqueue_fallback(order, mt):
                return None
            pfn = self._rmqueue_smallest(order, mt)
        self.nr_free_pages -= 1 << order
        page = self.pages[pfn - self.start_pfn]
        # prep_new_page(): set_page_refcounted(), fresh flags and fields
        page._refcount = 1
        page.mapping = 0
        if order and gfp & GFP_COMP:
            self._prep_compound_page(page, order)
        return page

    def _alloc_page(self, gfp: int, ignore_watermark: bool) -> Page | None:
        """alloc_pages() of order 0, the most frequent request, written out: the same
        watermark check, the same block taken from the same list and split the same way."""
        if not ignore_watermark and self.nr_free_pages <= self.wmark_min:
            return None
        mt = gfp_migratetype(gfp)
        if mt is MigrateType.HIGHATOMIC:
            self._warn_both_mobility_bits(gfp)
        pages = self.pages
        start = self.start_pfn
        lst = self.free_area[0][mt]
        pfn: int | None
        if lst:
            # an order-0 block: the usual case once the zone is in use
            pfn = lst.popitem()[0]
            if not lst and lst.tail:
                lst._refill()
            self.nr_free[0] -= 1
        else:
            pfn = self._rmqueue_smallest(0, mt)
            while pfn is None:
                if not self._rmqueue_fallback(0, mt):
                    return None
                pfn = self._rmqueue_smallest(0, mt)
        self.nr_free_pages -= 1
        page: Page = pages[pfn - start]
        # prep_new_page(): set_page_refcounted(), fresh flags and fields
        page.flags = 0
        page.private = 0
        page.lru = None
        page._refcount = 1
        page.mapping = 0
        return page

    def _warn_both_mobility_bits(self, gfp: int) -> None:
        """gfpflags_to_migratetype()'s VM_WARN_ON (include/linux/gfp.h:313): the request
        goes on as MIGRATE_HIGHATOMIC.  v4.19 sends an order-0 one to the per-CPU list of
        that index, past the end of pcp->lists; the model, without per-CPU lists, serves
        it from the buddy lists as any other."""
        self.vm.warn_once("VM_WARN_ON", f"gfp {gfp:#x} has both __GFP_MOVABLE and "
                          "__GFP_RECLAIMABLE: gfpflags_to_migratetype() gives "
                          "MIGRATE_HIGHATOMIC")

    def _prep_compound_page(self, head: Page, order: int) -> None:
        head.flags |= HEAD
        base = head.pfn - self.start_pfn
        for i in range(1, 1 << order):
            tail = self.pages[base + i]
            tail.flags = TAIL
            tail.lru = head
        self.pages[base + 1].private = order

    # --- freeing --------------------------------------------------------------------------
    def release_page(self, page: Page) -> None:
        """__put_page(): the last reference is gone; free the page or compound page."""
        if page.flags & HEAD:
            order = self.compound_order(page)
            base = page.pfn - self.start_pfn
            for i in range(1, 1 << order):
                tail = self.pages[base + i]
                tail.flags = 0
                tail.lru = None
                tail.private = 0
            page.flags &= ~HEAD
            self.free_pages(page, order)
        else:
            self.free_pages(page, 0)

    def free_pages(self, page: Page, order: int) -> None:
        """__free_pages_ok(): free_pages_prepare() checks, then merge into the buddy lists."""
        if page.mapping & PAGE_MAPPING_FLAGS:
            # free_pages_prepare(): anon and movable words are cleared by the free path
            page.mapping = 0
        if page.flags & BAD_AT_FREE or page.mapping or page._refcount:
            _bad_page_at_free(page)
        page.flags = 0
        page.private = 0
        page.lru = None
        pfn = page.pfn
        block = (pfn - self.start_pfn) >> self.pageblock_order
        self._free_one_page(pfn, order, self.pageblock_mt[block])

    def isolate_free_page(self, page: Page, order: int) -> int:
        """__isolate_free_page(): take a free block off its list for compaction.

        Refuses below min watermark + the block; a block of half a pageblock
        or more claims its pageblock(s) for MOVABLE.
        """
        # __zone_watermark_ok() of order 0 is the free count alone: in place
        if self.nr_free_pages <= self.wmark_min + (1 << order):
            return 0
        # _del_free(), with FreeList.remove(), in place
        lst = self.free_area[order][page.lru]
        pfn = page.pfn
        if lst.pop(pfn, _ABSENT) is _ABSENT:
            del lst.tail[pfn]
        elif not lst and lst.tail:
            lst._refill()
        self.nr_free[order] -= 1
        page.flags = 0
        page.private = 0
        page.lru = None
        self.nr_free_pages -= 1 << order
        if order >= self.pageblock_order - 1:
            end = page.pfn + (1 << order)
            pfn = page.pfn
            while pfn < end:
                if self.get_pageblock_migratetype(pfn) < MigrateType.HIGHATOMIC:
                    self.set_pageblock_migratetype(pfn, MigrateType.MOVABLE)
                pfn += self.pageblock_nr_pages
        return 1 << order

    def split_free_block(self, page: Page, order: int) -> list[Page]:
        """split_page() of an isolated free block: 2^order refcounted order-0 pages."""
        base = page.pfn - self.start_pfn
        out = self.pages[base:base + (1 << order)]
        for p in out:
            p._refcount = 1
            p.flags = 0
            p.private = 0
            p.lru = None
            p.mapping = 0
        return out

    # --- accounting -------------------------------------------------------------------------
    def buddyinfo(self) -> list[int]:
        """nr_free per order, as /proc/buddyinfo prints it."""
        return list(self.nr_free)

    def free_counts_by_type(self) -> list[list[int]]:
        """[migratetype][order] free block counts (/proc/pagetypeinfo)."""
        return [[self.free_area[o][mt].size() for o in range(self.max_order)]
                for mt in range(NR_MIGRATETYPES)]

    def check_free_lists(self) -> None:
        """Walk the free lists and the frames: every count must agree (tests, storms)."""
        total = 0
        for o in range(self.max_order):
            n = 0
            for mt in range(NR_MIGRATETYPES):
                for pfn in self.free_area[o][mt]:
                    page = self.pages[pfn - self.start_pfn]
                    assert page.flags & BUDDY and page.private == o and page.lru == mt, page
                    assert page._refcount == 0, page
                    n += 1
            assert n == self.nr_free[o], (o, n, self.nr_free[o])
            total += n << o
        assert total == self.nr_free_pages, (total, self.nr_free_pages)

    def count_compound_tails(self) -> int:
        return sum(1 for p in self.pages if p.flags & COMPOUND == TAIL)
