"""Page-frame snapshots: who holds every pfn of a real machine, and a model zone built from it.

A snapshot says, for every pfn, one of: free, LRU, slab, page table, other
kernel memory, reserved (or a hole), a compound tail, or a movable driver's
page (zsmalloc, balloon, z3fold, another).  It is read from
/proc/kpageflags (fs/proc/page.c: stable_page_flags) and, where the
page-frame probe module of `mmplug kernel run` is loaded, from its files:
the probe names the movable operations that own each non-LRU movable page,
gives every pageblock's migratetype, and records the free pfns of one moment
right after draining the per-cpu lists (a free page on a per-cpu list looks
like kernel memory to kpageflags, and the process reading kpageflags holds
pages it frees when it exits).
Without the probe a snapshot still tells free, LRU, slab and page-table pages
apart, balloon pages by PG_offline, and counts the rest as kernel memory.

`build_zone` turns one zone of a snapshot into a model zone: every pfn is
held by the same kind of user in the model, each pageblock has the same
migratetype, free pages merge into the same buddy blocks, and the driver's
pages are the driver's own, filled by replaying its history (or by storing
objects until it holds that many pages) with every page it allocates placed
on a pfn the real driver used.  The file is gzip'd JSON; `mmplug snapshot`
writes one of the machine it runs on, `mmplug compare --snapshot` loads it.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from attrs import define, field

from ..compaction import CompactControl, compact_zone, reset_cached_positions
from ..constants import GFP_COMP, GFP_KERNEL, GFP_HIGHUSER_MOVABLE, MigrateMode
from ..errors import UsageError
from ..page import PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE, Page
from ..page import TAIL as PG_TAIL
from ..users import LruPages, SlabCache
from ..vm import VM, VMConfig

FORMAT = "mmplug-page-frames"
VERSION = 1

# One character per pfn.
FREE, LRU, SLAB, PGTABLE, KERNEL, RESERVED, TAIL = ".", "l", "s", "t", "k", "r", "+"
OTHER_MOVABLE = "m"
#: the movable drivers a snapshot names, with their code and their movable_operations symbol
DRIVERS = {"zsmalloc": ("z", "zsmalloc_mops"), "balloon": ("b", "balloon_mops"),
           "z3fold": ("3", "z3fold_mops")}
DRIVER_OF_CODE = {code: name for name, (code, _) in DRIVERS.items()}
DRIVER_OF_MOPS = {mops: name for name, (_, mops) in DRIVERS.items()}
KIND_NAMES = {FREE: "free", LRU: "lru", SLAB: "slab", PGTABLE: "page table",
              KERNEL: "kernel", RESERVED: "reserved", TAIL: "compound tail",
              OTHER_MOVABLE: "other movable", **{c: n for n, (c, _) in DRIVERS.items()}}

# include/uapi/linux/kernel-page-flags.h (and the kernel-internal bits fs/proc/page.c exports)
KPF = {"LOCKED": 0, "LRU": 5, "ACTIVE": 6, "SLAB": 7, "BUDDY": 10, "MMAP": 11, "ANON": 12,
       "SWAPBACKED": 14, "COMPOUND_HEAD": 15, "COMPOUND_TAIL": 16, "HUGE": 17,
       "UNEVICTABLE": 18, "HWPOISON": 19, "NOPAGE": 20, "KSM": 21, "THP": 22, "OFFLINE": 23,
       "PGTABLE": 26, "RESERVED": 32, "PRIVATE": 35, "OWNER_PRIVATE": 37}
_BIT = {k: 1 << v for k, v in KPF.items()}


class SnapshotError(UsageError):
    """A snapshot file or a machine's files cannot be read as a snapshot."""


@define(slots=True)
class ZoneSpan:
    """One zone of a snapshot: [start_pfn, end_pfn), its min watermark, pageblock types."""

    name: str
    start_pfn: int
    end_pfn: int
    min_free: int = 0
    #: first pfn of a pageblock -> migratetype (from the probe; empty: all MOVABLE)
    blocks: dict[int, int] = field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "start_pfn": self.start_pfn, "end_pfn": self.end_pfn,
                "min_free": self.min_free,
                "blocks": [[pfn, mt] for pfn, mt in sorted(self.blocks.items())]}


