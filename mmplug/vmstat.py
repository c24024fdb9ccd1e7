"""/proc/vmstat-style counters and the fragmentation indices (STA-1, STA-2).

Counter names are the kernel's (include/linux/vm_event_item.h, mm/vmstat.c
vmstat_text).  The indices follow mm/vmstat.c: fill_contig_page_info,
unusable_free_index, __fragmentation_index, printed "%d.%03d" with C division.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from .zone import Zone

#: STA-1: the kernel's event counters this model keeps.
KERNEL_EVENTS = (
    "pgmigrate_success", "pgmigrate_fail",
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated",
    "compact_stall", "compact_fail", "compact_success",
    "compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
    "balloon_inflate", "balloon_deflate", "balloon_migrate",
)
#: Counters the kernel has no vmstat line for, kept to explain outcomes.
MODEL_EVENTS = (
    "isolate_attempt",          # isolate_movable_page() calls
    "isolate_success",
    "isolate_fail_refcount",    # get_page_unless_zero() failed
    "isolate_fail_not_movable", # __PageMovable() false, or slab
    "isolate_fail_locked",      # trylock_page() failed
    "isolate_fail_released",    # !PageMovable or already PageIsolated under the lock
    "isolate_refused",          # the driver's isolate_page() returned false
    "migrate_eagain",           # -EAGAIN results (retried)
    "migrate_permanent",        # other negative results
    "migrate_enomem",           # get_new_page() had nothing
    "migrate_released",         # released by the driver after isolation (MIG-3, MIG-6)
    "putback_movable",          # putback_movable_page() calls (driver's putback_page)
    "bytes_copied",
)


class VmStat:
    """Event counters: one dict, incremented in place."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: dict[str, int] = dict.fromkeys(KERNEL_EVENTS + MODEL_EVENTS, 0)

    def count(self, name: str, n: int = 1) -> None:
        """count_vm_event(s)(); drivers may count events of their own names."""
        self.events[name] = self.events.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self.events.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self.events)

    def vmstat_lines(self, names: Iterable[str] = KERNEL_EVENTS) -> str:
        """The lines /proc/vmstat would print for these counters."""
        return "".join(f"{n} {self.events.get(n, 0)}\n" for n in names)


@frozen(slots=True)
class ContigPageInfo:
    """struct contig_page_info (mm/vmstat.c)."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def fill_contig_page_info(nr_free: list[int], suitable_order: int) -> ContigPageInfo:
    """fill_contig_page_info(): free pages and blocks, and blocks usable for an order."""
    free_pages = total = suitable = 0
    for order, blocks in enumerate(nr_free):
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def unusable_free_index(nr_free: list[int], order: int) -> int:
    """unusable_free_index(): thousandths of free memory unusable for `order`."""
    info = fill_contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 1000
    return _cdiv((info.free_pages - (info.free_blocks_suitable << order)) * 1000, info.free_pages)


def fragmentation_index(nr_free: list[int], order: int) -> int:
    """__fragmentation_index(): -1000 if an order block exists, else 0..1000.

    Near 0 a failure would be for lack of memory, near 1000 for fragmentation.
    An order of MAX_ORDER (`len(nr_free)`) or more is 0, as after v4.19's
    WARN_ON_ONCE (mm/vmstat.c:1057-1058).
    """
    if order >= len(nr_free):
        return 0
    info = fill_contig_page_info(nr_free, order)
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    return 1000 - _cdiv(1000 + _cdiv(info.free_pages * 1000, requested), info.free_blocks_total)


def format_index(index: int) -> str:
    """`%d.%03d` of index/1000 and index%1000 with C semantics (-1000 -> "-1.000")."""
    whole = _cdiv(index, 1000)
    return f"{whole}.{index - whole * 1000:03d}"


def zone_indices(zone: Zone) -> tuple[list[int], list[int]]:
    """(unusable_index, extfrag_index) for every order of a zone."""
    nr_free = zone.buddyinfo()
    orders = range(zone.max_order)
    return ([unusable_free_index(nr_free, o) for o in orders],
            [fragmentation_index(nr_free, o) for o in orders])
