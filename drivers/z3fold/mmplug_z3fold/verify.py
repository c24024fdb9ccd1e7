"""Internal invariants of a quiescent pool (instance.verify()).

Checked: chunk accounting of every header (buddies inside the page, in
order, not overlapping), list membership (unbuddied list index = free
chunks unless compaction is pending; stale pages on the stale list; LRU
exactly the pages that are neither isolated nor stale nor being released),
the kref (live buddies + isolation + pending compaction work), handle slots
(every live handle resolves to a distinct buddy big enough for its object,
foreign handles counted), and the mapping word (every shared page movable
with the pool's mapping, isolated or not; headless pages never movable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmplug.kernel import PAGE_MAPPING_MOVABLE, page_isolated

from .access import z3fold_map, z3fold_unmap
from .flags import NEEDS_COMPACTING, PAGE_HEADLESS, PAGE_STALE, Buddy, describe_flags, test_bit
from .handles import handle_to_buddy, handle_to_z3fold_header, is_headless_handle
from .alloc import num_free_chunks

if TYPE_CHECKING:
    from .instance import Z3fold


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def verify_pool(pool: "Z3fold") -> None:
    geo = pool.geometry
    movable_word = pool.mapping.handle | PAGE_MAPPING_MOVABLE
    live_buddies: dict[int, int] = {}
    seen: set[tuple[int, Buddy]] = set()
    foreign: dict[int, int] = {}
    for handle, length in list(pool.objects.items()):
        if is_headless_handle(handle):
            page = pool.virt_to_page(handle & geo.page_mask)
            _check(page.pfn in pool.headless, f"headless handle {handle:#x}: pfn {page.pfn:#x} "
                   "is not a headless page of the pool")
            _check(length > geo.headless_above, f"headless object of {length} bytes would fit a "
                   "shared page")
            continue
        zhdr = handle_to_z3fold_header(pool, handle)
        _check(pool.headers.get(zhdr.page.pfn) is zhdr, f"handle {handle:#x} points at a header "
               "the pool does not own")
        bud = handle_to_buddy(pool, handle)
        key = (zhdr.page.pfn, bud)
        _check(key not in seen, f"two live handles point at {bud.name} of pfn {zhdr.page.pfn:#x}")
        seen.add(key)
        chunks = {Buddy.FIRST: zhdr.first_chunks, Buddy.MIDDLE: zhdr.middle_chunks,
                  Buddy.LAST: zhdr.last_chunks}.get(bud, 0)
        _check(chunks >= geo.size_to_chunks(length), f"handle {handle:#x}: {bud.name} of pfn "
               f"{zhdr.page.pfn:#x} has {chunks} chunks for {length} bytes")
        live_buddies[zhdr.page.pfn] = live_buddies.get(zhdr.page.pfn, 0) + 1
        if pool.slots_cache.lookup(handle) is not zhdr.slots:
            foreign[zhdr.page.pfn] = foreign.get(zhdr.page.pfn, 0) + 1
        addr = z3fold_map(pool, handle)
        z3fold_unmap(pool, handle)
        off = addr & ~geo.page_mask
        _check(off + length <= geo.page_size, f"handle {handle:#x} maps past its page")
    for pfn, page in list(pool.headless.items()):
        _check(test_bit(PAGE_HEADLESS, page), f"headless pfn {pfn:#x} lacks PAGE_HEADLESS")
        _check(page.mapping == 0, f"headless pfn {pfn:#x} has a mapping word {page.mapping:#x}")
    nr_live_pages = len(pool.headless)
    for pfn, zhdr in list(pool.headers.items()):
        page = zhdr.page
        where = f"pfn {pfn:#x} ({describe_flags(page.private)})"
        _check(page.pfn == pfn and not zhdr.freed, f"{where}: header registered under a wrong pfn")
        _check(page.mapping == movable_word, f"{where}: mapping word {page.mapping:#x} is not the "
               "pool's movable mapping")
        first_end = geo.zhdr_chunks + zhdr.first_chunks
        last_start = geo.total_chunks - zhdr.last_chunks
        _check(first_end <= last_start, f"{where}: FIRST and LAST overlap")
        if zhdr.middle_chunks:
            _check(zhdr.start_middle >= first_end, f"{where}: MIDDLE overlaps FIRST")
            _check(zhdr.start_middle + zhdr.middle_chunks <= last_start,
                   f"{where}: MIDDLE overlaps LAST")
        stale = test_bit(PAGE_STALE, page)
        if stale:
            _check(zhdr.buddy is pool.stale, f"{where}: stale page not on the stale list")
            _check(not pool.lru.holds(page), f"{where}: stale page on the LRU")
            continue
        nr_live_pages += 1
        isolated = page_isolated(page)
        pending = zhdr.work is not None and zhdr.work.pending
        expected = live_buddies.get(pfn, 0) + isolated + pending
        _check(zhdr.refcount == expected, f"{where}: kref {zhdr.refcount}, expected "
               f"{live_buddies.get(pfn, 0)} objects + {int(isolated)} isolation + "
               f"{int(pending)} pending work")
        _check(zhdr.foreign_handles >= foreign.get(pfn, 0), f"{where}: {foreign.get(pfn, 0)} "
               f"foreign handles point here but foreign_handles is {zhdr.foreign_handles}")
        if isolated:
            _check(not pool.lru.holds(page), f"{where}: isolated page still on the pool LRU")
        else:
            _check(pool.lru.holds(page), f"{where}: page is on no list of the pool (LRU)")
        if zhdr.buddy is not None:
            lists = pool.unbuddied.get(zhdr.cpu)
            _check(lists is not None and zhdr.buddy in lists,
                   f"{where}: on {zhdr.buddy.name} but cpu is {zhdr.cpu}")
            idx = lists.index(zhdr.buddy)
            _check(idx == num_free_chunks(pool, zhdr) or test_bit(NEEDS_COMPACTING, page),
                   f"{where}: on unbuddied[{idx}] with {num_free_chunks(pool, zhdr)} free chunks")
            _check(not (zhdr.first_chunks and zhdr.middle_chunks and zhdr.last_chunks),
                   f"{where}: a full page on an unbuddied list")
    _check(pool.pages_nr == nr_live_pages, f"pages_nr {pool.pages_nr} but the pool holds "
           f"{nr_live_pages} live pages")
    _check(len(pool.lru) == sum(1 for p in pool.lru.pages if p.lru is pool.lru),
           "the LRU lists a page whose lru is elsewhere")