@define(slots=True)
class PageFrames:
    """Every pfn's holder, compound heads and their order, zones and driver details."""

    page_size: int
    kinds: bytearray
    compound: dict[int, int] = field(factory=dict)
    zones: list[ZoneSpan] = field(factory=list)
    #: driver -> details (e.g. z3fold's headless pfns, zsmalloc's first pages)
    drivers: dict[str, dict[str, list[int]]] = field(factory=dict)
    source: dict[str, Any] = field(factory=dict)

    def kind(self, pfn: int) -> str:
        return chr(self.kinds[pfn])

    def pfns_of(self, code: str, lo: int = 0, hi: int | None = None) -> list[int]:
        c = ord(code)
        kinds = self.kinds
        hi = len(kinds) if hi is None else hi
        out = []
        i = kinds.find(c, lo, hi)
        while i != -1:
            out.append(i)
            i = kinds.find(c, i + 1, hi)
        return out

    def zone(self, name: str) -> ZoneSpan:
        for z in self.zones:
            if z.name == name:
                return z
        raise SnapshotError(f"the snapshot has no zone {name!r} (zones: "
                            f"{', '.join(z.name for z in self.zones)})")

    def counts(self, lo: int = 0, hi: int | None = None) -> dict[str, int]:
        seg = bytes(self.kinds[lo:hi])
        return {KIND_NAMES[chr(c)]: seg.count(c) for c in sorted(set(seg))}

    def free_pageblocks(self, zone: ZoneSpan, order: int = 9) -> int:
        """Whole pageblocks of the zone whose every page is free."""
        pb = 1 << order
        start = -(-zone.start_pfn // pb) * pb
        block = bytes(FREE, "ascii") * pb
        return sum(1 for p in range(start, zone.end_pfn - pb + 1, pb)
                   if self.kinds[p:p + pb] == block)

    def buddy_blocks(self, zone: ZoneSpan, max_order: int = 11) -> list[int]:
        """The free blocks per order that the free pfns of the zone merge into.

        The buddy allocator merges a freed block with its free buddy as far
        as it can (__free_one_page), so a set of free pfns makes one set of
        blocks: the largest aligned blocks inside the zone that are all free.
        """
        out = [0] * max_order
        pfn = zone.start_pfn
        kinds = self.kinds
        free = ord(FREE)
        while pfn < zone.end_pfn:
            if kinds[pfn] != free:
                pfn += 1
                continue
            order = max_order - 1
            while order:
                size = 1 << order
                if (pfn & (size - 1) == 0 and pfn + size <= zone.end_pfn
                        and kinds.count(free, pfn, pfn + size) == size):
                    break
                order -= 1
            out[order] += 1
            pfn += 1 << order
        return out

    # --- the file ------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "page_size": self.page_size,
                "nr_pfns": len(self.kinds), "kinds": rle(self.kinds.decode("ascii")),
                "compound": [[p, o] for p, o in sorted(self.compound.items())],
                "zones": [z.as_dict() for z in self.zones],
                "drivers": self.drivers, "source": self.source}

    def write(self, path: Path) -> None:
        data = gzip.compress(json.dumps(self.as_dict(), separators=(",", ":")).encode(), mtime=0)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "snapshot") -> "PageFrames":
        if d.get("format") != FORMAT:
            raise SnapshotError(f"{where}: not a page-frame snapshot (format {d.get('format')!r})")
        if d.get("version") != VERSION:
            raise SnapshotError(f"{where}: snapshot version {d.get('version')!r}, "
                                f"this mmplug reads version {VERSION}")
        try:
            kinds = bytearray(unrle(d["kinds"]).encode("ascii"))
            if len(kinds) != d["nr_pfns"]:
                raise SnapshotError(f"{where}: {len(kinds)} pfns decoded, {d['nr_pfns']} expected")
            bad = set(kinds.decode("ascii")) - set(KIND_NAMES)
            if bad:
                raise SnapshotError(f"{where}: unknown page kind(s) {sorted(bad)}")
            zones = [ZoneSpan(z["name"], int(z["start_pfn"]), int(z["end_pfn"]),
                              int(z.get("min_free", 0)),
                              {int(p): int(mt) for p, mt in z.get("blocks", [])})
                     for z in d["zones"]]
            for z in zones:
                if not 0 <= z.start_pfn < z.end_pfn <= len(kinds):
                    raise SnapshotError(f"{where}: zone {z.name} [{z.start_pfn}, {z.end_pfn}) "
                                        f"lies outside the {len(kinds)} pfns")
            return cls(int(d["page_size"]), kinds,
                       {int(p): int(o) for p, o in d.get("compound", [])}, zones,
                       {k: {kk: [int(x) for x in vv] for kk, vv in v.items()}
                        for k, v in d.get("drivers", {}).items()},
                       dict(d.get("source", {})))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SnapshotError):
                raise
            raise SnapshotError(f"{where}: malformed snapshot: {type(exc).__name__}: {exc}") from None

    @classmethod
    def read(cls, path: Path) -> "PageFrames":
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from None
        try:
            data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            d = json.loads(data)
        except (OSError, EOFError, ValueError) as exc:
            raise SnapshotError(f"{path}: not a snapshot file ({exc})") from None
        if not isinstance(d, dict):
            raise SnapshotError(f"{path}: not a snapshot file")
        return cls.from_dict(d, str(path))


