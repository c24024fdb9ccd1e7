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

from .alloc import num_free_chunks
from .flags import (
    BUDDY_MASK,
    BUDDY_SHIFT,
    FIRST,
    LAST,
    MIDDLE,
    NEEDS_COMPACTING,
    PAGE_HEADLESS,
    PAGE_STALE,
    Buddy,
    describe_flags,
    test_bit,
)
from .geometry import DIRECT_MAP
from .handles import (
    _BUDDY,
    _SLOT_OFFSET,
    _SLOT_WORD,
    SLOTS_SHIFT,
    handle_to_buddy,
    handle_to_chunks,
    handle_to_z3fold_header,
    is_headless_handle,
)

if TYPE_CHECKING:
    from mmplug import Page

    from .header import Z3foldHeader
    from .instance import Z3fold


def _fail(message: str) -> None:
    raise AssertionError(message)


# Every check tests its condition first and builds its message only when it
# fails: a pool of a million objects is checked without a string per object.

def _read_uncontended(pool: Z3fold, handle: int) -> tuple[Z3foldHeader, int] | None:
    """The header a handle's slot points at and the slot's value, read once, where on one
    CPU the read lock would be taken at once and the header exists; None for the
    caller to take handle_to_z3fold_header() and friends (which lock, warn or raise)."""
    slots = pool.slots_cache.live.get(handle >> SLOTS_SHIFT)
    if slots is None or slots.lock.writer:
        return None
    value = slots.slot[(handle & _SLOT_OFFSET) // _SLOT_WORD]
    geo = pool.geometry
    zhdr = pool.headers.get(((value & geo.page_mask) - DIRECT_MAP) // geo.page_size)
    return None if zhdr is None else (zhdr, value)


def verify_pool(pool: Z3fold) -> None:
    geo = pool.geometry
    page_mask = geo.page_mask
    movable_word = pool.mapping.handle | PAGE_MAPPING_MOVABLE
    live_buddies: dict[int, int] = {}
    seen: set[tuple[int, Buddy]] = set()
    foreign: dict[int, int] = {}
    headers = pool.headers
    lookup = pool.slots_cache.lookup
    live_slots = pool.slots_cache.live
    one_cpu = pool.uniprocessor
    for handle, length in list(pool.objects.items()):
        if is_headless_handle(handle):
            page = pool.virt_to_page(handle & page_mask)
            if page.pfn not in pool.headless:
                _fail(f"headless handle {handle:#x}: pfn {page.pfn:#x} is not a headless page "
                      "of the pool")
            if length <= geo.headless_above:
                _fail(f"headless object of {length} bytes would fit a shared page")
            continue
        found = _read_uncontended(pool, handle) if one_cpu else None
        if found is None:
            zhdr = handle_to_z3fold_header(pool, handle)
            slot_value = None
        else:
            zhdr, slot_value = found
        pfn = zhdr.page.pfn
        if headers.get(pfn) is not zhdr:
            _fail(f"handle {handle:#x} points at a header the pool does not own")
        bud = (handle_to_buddy(pool, handle) if slot_value is None
               else _BUDDY[(slot_value - zhdr.first_num) & BUDDY_MASK])
        key = (pfn, bud)
        if key in seen:
            _fail(f"two live handles point at {bud.name} of pfn {pfn:#x}")
        seen.add(key)
        chunks = (zhdr.first_chunks if bud == FIRST else zhdr.middle_chunks
                  if bud == MIDDLE else zhdr.last_chunks if bud == LAST else 0)
        if chunks < geo.size_to_chunks(length):
            _fail(f"handle {handle:#x}: {bud.name} of pfn {pfn:#x} has {chunks} chunks for "
                  f"{length} bytes")
        live_buddies[pfn] = live_buddies.get(pfn, 0) + 1
        if (lookup(handle) if slot_value is None else live_slots[handle >> SLOTS_SHIFT]) \
                is not zhdr.slots:
            foreign[pfn] = foreign.get(pfn, 0) + 1
        # where z3fold_map() would put the object, without mapping it (a map
        # would count, and an unmap clear MIDDLE_CHUNK_MAPPED of a held map)
        if bud == FIRST:
            off = geo.zhdr_size_aligned
        elif bud == MIDDLE:
            off = zhdr.start_middle << geo.chunk_shift
        else:
            last = (handle_to_chunks(pool, handle) if slot_value is None
                    else (slot_value & ~page_mask) >> BUDDY_SHIFT)
            off = geo.page_size - (last << geo.chunk_shift)
        if off + length > geo.page_size:
            _fail(f"handle {handle:#x} maps past its page")
    for pfn, page in list(pool.headless.items()):
        if not test_bit(PAGE_HEADLESS, page):
            _fail(f"headless pfn {pfn:#x} lacks PAGE_HEADLESS")
        if page.mapping != 0:
            _fail(f"headless pfn {pfn:#x} has a mapping word {page.mapping:#x}")
    nr_live_pages = len(pool.headless)
    #: cpu -> unbuddied list -> its index (free chunks): one lookup per header, not a scan
    positions = {cpu: {lst: i for i, lst in enumerate(lists)}
                 for cpu, lists in pool.unbuddied.items()}
    for pfn, zhdr in list(headers.items()):
        page = zhdr.page

        def where(pfn: int = pfn, page: Page = page) -> str:
            return f"pfn {pfn:#x} ({describe_flags(page.private)})"

        if page.pfn != pfn or zhdr.freed:
            _fail(f"{where()}: header registered under a wrong pfn")
        if page.mapping != movable_word:
            _fail(f"{where()}: mapping word {page.mapping:#x} is not the pool's movable mapping")
        first_end = geo.zhdr_chunks + zhdr.first_chunks
        last_start = geo.total_chunks - zhdr.last_chunks
        if first_end > last_start:
            _fail(f"{where()}: FIRST and LAST overlap")
        if zhdr.middle_chunks:
            if zhdr.start_middle < first_end:
                _fail(f"{where()}: MIDDLE overlaps FIRST")
            if zhdr.start_middle + zhdr.middle_chunks > last_start:
                _fail(f"{where()}: MIDDLE overlaps LAST")
        if test_bit(PAGE_STALE, page):
            if zhdr.buddy is not pool.stale:
                _fail(f"{where()}: stale page not on the stale list")
            if pool.lru.holds(page):
                _fail(f"{where()}: stale page on the LRU")
            continue
        nr_live_pages += 1
        isolated = page_isolated(page)
        pending = zhdr.work is not None and zhdr.work.pending
        buddies = live_buddies.get(pfn, 0)
        if zhdr.refcount != buddies + isolated + pending:
            _fail(f"{where()}: kref {zhdr.refcount}, expected {buddies} objects + "
                  f"{int(isolated)} isolation + {int(pending)} pending work")
        if zhdr.foreign_handles < foreign.get(pfn, 0):
            _fail(f"{where()}: {foreign.get(pfn, 0)} foreign handles point here but "
                  f"foreign_handles is {zhdr.foreign_handles}")
        if isolated:
            if pool.lru.holds(page):
                _fail(f"{where()}: isolated page still on the pool LRU")
        elif not pool.lru.holds(page):
            _fail(f"{where()}: page is on no list of the pool (LRU)")
        if zhdr.buddy is not None:
            idx = positions.get(zhdr.cpu, {}).get(zhdr.buddy)
            if idx is None:
                _fail(f"{where()}: on {zhdr.buddy.name} but cpu is {zhdr.cpu}")
            free_chunks = num_free_chunks(pool, zhdr)
            if idx != free_chunks and not test_bit(NEEDS_COMPACTING, page):
                _fail(f"{where()}: on unbuddied[{idx}] with {free_chunks} free chunks")
            if zhdr.first_chunks and zhdr.middle_chunks and zhdr.last_chunks:
                _fail(f"{where()}: a full page on an unbuddied list")
    if pool.pages_nr != nr_live_pages:
        _fail(f"pages_nr {pool.pages_nr} but the pool holds {nr_live_pages} live pages")
    if len(pool.lru) != sum(1 for p in pool.lru.pages if p.lru is pool.lru):
        _fail("the LRU lists a page whose lru is elsewhere")
