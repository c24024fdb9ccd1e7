"""Parsers of what a Linux machine prints: /proc and /sys files, the probe's files, the trace.

Each takes the file's text (or bytes) and returns plain values; none reads
a path itself, so the tests feed them files captured from a real guest.
Formats are those of the 6.1 kernel (mm/vmstat.c: frag_show_print,
pagetypeinfo_showfree_print, pagetypeinfo_showblockcount_print,
zoneinfo_show_print; drivers/block/zram/zram_drv.c: mm_stat_show;
fs/proc/page.c: kpageflags_read, kpagecount_read; the tracepoints of
include/trace/events/compaction.h and migrate.h).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

#: the /proc/vmstat counters a comparison reads
COUNTERS = ("pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned",
            "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
            "compact_success", "compact_daemon_wake", "balloon_inflate", "balloon_deflate",
            "balloon_migrate")

#: migratetype names as /proc/pagetypeinfo prints them (mm/page_alloc.c migratetype_names)
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")


class ParseError(ValueError):
    """A file does not look like what the kernel prints."""


def vmstat(text: str) -> dict[str, int]:
    """/proc/vmstat: `name value` per line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            raise ParseError(f"vmstat: {line!r} has no integer value") from None
    if not out:
        raise ParseError("vmstat: no counters")
    return out


def buddyinfo(text: str) -> dict[str, list[int]]:
    """/proc/buddyinfo: zone name -> free blocks per order (node 0 only, the guest's one)."""
    out: dict[str, list[int]] = {}
    for line in text.splitlines():
        m = re.match(r"Node\s+(\d+),\s+zone\s+(\S+)\s+(.*)$", line)
        if not m:
            continue
        if m.group(1) != "0":
            continue
        out[m.group(2)] = [int(x) for x in m.group(3).split()]
    if not out:
        raise ParseError("buddyinfo: no zone lines")
    return out


def pagetypeinfo(text: str) -> dict[str, dict[str, dict[str, list[int]] | dict[str, int]]]:
    """/proc/pagetypeinfo: zone -> {"free": {type: per order}, "blocks": {type: count}}."""
    free: dict[str, dict[str, list[int]]] = {}
    blocks: dict[str, dict[str, int]] = {}
    header: list[str] = []
    for line in text.splitlines():
        m = re.match(r"Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)\s+(.*)$", line)
        if m:
            free.setdefault(m.group(2), {})[m.group(3)] = [int(x) for x in m.group(4).split()]
            continue
        if line.startswith("Number of blocks type"):
            header = line.split()[4:]
            continue
        m = re.match(r"Node\s+(\d+),\s+zone\s+(\S+)\s+([\d\s]+)$", line)
        if m and header:
            counts = [int(x) for x in m.group(3).split()]
            blocks[m.group(2)] = dict(zip(header, counts, strict=False))
    if not free:
        raise ParseError("pagetypeinfo: no free-list lines")
    return {zone: {"free": free[zone], "blocks": blocks.get(zone, {})} for zone in free}


@dataclass
class ZoneInfo:
    """The fields of one /proc/zoneinfo zone that the model needs."""

    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int
    min: int
    low: int
    high: int
    nr_free_pages: int
    pcp_count: int = 0

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned


def zoneinfo(text: str) -> list[ZoneInfo]:
    """/proc/zoneinfo: the populated zones of node 0, in order."""
    zones: list[ZoneInfo] = []
    cur: dict[str, int] | None = None
    name = ""

    def close() -> None:
        if cur is not None and cur.get("present", 0) > 0 and "start_pfn" in cur:
            zones.append(ZoneInfo(name, cur["start_pfn"], cur["spanned"], cur["present"],
                                  cur.get("managed", 0), cur["min"], cur["low"], cur["high"],
                                  cur.get("nr_free_pages", 0), cur.get("count", 0)))

    for line in text.splitlines():
        m = re.match(r"Node\s+(\d+),\s+zone\s+(\S+)", line)
        if m:
            close()
            cur = {} if m.group(1) == "0" else None
            name = m.group(2)
            continue
        if cur is None:
            continue
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[0] in ("min", "low", "high", "spanned", "present",
                                             "managed", "nr_free_pages", "start_pfn", "count"):
            key = parts[0]
            if key in ("high", "count") and key in cur:
                # the per-cpu "high:" and "count:" lines come after the watermark "high"
                if key == "count":
                    cur["count"] += int(parts[1])
                continue
            try:
                cur[key] = int(parts[1])
            except ValueError:
                continue
    close()
    if not zones:
        raise ParseError("zoneinfo: no populated zone of node 0")
    return zones


MM_STAT_FIELDS = ("orig_data_size", "compr_data_size", "mem_used_total", "mem_limit",
                  "mem_used_max", "same_pages", "pages_compacted", "huge_pages",
                  "huge_pages_since")


def mm_stat(text: str) -> dict[str, int]:
    """/sys/block/zramN/mm_stat: the eight (6.1: nine) numbers of mm_stat_show()."""
    values = [int(x) for x in text.split()]
    if len(values) < 7:
        raise ParseError(f"mm_stat: {len(values)} fields, expected at least 7")
    return dict(zip(MM_STAT_FIELDS, values, strict=False))  # newer kernels add fields