def rle(text: str) -> str:
    """"...ll" -> "3.2l": a count before every run."""
    return "".join(f"{len(m.group(0))}{m.group(1)}" for m in re.finditer(r"(.)\1*", text, re.S))


def unrle(text: str) -> str:
    parts = re.findall(r"(\d+)(\D)", text)
    if "".join(n + c for n, c in parts) != text:
        raise ValueError("kinds: not a run-length string")
    return "".join(c * int(n) for n, c in parts)


# --- reading a machine -----------------------------------------------------------------------

def classify(flags: list[int], *, movable: dict[int, str] | None = None,
             free: Iterable[tuple[int, int]] | None = None,
             mapcount: list[int] | None = None) -> tuple[bytearray, dict[int, int]]:
    """Kinds per pfn and compound heads' orders from kpageflags (+ the probe's answers).

    `movable` maps a pfn to the driver whose movable operations own it.
    `free` are [lo, hi) ranges of the pfns the probe found free at one moment
    (mmplug_pfn/free: recorded under the zone locks right after the per-cpu
    lists were drained).  Given, they and only they are free: the pages the
    reader of /proc/kpageflags (dd) held while reading count as free, and a
    page allocated after the record as kernel memory.  Without it a page is
    free where kpageflags shows PG_buddy (a page on a per-cpu list then looks
    like kernel memory).  `mapcount` (/proc/kpagecount) makes a mapped page that
    kpageflags shows without PG_lru an LRU page: a user page still in a per-cpu
    LRU batch, which compact_nodes()'s lru_add_drain_all() puts on the LRU.
    """
    b = _BIT
    out = bytearray(len(flags))
    codes = {name: ord(c) for name, (c, _) in DRIVERS.items()}
    recorded = free is not None
    is_free = bytearray(len(flags))
    for lo, hi in free or ():
        lo, hi = max(lo, 0), min(hi, len(flags))
        if lo < hi:
            is_free[lo:hi] = b"\1" * (hi - lo)
    movable = movable or {}
    for pfn, f in enumerate(flags):
        if f & (b["NOPAGE"] | b["HWPOISON"] | b["RESERVED"]):
            c = RESERVED
        elif is_free[pfn]:
            c = FREE
        elif pfn in movable:
            out[pfn] = codes.get(movable[pfn], ord(OTHER_MOVABLE))
            continue
        elif f & b["BUDDY"]:
            c = KERNEL if recorded else FREE
        elif f & b["COMPOUND_TAIL"]:
            c = TAIL
        elif f & b["SLAB"]:
            c = SLAB
        elif f & b["PGTABLE"]:
            c = PGTABLE
        elif f & b["OFFLINE"]:
            c = DRIVERS["balloon"][0]
        elif f & (b["LRU"] | b["ANON"] | b["MMAP"] | b["UNEVICTABLE"]):
            c = LRU
        elif mapcount is not None and pfn < len(mapcount) and mapcount[pfn]:
            c = LRU
        else:
            c = KERNEL
        out[pfn] = ord(c)
    compound: dict[int, int] = {}
    tail = ord(TAIL)
    n = len(flags)
    for pfn, f in enumerate(flags):
        if f & b["COMPOUND_HEAD"] and out[pfn] != ord(RESERVED):
            end = pfn + 1
            while end < n and out[end] == tail:
                end += 1
            size = end - pfn
            compound[pfn] = max(size.bit_length() - 1, 0)
    return out, compound


