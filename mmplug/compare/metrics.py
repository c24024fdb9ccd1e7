"""Metrics of a run: zone snapshots, blocking pageblocks, the compaction ceiling, cost.

- Snapshots hold what /proc/buddyinfo, /proc/pagetypeinfo and
  /sys/kernel/debug/extfrag/{unusable_index,extfrag_index} would show
  (mm/vmstat.c: frag_show_print, pagetypeinfo_showfree_print,
  pagetypeinfo_showblockcount_print, unusable_show_print, extfrag_show_print).
- Blocking pageblocks: after the run every pageblock that is not free is
  given the first cause that applies, in the order a kernel developer would
  look: an unmovable page in it, a driver page that is not movable at all, a
  page its driver refused to isolate, a permanent migration failure, a page
  still answering -EAGAIN, else it was a compaction target or never reached.
- The ceiling is how many order-9 blocks this population could give at
  best: pageblocks without an unmovable page, minus the blocks their
  movable pages need once the free pages beside unmovable pages are used as
  targets too (suitable_migration_target takes any pageblock at
  MIN_COMPACT_PRIORITY), so it is an upper bound on what compaction gets.
- Cost follows Mel Gorman's model from the commit that added
  compact_migrate_scanned / compact_free_scanned / compact_isolated
  ("mm: compaction: Add scanned and isolated counters for compaction", 2012).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from attrs import frozen

from ..page import PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE
from ..vmstat import format_index, fragmentation_index, unusable_free_index
from .probe import EAGAIN_LAST, PERMANENT, REFUSED

if TYPE_CHECKING:
    from ..vm import VM

# Owner codes of the zone map, one byte per page.
FREE, DRIVER, LRU, SLAB, HELD, OTHER = range(6)
OWNER_NAMES = ("free", "driver", "lru", "slab", "held", "other")

#: blocking causes, in the order they are tested
CAUSES = (
    "unmovable",            # slab, held allocations or unknown pages
    "driver_not_movable",   # a driver page without PAGE_MAPPING_MOVABLE (never made movable)
    "refused_isolation",    # isolate_page() returned false on its last try
    "permanent_failure",    # migratepage() returned an error other than -EAGAIN
    "eagain_until_end",     # migratepage() still returned -EAGAIN (pinned, busy)
    "target_or_not_reached",  # holds migrated pages, or compaction never got there
)

#: Gorman's cost model: the unit is a word, sizeof(struct page) = 64 bytes on x86-64.
WORD = 8
STRUCT_PAGE = 64
#: Wi, the cost of the isolation's locking, in words: a lock and an unlock round trip.
ISOLATE_LOCK_WORDS = 16


@frozen(slots=True)
class Snapshot:
    """The free-memory view of a zone at one moment."""

    buddyinfo: tuple[int, ...]
    free_by_type: tuple[tuple[int, ...], ...]
    blocks_by_type: tuple[int, ...]
    nr_free_pages: int
    owners: bytes | None = None

    @property
    def unusable(self) -> list[int]:
        return [unusable_free_index(list(self.buddyinfo), o) for o in range(len(self.buddyinfo))]

    @property
    def extfrag(self) -> list[int]:
        return [fragmentation_index(list(self.buddyinfo), o) for o in range(len(self.buddyinfo))]

    def free_blocks_of(self, order: int) -> int:
        """Free blocks of `order` the free lists could give: Σ nr_free[o]·2^(o-order)."""
        return sum(n << (o - order) for o, n in enumerate(self.buddyinfo) if o >= order)

    def as_dict(self) -> dict[str, Any]:
        nr_free = list(self.buddyinfo)
        out: dict[str, Any] = {
            "buddyinfo": nr_free,
            "nr_free_pages": self.nr_free_pages,
            "free_pageblocks": self.free_blocks_of(9) if len(nr_free) > 9 else 0,
            "free_by_migratetype": [list(r) for r in self.free_by_type],
            "pageblocks_by_migratetype": list(self.blocks_by_type),
        }
        for order in (3, 9):
            if order < len(nr_free):
                out[f"unusable_index_{order}"] = format_index(unusable_free_index(nr_free, order))
                out[f"extfrag_index_{order}"] = format_index(fragmentation_index(nr_free, order))
        return out


def take_snapshot(vm: VM, owners: bytes | None = None) -> Snapshot:
    zone = vm.zone
    counts = [0] * 6
    for mt in zone.pageblock_mt:
        counts[mt] += 1
    return Snapshot(
        buddyinfo=tuple(zone.buddyinfo()),
        free_by_type=tuple(tuple(r) for r in zone.free_counts_by_type()),
        blocks_by_type=tuple(counts),
        nr_free_pages=zone.nr_free_pages,
        owners=owners,
    )


def owner_map(vm: VM, driver_pfns: Iterable[int], lru_pfns: Iterable[int],
              slab_pfns: Iterable[int], held: Iterable[tuple[int, int]]) -> bytearray:
    """One byte per page: who holds it (FREE, DRIVER, LRU, SLAB, HELD, OTHER).

    Free blocks are painted from the free lists and users from their own
    records, so the cost is the pages in use, not a walk of every frame.
    """
    zone = vm.zone
    start = zone.start_pfn
    codes = bytearray([OTHER]) * zone.nr_pages
    for order, areas in enumerate(zone.free_area):
        size = 1 << order
        blank = bytes(size)
        for area in areas:
            for pfn in area:
                i = pfn - start
                codes[i:i + size] = blank
    for pfn in driver_pfns:
        codes[pfn - start] = DRIVER
    for pfn in lru_pfns:
        codes[pfn - start] = LRU
    for pfn in slab_pfns:
        codes[pfn - start] = SLAB
    for pfn, order in held:
        i = pfn - start
        codes[i:i + (1 << order)] = bytes([HELD]) * (1 << order)
    return codes


def blocking_pageblocks(vm: VM, owners: bytes, last: dict[int, str],
                        held: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """Why every pageblock that is not free stayed busy; the ceiling and the efficiency."""
    zone = vm.zone
    pb = zone.pageblock_nr_pages
    start = zone.start_pfn
    pages = zone.pages
    nr_blocks = zone.nr_pages // pb
    causes = dict.fromkeys(CAUSES, 0)
    free_blocks = held_blocks = 0
    movable_outside = 0
    unmovable_blocks = 0
    free_beside_unmovable = 0
    last_by_block: dict[int, set[str]] = {}
    for pfn, what in last.items():
        i = pfn - start
        if 0 <= i < zone.nr_pages and owners[i] == DRIVER:
            last_by_block.setdefault(i // pb, set()).add(what)
    held_whole = {(pfn - start) // pb for pfn, order in held if order >= zone.pageblock_order}
    for b in range(nr_blocks):
        lo = b * pb
        block = owners[lo:lo + pb]
        if block.count(FREE) == pb:
            free_blocks += 1
            continue
        if b in held_whole and block.count(HELD) == pb:
            held_blocks += 1
            continue
        n_driver = block.count(DRIVER)
        n_lru = block.count(LRU)
        unmovable = block.count(SLAB) or block.count(HELD) or block.count(OTHER)
        not_movable = False
        if not unmovable and n_driver:
            for i in range(lo, lo + pb):
                if owners[i] == DRIVER and (pages[i].mapping & PAGE_MAPPING_FLAGS
                                            != PAGE_MAPPING_MOVABLE):
                    not_movable = True
                    break
        if unmovable or not_movable:
            unmovable_blocks += 1
            free_beside_unmovable += block.count(FREE)
            causes["unmovable" if unmovable else "driver_not_movable"] += 1
            continue
        movable_outside += n_driver + n_lru
        seen = last_by_block.get(b, ())
        if REFUSED in seen:
            causes["refused_isolation"] += 1
        elif PERMANENT in seen:
            causes["permanent_failure"] += 1
        elif EAGAIN_LAST in seen:
            causes["eagain_until_end"] += 1
        else:
            causes["target_or_not_reached"] += 1
    obtained = free_blocks + held_blocks
    # Movable pages must live somewhere: in the pageblocks not emptied, or in the
    # free pages of the pageblocks that can never be emptied.
    must_fill = max(0, movable_outside - free_beside_unmovable)
    ceiling = nr_blocks - unmovable_blocks - math.ceil(must_fill / pb)
    return {
        "pageblocks": nr_blocks,
        "free_pageblocks": free_blocks,
        "held_pageblocks": held_blocks,
        "blocking": sum(causes.values()),
        "blocking_by_cause": causes,
        "ceiling": ceiling,
        "obtained": obtained,
        "efficiency": round(obtained / ceiling, 4) if ceiling else None,
    }


def gorman_cost(events: dict[str, int], page_size: int) -> dict[str, int]:
    """The 2012 cost model, in words, from the vmstat counters."""
    ca = STRUCT_PAGE // WORD
    cmc = (ca + page_size // WORD) * 2
    cmf = ca * 2
    ci = ca + ISOLATE_LOCK_WORDS
    parts = {
        "migrate_scanning": ca * events.get("compact_migrate_scanned", 0),
        "free_scanning": ca * events.get("compact_free_scanned", 0),
        "isolation": ci * events.get("compact_isolated", 0),
        "migrate_copy": cmc * events.get("pgmigrate_success", 0),
        "migrate_failure": cmf * events.get("pgmigrate_fail", 0),
    }
    parts["total"] = sum(parts.values())
    return parts


# --- several seeds: mean and spread --------------------------------------------------

def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists index as a.0, a.1."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = tree
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per numeric metric over runs: mean, stdev (sample), min, max, n."""
    flats = [flatten(r) for r in runs]
    keys: list[str] = []
    for f in flats:
        for k in f:
            if k not in keys:
                keys.append(k)
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        values = [f[k] for f in flats if k in f]
        maybe = [_number(v) for v in values]
        nums = [n for n in maybe if n is not None]
        if not nums or len(nums) != len(maybe):
            continue
        out[k] = {
            "mean": round(statistics.fmean(nums), 4),
            "stdev": round(statistics.stdev(nums), 4) if len(nums) > 1 else 0.0,
            "min": min(nums), "max": max(nums), "n": len(nums),
        }
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)  # the indices are printed "0.123"
        except ValueError:
            return None
    return None