def zswap(text: str) -> dict[str, int]:
    """`grep -r . /sys/kernel/debug/zswap`: file name -> value."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        path, _, value = line.partition(":")
        try:
            out[path.rsplit("/", 1)[-1]] = int(value)
        except ValueError:
            continue
    return out


def u64_array(data: bytes) -> list[int]:
    """/proc/kpageflags or /proc/kpagecount: one little-endian u64 per pfn."""
    if len(data) % 8:
        raise ParseError(f"page array of {len(data)} bytes is not a whole number of u64")
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


# --- the probe module's files --------------------------------------------------------

@dataclass
class MovablePage:
    """One line of mmplug_pfn/movable."""

    pfn: int
    page: int          # struct page address
    private: int
    index: int
    refcount: int
    flags: int
    owner: str         # the movable_operations symbol, e.g. zsmalloc_mops


def probe_movable(text: str) -> list[MovablePage]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split(None, 6)
        if len(parts) < 7:
            raise ParseError(f"movable line {n}: {line!r}")
        out.append(MovablePage(int(parts[0]), int(parts[1], 16), int(parts[2], 16),
                               int(parts[3], 16), int(parts[4]), int(parts[5], 16),
                               parts[6].split()[0]))
    return out


def probe_blocks(text: str) -> dict[str, dict[int, int]]:
    """mmplug_pfn/blocks: zone -> {first pfn of a pageblock: migratetype}."""
    out: dict[str, dict[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            raise ParseError(f"blocks: {line!r}")
        out.setdefault(parts[0], {})[int(parts[1])] = int(parts[2])
    return out


def probe_free_hooked(text: str) -> tuple[str, ...]:
    """The zones whose part of a mmplug_pfn/free record compact_zone() took itself, as it
    began or ended (the first line's "hooked DMA DMA32"); () for a record the drain
    write took alone."""
    first = text.split("\n", 1)[0]
    if not first.startswith("#") or "hooked" not in first:
        return ()
    return tuple(first.split("hooked", 1)[1].split())


def probe_free(text: str) -> list[tuple[int, int]]:
    """mmplug_pfn/free: [lo, hi) ranges of the pfns free at the probe's last drain
    ("# drain N" first: how many drains it has recorded)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ParseError(f"free line {n}: {line!r}")
        try:
            out.append((int(parts[0]), int(parts[1])))
        except ValueError:
            raise ParseError(f"free line {n}: {line!r}") from None
    return out


# --- the compaction trace --------------------------------------------------------------

@dataclass
class ZoneRun:
    """One compact_zone() as its begin/end tracepoints and the events between show it."""

    zone_start: int
    zone_end: int
    migrate_start: int
    free_start: int
    migrate_end: int = 0
    free_end: int = 0
    status: str = ""
    isolate_migrate_calls: int = 0
    migrate_batches: list[tuple[int, int]] = field(default_factory=list)  # (succeeded, failed)
    #: pages the allocator took off this zone's buddy lists while it ran
    #: (mm_page_alloc_zone_locked: another task's or an interrupt's allocation)
    allocated: list[AllocatedBlock] = field(default_factory=list)


@dataclass(frozen=True)
class AllocatedBlock:
    """One mm_page_alloc_zone_locked event: a block __rmqueue_smallest() took."""

    task: str
    pfn: int
    order: int
    migratetype: int
    percpu_refill: bool


_TRACE = re.compile(r"^\s*(\S+)\s.*?\s(mm_\w+):\s(.*)$")


def _fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+?),?(?=\s|$)", text))


def compaction_trace(text: str) -> list[ZoneRun]:
    """The compact_zone() runs of a trace of the compaction and migrate events."""
    runs: list[ZoneRun] = []
    cur: ZoneRun | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _TRACE.search(line)
        if not m:
            continue
        task, event, rest = m.groups()
        f = _fields(rest)
        if event == "mm_compaction_begin":
            cur = ZoneRun(int(f["zone_start"], 16), int(f["zone_end"], 16),
                          int(f["migrate_pfn"], 16), int(f["free_pfn"], 16))
            runs.append(cur)
        elif cur is None:
            continue
        elif event == "mm_compaction_end":
            cur.migrate_end = int(f["migrate_pfn"], 16)
            cur.free_end = int(f["free_pfn"], 16)
            cur.status = f.get("status", "")
        elif event == "mm_compaction_isolate_migratepages":
            cur.isolate_migrate_calls += 1
        elif event == "mm_migrate_pages":
            cur.migrate_batches.append((int(f["nr_succeeded"]), int(f["nr_failed"])))
        elif event == "mm_page_alloc_zone_locked" and not cur.status:
            pfn = int(f["pfn"], 16)
            if cur.zone_start <= pfn < cur.zone_end:
                cur.allocated.append(AllocatedBlock(task, pfn, int(f["order"]),
                                                    int(f["migratetype"]),
                                                    f.get("percpu_refill") == "1"))
    return runs