def from_machine(kpageflags: list[int], zones: list[Any], *, page_size: int = 4096,
                 movable: list[Any] | None = None, blocks: dict[str, dict[int, int]] | None = None,
                 free: Iterable[tuple[int, int]] | None = None,
                 mapcount: list[int] | None = None,
                 source: dict[str, Any] | None = None) -> PageFrames:
    """A snapshot from parsed files (mmplug.realkernel.procfs): kpageflags, zoneinfo, probe."""
    owners: dict[int, str] = {}
    details: dict[str, dict[str, list[int]]] = {}
    for mp in movable or ():
        name = DRIVER_OF_MOPS.get(mp.owner, mp.owner)
        owners[mp.pfn] = name
        d = details.setdefault(name, {})
        if name == "z3fold" and mp.private & 1:           # PAGE_HEADLESS (mm/z3fold.c)
            d.setdefault("headless", []).append(mp.pfn)
        if name == "zsmalloc" and 0 <= mp.pfn < len(kpageflags) and \
                kpageflags[mp.pfn] & _BIT["PRIVATE"]:          # a zspage's first page
            d.setdefault("first", []).append(mp.pfn)
    kinds, compound = classify(kpageflags, movable=owners, free=free, mapcount=mapcount)
    spans = [ZoneSpan(z.name, z.start_pfn, min(z.end_pfn, len(kinds)), z.min,
                      dict((blocks or {}).get(z.name, {}))) for z in zones]
    return PageFrames(page_size, kinds, compound, spans, details, dict(source or {}))


def _read_u64_file(path: Path) -> bytes:
    """/proc/kpageflags answers reads of whole u64s only: read it in 1 MiB chunks."""
    chunks = []
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def take_live(root: Path = Path("/")) -> PageFrames:
    """The snapshot of the machine this runs on (needs root for /proc/kpageflags).

    With the probe loaded, its per-cpu lists are drained and the free pfns
    recorded first (mmplug_pfn/drain, /free): a busy machine changes while
    /proc/kpageflags is read, and the record is the free memory of one moment."""
    from ..realkernel import procfs
    proc = root / "proc"
    probe = root / "sys" / "kernel" / "debug" / "mmplug_pfn"
    recorded = (probe / "drain").exists() and (probe / "free").exists()
    try:
        if recorded:
            (probe / "drain").write_text("1")
        flags = procfs.u64_array(_read_u64_file(proc / "kpageflags"))
        mapcount = procfs.u64_array(_read_u64_file(proc / "kpagecount"))
        zones = procfs.zoneinfo((proc / "zoneinfo").read_text())
    except PermissionError:
        raise SnapshotError("mmplug snapshot needs root: /proc/kpageflags is readable by "
                            "root only") from None
    except FileNotFoundError as exc:
        raise SnapshotError(f"{exc.filename} is missing: a snapshot needs Linux with "
                            "CONFIG_PROC_PAGE_MONITOR") from None
    movable, blocks, free = None, None, None
    if (probe / "movable").exists():
        movable = procfs.probe_movable((probe / "movable").read_text())
        blocks = procfs.probe_blocks((probe / "blocks").read_text())
    if recorded:
        free = procfs.probe_free((probe / "free").read_text())
    uname = os.uname()
    source = {"machine": uname.nodename, "kernel": uname.release,
              "probe": movable is not None}
    return from_machine(flags, zones, page_size=os.sysconf("SC_PAGE_SIZE"), movable=movable,
                        blocks=blocks, free=free, mapcount=mapcount, source=source)


# --- the model from a snapshot -----------------------------------------------------------

Replay = Callable[[Any], None]


@define(slots=True, eq=False)
class ModelZone:
    """One model VM holding one zone of a snapshot, with its users."""

    name: str
    vm: VM
    base_pfn: int            # kernel pfn of the model's pfn 0
    span: ZoneSpan
    lru: LruPages
    slabs: dict[int, SlabCache]
    held: list[tuple[Page, int]]
    instance: Any = None
    driver: str | None = None
    #: how placement went: pages the model's driver holds beyond the real driver's pfns
    #: ("extra") and real driver pfns the model had no page for ("unfilled")
    placement: dict[str, int] = field(factory=dict)

    def kernel_pfn(self, page: Page) -> int:
        return self.base_pfn + page.pfn

    def driver_pfns(self) -> set[int]:
        if self.instance is None:
            return set()
        return {self.base_pfn + p.pfn for p in self.vm.instance_record(self.instance).pages()}


class _Steer:
    """Hand the next allocations exactly the pages planned for them.

    Every frame of the zone starts allocated (the reservoir); an allocation
    takes the planned pfn's page as a fresh one and, for a compound request,
    makes it a compound page.  Nothing falls back to the buddy allocator
    while steering: an unplanned allocation is an error in the plan.
    """

    def __init__(self, vm: VM, reservoir: dict[int, Page]) -> None:
        self.zone = vm.zone
        self.reservoir = reservoir
        self.queue: list[int] = []
        self.log: list[Page] | None = None
        self.real = vm.zone.alloc_pages
        vm.zone.alloc_pages = self.alloc  # type: ignore[method-assign]

    def alloc(self, order: int, gfp: int, *, ignore_watermark: bool = False) -> Page | None:
        if not self.queue:
            raise SnapshotError("placing a snapshot: an allocation the plan did not foresee "
                                f"(order {order})")
        pfn = self.queue.pop()
        zone = self.zone
        pages = [self.reservoir.pop(pfn + i) for i in range(1 << order)]
        head = pages[0]
        for p in pages[1:]:
            p._refcount = 0
        if order and gfp & GFP_COMP:
            zone._prep_compound_page(head, order)
        return head

    def take(self, pfns: list[int]) -> None:
        """Plan the next allocations: pfns[0] first."""
        self.queue = list(reversed(pfns))

    def close(self) -> None:
        self.zone.alloc_pages = self.real  # type: ignore[method-assign]


class _Recorder:
    """Count a replay's allocations on a scratch VM and find which pages it kept."""

    def __init__(self, vm: VM) -> None:
        self.pages: list[Page] = []
        real = vm.zone.alloc_pages

        def alloc(order: int, gfp: int, *, ignore_watermark: bool = False) -> Page | None:
            page = real(order, gfp, ignore_watermark=ignore_watermark)
            if page is not None:
                if order:
                    raise SnapshotError("placing a snapshot: the driver allocated an order-"
                                        f"{order} block; only order-0 driver pages are placed")
                self.pages.append(page)
            return page

        vm.zone.alloc_pages = alloc  # type: ignore[method-assign]


def _plan(host: Any, driver: str, nr_pages: int, page_size: int, replay: Replay
          ) -> tuple[list[bool], int]:
    """Replay on a scratch VM: for each allocation, whether its page is still the driver's
    at the end (the last allocation of a pfn that the driver holds); and how many it holds."""
    scratch = VM(VMConfig(nr_pages=nr_pages, page_size=page_size, min_free_pages=1),
                 plugins=host)
    rec = _Recorder(scratch)
    inst = scratch.create_driver(driver)
    replay(inst)
    last: dict[int, int] = {}
    for i, page in enumerate(rec.pages):
        last[page.pfn] = i
    held = {p.pfn for p in scratch.instance_record(inst).pages()}
    keep = [False] * len(rec.pages)
    for pfn in held:
        if pfn in last:
            keep[last[pfn]] = True
    return keep, len(held)


def build_zone(frames: PageFrames, zone_name: str, *, host: Any = None, driver: str | None = None,
               replay: Replay | None = None, driver_codes: str | None = None,
               options: dict[str, bool] | None = None,
               plans: dict[Any, tuple[list[bool], int]] | None = None) -> ModelZone:
    """The model of one zone of `frames`, its driver's pages filled by `replay`.

    The driver's pages are the pfns of the snapshot's kind for that driver, or
    of any of `driver_codes` (e.g. every movable driver's, when another driver
    takes their place).  The model runs v4.19, with the newer-kernel `options`
    given (VMConfig fields, e.g. mmplug.vm.kernel_settings("6.1")).  `plans` keeps
    the dry runs of replays (the same replay on the same zone plans alike) for the
    next build of the same zone.
    The memmap is whole pageblocks; compaction scans only the zone's own pfns,
    from zone_start_pfn to zone_end_pfn() as the machine's zone spans them."""
    span = frames.zone(zone_name)
    ps = frames.page_size
    pb = 512
    base = span.start_pfn // pb * pb
    end = -(-span.end_pfn // pb) * pb
    nr = end - base
    shape = dict(nr_pages=nr, page_size=ps, min_free_pages=max(span.min_free, 1))
    vm = VM(VMConfig(**shape, **(options or {})), plugins=host)
    zone = vm.zone
    zone.zone_start_pfn = span.start_pfn - base
    zone.zone_end_pfn = min(span.end_pfn, len(frames.kinds)) - base
    reset_cached_positions(zone)
    reservoir: dict[int, Page] = {}
    while True:
        page = zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE, ignore_watermark=True)
        if page is None:
            break
        reservoir[page.pfn] = page
    for pfn, mt in span.blocks.items():
        if base <= pfn < end:
            zone.set_pageblock_migratetype(pfn - base, mt)

    def kind(mpfn: int) -> str:
        kpfn = base + mpfn
        if kpfn < span.start_pfn or kpfn >= span.end_pfn or kpfn >= len(frames.kinds):
            return RESERVED
        return chr(frames.kinds[kpfn])

    kinds = [kind(i) for i in range(nr)]
    for head, order in frames.compound.items():
        # a transparent huge page: the model migrates its pages one by one
        if base <= head < end and kinds[head - base] == LRU:
            for i in range(head - base + 1, min(head - base + (1 << order), nr)):
                if kinds[i] == TAIL:
                    kinds[i] = LRU
    free_pfns = [i for i, k in enumerate(kinds) if k == FREE]
    steer = _Steer(vm, reservoir)
    lru = LruPages(vm)
    slabs: dict[int, SlabCache] = {}
    held: list[tuple[Page, int]] = []
    model = ModelZone(zone_name, vm, base, span, lru, slabs, held)
    try:
        if driver_codes is None:
            driver_codes = DRIVERS[driver][0] if driver in DRIVERS else ""
        if driver is not None:
            target = [i for i, k in enumerate(kinds) if k in driver_codes] if driver_codes else []
            _place_driver(model, host, driver, replay, target, free_pfns, steer, plans)
        for i, k in enumerate(kinds):
            if i not in reservoir or k in (FREE, TAIL):
                continue
            order = frames.compound.get(base + i, 0) if k in (SLAB, KERNEL, PGTABLE) else 0
            if order and any(i + j not in reservoir for j in range(1 << order)):
                order = 0
            if k == LRU:
                steer.take([i])
                lru.alloc(i.to_bytes(8, "little"))
            elif k == SLAB:
                cache = slabs.get(order)
                if cache is None:
                    cache = slabs[order] = SlabCache(vm, f"kmalloc-order{order}", order=order)
                steer.take([i])
                cache.alloc_slab()
            elif order:
                steer.take([i])
                head = zone.alloc_pages(order, GFP_KERNEL | GFP_COMP)
                held.append((head, order))
            else:
                held.append((reservoir.pop(i), 0))
        # compound tails of unplaced heads and anything left: held, unmovable
        for i in sorted(reservoir):
            if kinds[i] != FREE:
                held.append((reservoir.pop(i), 0))
    finally:
        steer.close()
    for i in sorted(reservoir):
        vm.cpus.put_page(reservoir.pop(i))
    return model


def _place_driver(model: ModelZone, host: Any, driver: str, replay: Replay | None,
                  target: list[int], free_pfns: list[int], steer: _Steer,
                  plans: dict[Any, tuple[list[bool], int]] | None = None) -> None:
    """Create the driver instance and replay its history onto the target pfns."""
    vm = model.vm
    if replay is None:
        replay = fill_replay(len(target))
    key = (driver, vm.zone.nr_pages, vm.zone.page_size, replay)
    if plans is not None and key in plans:
        keep, kept = plans[key]
    else:
        keep, kept = _plan(host, driver, vm.zone.nr_pages, vm.zone.page_size, replay)
        if plans is not None:
            plans[key] = (keep, kept)
    targets = list(target)
    spare = [p for p in free_pfns]
    plan: list[int] = []
    extra = 0
    for survives in keep:
        if survives and targets:
            plan.append(targets.pop(0))
        else:
            if survives:
                extra += 1
            if not spare:
                raise SnapshotError("placing a snapshot: the driver's history needs more "
                                    "pages than the zone has free")
            plan.append(spare.pop(0))
    steer.take(plan)
    model.instance = vm.create_driver(driver)
    model.driver = driver
    replay(model.instance)
    if steer.queue:
        raise SnapshotError(f"placing a snapshot: the replay made {len(plan) - len(steer.queue)} "
                            f"allocations, the plan {len(plan)}")
    model.placement = {"extra": extra, "unfilled": len(targets), "kept": kept}
    # real driver pfns the model holds nothing on are held as unmovable memory
    for pfn in targets:
        if pfn in steer.reservoir:
            model.held.append((steer.reservoir.pop(pfn), 0))


def fill_replay(nr_pages: int, seed: int = 0, sizes: tuple[int, int] = (64, 3000)) -> Replay:
    """A history without one: store objects of seeded random sizes until the driver holds
    `nr_pages` pages (a balloon page per object; a few objects per zspage or z3fold page)."""

    def replay(instance: Any) -> None:
        rng = random.Random(f"{seed}:fill")
        guard = nr_pages * 64 + 64
        while len(instance.pages()) < nr_pages and guard:
            guard -= 1
            instance.store(bytes(rng.randint(*sizes)))

    return replay


def compact_whole_zone(model: ModelZone, scanned: tuple[int, int] = (0, 0)) -> dict[str, int]:
    """compact_memory's compact_zone() on the model zone; returns where the scanners ended
    and cc's scanned counts after it.  `scanned` is what cc carries in from the zones
    compacted before (see compact_node)."""
    vm = model.vm
    cc = CompactControl(zone=vm.zone, order=-1, mode=MigrateMode.SYNC, ignore_skip_hint=True,
                        whole_zone=True, gfp_mask=GFP_KERNEL, total_migrate_scanned=scanned[0],
                        total_free_scanned=scanned[1])
    compact_zone(vm, cc)
    return {"migrate_pfn": model.base_pfn + cc.migrate_pfn,
            "free_pfn": model.base_pfn + cc.free_pfn,
            "migrate_scanned": cc.total_migrate_scanned, "free_scanned": cc.total_free_scanned}


def compact_node(models: list[ModelZone]) -> dict[str, dict[str, int]]:
    """compact_node() (mm/compaction.c:1860-1893): compact_zone() on each zone in zone order
    with one compact_control, whose scanned counts v4.19 never zeroes: each zone's
    count_compact_events() adds the earlier zones' scans again.  6.1 zeroes them in
    compact_zone() (`VMConfig.zone_scan_counts`).  Returns each zone's end state."""
    out: dict[str, dict[str, int]] = {}
    carried = (0, 0)
    for m in models:
        end = compact_whole_zone(m, carried)
        carried = (end["migrate_scanned"], end["free_scanned"])
        out[m.name] = end
    return out


def model_frames(models: list[ModelZone], template: PageFrames) -> PageFrames:
    """The model's own state as a snapshot over the same pfns (for the same pictures)."""
    kinds = bytearray(template.kinds)
    compound: dict[int, int] = {}
    for m in models:
        vm = m.vm
        pfn_kinds = bytearray(b"k") * vm.zone.nr_pages
        drv = set()
        if m.instance is not None and m.driver is not None:
            # Only movable pages are the driver's in a snapshot (the probe lists movable
            # pages); the others, like z3fold's headless ones, count as kernel memory.
            drv = {p.pfn for p in vm.instance_record(m.instance).pages()
                   if p.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE}
        for p in vm.zone.pages:
            owner = vm.owner_of(p)
            if p.flags & PG_TAIL and owner != "free":
                c = TAIL
            elif owner == "free":
                c = FREE
            elif p.pfn in drv:
                c = DRIVERS.get(m.driver or "", (OTHER_MOVABLE,))[0]
            elif owner == "lru":
                c = LRU
            elif owner == "slab":
                c = SLAB
            else:
                c = KERNEL
            pfn_kinds[p.pfn] = ord(c)
        lo = max(m.span.start_pfn, m.base_pfn)
        hi = min(m.span.end_pfn, m.base_pfn + vm.zone.nr_pages)
        for kp in range(lo, hi):
            orig = chr(template.kinds[kp])
            c = chr(pfn_kinds[kp - m.base_pfn])
            kinds[kp] = ord(orig if orig in (RESERVED, PGTABLE) and c == KERNEL else c)
    return PageFrames(template.page_size, kinds, compound, list(template.zones),
                      {}, {"model": True})


# --- `mmplug compare --snapshot` ------------------------------------------------------------

MOVABLE_CODES = "".join(c for c, _ in DRIVERS.values()) + OTHER_MOVABLE


def largest_zone(frames: PageFrames) -> str:
    return max(frames.zones, key=lambda z: z.end_pfn - z.start_pfn).name


def compare_snapshot(frames: PageFrames, host: Any, drivers: list[str], zone_name: str | None,
                     seed: int) -> dict[str, Any]:
    """Each driver on the snapshot's zone: its pages are the pfns any movable driver held,
    filled with seeded objects; then compact_memory's compact_zone."""
    zone_name = zone_name or largest_zone(frames)
    span = frames.zone(zone_name)
    out: dict[str, Any] = {"zone": zone_name, "seed": seed, "source": frames.source,
                           "pages": frames.counts(span.start_pfn, span.end_pfn), "drivers": {}}
    n_driver = sum(len(frames.pfns_of(c, span.start_pfn, span.end_pfn)) for c in MOVABLE_CODES)
    for spec in drivers:
        loaded = host.get(spec)
        name = loaded.info.name
        model = build_zone(frames, zone_name, host=host, driver=spec,
                           replay=fill_replay(n_driver, seed), driver_codes=MOVABLE_CODES)
        before = model.vm.zone.buddyinfo()
        drv_before = model.driver_pfns()
        free_before = _free_pageblocks(before)
        meet = compact_whole_zone(model)
        ev = model.vm.vmstat.events
        drv_after = model.driver_pfns()
        out["drivers"][name] = {
            "driver_pages": len(drv_before), "placement": model.placement,
            "pgmigrate_success": ev["pgmigrate_success"], "pgmigrate_fail": ev["pgmigrate_fail"],
            "compact_isolated": ev["compact_isolated"],
            "compact_migrate_scanned": ev["compact_migrate_scanned"],
            "compact_free_scanned": ev["compact_free_scanned"],
            "driver_pages_migrated": len(drv_before - drv_after),
            "scanners_met_pfn": meet["migrate_pfn"],
            "free_pageblocks_before": free_before,
            "free_pageblocks_after": _free_pageblocks(model.vm.zone.buddyinfo()),
            "buddyinfo_before": before, "buddyinfo_after": model.vm.zone.buddyinfo(),
        }
    return out


def _free_pageblocks(buddyinfo: list[int], pageblock_order: int = 9) -> int:
    return sum(n << (o - pageblock_order) for o, n in enumerate(buddyinfo) if o >= pageblock_order)


def snapshot_table(result: dict[str, Any]) -> str:
    names = list(result["drivers"])
    src = result["source"]
    lines = [f"snapshot of {src.get('machine', '?')} (Linux {src.get('kernel', '?')}), zone "
             f"{result['zone']}, seed {result['seed']}: "
             + ", ".join(f"{k} {v:,}" for k, v in result["pages"].items())]
    w = 26
    lines.append(f"{'':<{w}}" + "".join(f"{n:>16}" for n in names))
    keys = ("driver_pages", "driver_pages_migrated", "pgmigrate_success", "pgmigrate_fail",
            "compact_isolated", "compact_migrate_scanned", "compact_free_scanned",
            "scanners_met_pfn", "free_pageblocks_before", "free_pageblocks_after")
    for k in keys:
        lines.append(f"{k:<{w}}" + "".join(f"{result['drivers'][n][k]:>16,}" for n in names))
    for k in ("buddyinfo_before", "buddyinfo_after"):
        for n in names:
            lines.append(f"{k} {n}: " + " ".join(map(str, result["drivers"][n][k])))
    return "\n".join(lines) + "\n"
