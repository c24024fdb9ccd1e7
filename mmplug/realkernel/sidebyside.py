"""The side-by-side table: per figure, kernel | v4.19 | guest's release | tolerance | verdict.

The model runs twice from the same snapshot: as v4.19, the baseline the
project models, and with every newer-kernel option (mmplug.vm.VMConfig) of
the guest's release.  A row's verdict judges the second model column; where
the v4.19 column differs from the kernel and the second agrees, the verdict
names the options that change the row (`versions`).  A row outside its
tolerance even with the guest's options names its reasons: a difference
between the machine and the model, naming the functions on both sides.  A row
outside its tolerance with no reason says so: that is a defect to fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..compare.snapshot import DRIVERS, PageFrames, ZoneSpan
from ..vm import kernel_options
from .blocks import PAGE_SIZE
from .kernelside import KernelRun
from .modelside import ModelRun
from .scenario import GuestPlan, Scenario, zram_object_size

#: The newer-kernel options a row can name, by the short tag the table prints.
VERSION_TAGS = {"stride": "free_scan_stride", "rescan": "rescan_block",
                "scan-count": "scan_counts_isolated", "zone-counts": "zone_scan_counts"}

#: the options that move where the scanners meet, and every row that depends on it
MEET = ("stride", "rescan")

_FUNCTIONS = {
    "stride": (
        "v4.19's isolate_freepages_block() looks at every pfn of a pageblock; 6.1's "
        "isolate_freepages() passes it a stride that doubles, up to COMPACT_CLUSTER_MAX, "
        "after each pageblock that gave no free page and is 1 again after one that did, so "
        "the free scanner scans fewer pages, passes free pages by and comes down further "
        "for the same targets"),
    "rescan": (
        "v4.19's isolate_migratepages_block() stops at COMPACT_CLUSTER_MAX pages; 6.1's "
        "compact_zone() sets cc->rescan when a round starts in the pageblock the last round "
        "started in, and isolate_migratepages_block() then isolates the rest of the block "
        "at once: bigger batches take more targets from compaction_alloc() and the last one "
        "may hold more pages than the free scanner still finds (putback_movable_pages)"),
    "scan-count": (
        "v4.19's isolate_freepages_block() counts a free block it isolates as one page "
        "scanned; 6.1's counts each of its pages (nr_scanned += isolated - 1), and "
        "isolate_migratepages_block() each page of an isolated compound page"),
    "zone-counts": (
        "v4.19's compact_node() passes one compact_control through the zones and "
        "compact_zone() never zeroes cc->total_migrate_scanned/total_free_scanned, so each "
        "zone's count_compact_events() counts the earlier zones' scans again; 6.1's "
        "compact_zone() zeroes them first"),
}


def _version_reason(tag: str) -> str:
    opt = next(o for o in kernel_options() if o["name"] == VERSION_TAGS[tag])
    return (f"{_FUNCTIONS[tag]}.  VMConfig.{opt['name']} ({opt['kernel']}, commit "
            f"{opt['commit']}).")


#: Named differences a row may cite.  Each names the functions on both sides.
REASONS = {tag: _version_reason(tag) for tag in VERSION_TAGS}
REASONS.update({
    "drift": (
        "Not a difference of the model.  A run kept before the probe recorded free pfns "
        "(mmplug_pfn/freeN) took its free pages from /proc/kpageflags, read after "
        "/proc/buddyinfo: the pages the reading dd held, and the free pages per-cpu lists "
        "took back meanwhile (rmqueue_bulk(), which kpageflags shows without PG_buddy), "
        "count as in use there; and its `after` files were read when the guest had run on "
        "after compaction (its pages come from those compaction freed, the last freed "
        "first), not the moment compact_memory returned."),
    "one-zone": (
        "The kernel's pool allocates in every zone, here in DMA under memory pressure "
        "(__alloc_pages() falling back along the zonelist in both versions), and no file of "
        "the run says which objects went there.  The model replays the driver's history in "
        "the zone holding most of its pages; in each other zone an instance of its own holds "
        "seeded objects on the kernel's driver pfns there, and the replayed instance places "
        "what the kernel kept in those zones on free pfns of its own zone."),
    "headless": (
        "z3fold pages of one large object (headless) are not movable in either version "
        "(z3fold_alloc() calls __SetPageMovable() only for pages with a header), so the probe, "
        "which lists movable pages, does not see the kernel's: the model's headless pages take "
        "free pfns of the snapshot."),
    "concurrent-alloc": (
        "Not a difference of the model.  While the kernel's compact_zone() ran, another task "
        "or an interrupt took pages of the zone off the buddy lists (__rmqueue_smallest(), "
        "most often for rmqueue_bulk() refilling a per-cpu list with a whole batch; the "
        "trace's mm_page_alloc_zone_locked events name the task and the pfns), pages the "
        "free scanner's isolate_freepages_block(), which takes only PageBuddy pages, then "
        "passed by.  The model's compact_zone() runs alone: nothing else allocates while it "
        "scans."),
    "record-gap": (
        "Not a difference of the model.  A run kept before compact_zone() recorded its own "
        "zone (the probe's compaction hooks): its record of the free pfns was taken when the "
        "guest's shell wrote the drain, and /proc/buddyinfo read right after shows fewer free "
        "pages than the record.  Something allocated in between (a page the shell faults in "
        "makes rmqueue_bulk() refill the emptied per-cpu list with a whole batch from the "
        "buddy lists); those pages sat on a per-cpu list through compaction, where "
        "isolate_freepages_block(), which takes only PageBuddy pages, passed them by, while "
        "the model, built from the record, counts them free."),
    "reclaim-order": (
        "Which tmpfs pages zswap holds is decided by reclaim (shrink_inactive_list() and the "
        "LRU order, both versions): the model stores the first pages written, as many as zswap "
        "held; z3fold then packs a different sequence of objects (z3fold_alloc(), "
        "z3fold_free()), so its page count and layout are close, not equal."),
})


@dataclass
class Row:
    section: str
    label: str
    kernel: Any
    model: Any
    tolerance: str = "exact"
    reasons: tuple[str, ...] = ()
    note: str = ""
    #: the model with the guest release's newer-kernel options (when `guested`)
    guest: Any = None
    #: the newer-kernel options (VERSION_TAGS) that change this row
    versions: tuple[str, ...] = ()
    guested: bool = False
    ok: bool = field(init=False, default=True)
    ok_baseline: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.ok_baseline = within(self.kernel, self.model, self.tolerance)
        self.ok = (within(self.kernel, self.guest, self.tolerance) if self.guested
                   else self.ok_baseline)

    @property
    def cited(self) -> tuple[str, ...]:
        """The reasons the verdict names."""
        if not self.guested:
            return () if self.ok else self.versions + self.reasons
        if self.ok:
            return () if self.ok_baseline else self.versions
        return self.reasons

    @property
    def verdict(self) -> str:
        if self.ok:
            if self.guested and not self.ok_baseline:
                return "agrees; v4.19: " + (", ".join(self.versions) or "newer-kernel options")
            return "agrees"
        if self.cited:
            return "differs: " + ", ".join(self.cited)
        return "DIFFERS, unexplained"


def within(k: Any, m: Any, tolerance: str) -> bool:
    if k is None or m is None or tolerance == "shown":
        return True
    if tolerance == "exact" or not isinstance(k, (int, float)) or not isinstance(m, (int, float)):
        return bool(k == m)
    t = tolerance.lstrip("±")
    if t.endswith("%"):
        return abs(k - m) <= abs(k) * float(t[:-1]) / 100
    return abs(k - m) <= float(t)


def _moved(before: PageFrames, after: PageFrames, code: str, zone: ZoneSpan,
           meet: int | None) -> dict[str, int]:
    b = set(before.pfns_of(code, zone.start_pfn, zone.end_pfn))
    a = set(after.pfns_of(code, zone.start_pfn, zone.end_pfn))
    unmoved = b & a
    meet = zone.end_pfn if meet is None else meet
    return {"before": len(b), "after": len(a), "migrated": len(b - a),
            "unmoved_scanned": sum(1 for p in unmoved if p < meet),
            "unmoved_beyond": sum(1 for p in unmoved if p >= meet)}


def _movable_moved(before: PageFrames, after: PageFrames, zone: ZoneSpan, below: int) -> int:
    """LRU and driver pages below `below` that are gone from their pfn after compaction."""
    n = 0
    codes = {ord("l")} | {ord(c) for c, _ in DRIVERS.values()}
    for p in range(zone.start_pfn, min(below, zone.end_pfn)):
        if before.kinds[p] in codes and after.kinds[p] != before.kinds[p]:
            n += 1
    return n


def build_rows(sc: Scenario, plan: GuestPlan, k: KernelRun, m: ModelRun,
               g: ModelRun | None = None) -> list[Row]:
    """The rows: the kernel, the v4.19 model `m` and, given, the model `g` with the guest
    release's options."""
    rows: list[Row] = []
    runs = [m] if g is None else [m, g]

    def row(sec: str, label: str, kv: Any, fn: Any, tol: str = "exact",
            versions: tuple[str, ...] = (), reasons: tuple[str, ...] = (), note: str = "") -> None:
        values = [fn(r) if callable(fn) else fn for r in runs]
        rows.append(Row(sec, label, kv, values[0], tol, reasons, note,
                        values[1] if g is not None else None, versions, g is not None))

    driver = sc.driver
    # zswap's history is reclaim's, and a pool in several zones holds objects no file
    # of the run places: rows that depend on which objects sit where cite it
    hist = (("reclaim-order",) if sc.kind == "zswap" else ()) + \
        (("one-zone",) if m.driver_elsewhere else ())
    # a run kept before the probe recorded free pfns: its snapshots are of other moments
    if k.before.buddyinfo_at_record is None or k.after.buddyinfo_at_record is None:
        hist += ("drift",)
    code = DRIVERS[driver][0]
    home = m.driver_zone or k.before.frames.zones[-1].name
    kz = k.before.frames.zone(home)
    # rows that depend on the course of the kernel's compaction also cite what, by the
    # run's own files, took free pages from under it
    course = hist + _disturbed(k, home, kz)

    # --- the starting point -------------------------------------------------------------
    sec = "START (the snapshot the model is built from)"
    recorded = k.before.buddyinfo_at_record is not None
    kbi = k.before.buddyinfo_at_record or k.before.buddyinfo
    for z in k.before.frames.zones:
        bi = kbi.get(z.name)
        snap = _pages(k.before.frames.buddy_blocks(z))
        row(sec, f"{z.name} free pages: /proc/buddyinfo | snapshot", _pages(bi) if bi else None,
            snap, "±0.5%", reasons=() if recorded else ("drift",),
            note="the model starts from the snapshot's free pages")
    row(sec, f"{home} free pageblocks before", k.before.frames.free_pageblocks(kz),
        lambda r: r.before.free_pageblocks(kz))
    row(sec, f"{driver} pages before compaction (movable)", len(k.before.frames.pfns_of(code)),
        lambda r: len(r.before.pfns_of(code)), reasons=hist)
    if m.driver_elsewhere:
        row(sec, f"{driver} pages outside {home} (seeded objects in the model)",
            m.driver_elsewhere, lambda r: r.filled_elsewhere, "±2%", reasons=("one-zone",))

    # --- compaction's counters ---------------------------------------------------------------
    sec = "COMPACTION (echo 1 > /proc/sys/vm/compact_memory: every zone)"
    kmeet = k.meeting_point(kz.start_pfn)
    row(sec, f"{home} pfn where the scanners met", kmeet, lambda r: r.meeting.get(home), "±512",
        MEET, course)
    spec = {"pgmigrate_success": ("±5%", MEET), "pgmigrate_fail": ("exact", MEET),
            "compact_isolated": ("±5%", MEET),
            "compact_migrate_scanned": ("±5%", MEET + ("zone-counts",)),
            "compact_free_scanned": ("±10%", MEET + ("scan-count", "zone-counts"))}
    if driver == "balloon":
        spec["balloon_migrate"] = ("±5%", MEET)
    for name, (tol, why) in spec.items():
        row(sec, name, k.counter(name), lambda r, n=name: r.counters.get(n, 0), tol, why, course)
    row(sec, f"{home} free pages left above where the scanners met",
        _free_above(k.after.frames, kz, kmeet),
        lambda r: _free_above(r.after, kz, r.meeting.get(home)), "±10%", MEET, course,
        note="free pages the free scanner passed by or gave back")
    # The pageblocks every migrate scanner went through, short of the one where any met
    # the free scanner: there every movable page should have moved on every side.
    common = (min(x for x in [kmeet, kz.end_pfn] + [r.meeting.get(home) for r in runs]
                  if x is not None) - 1) // 512 * 512
    row(sec, f"{home} LRU and {driver} pages moved below pfn {common}",
        _movable_moved(k.before.frames, k.after.frames, kz, common),
        lambda r: _movable_moved(r.before, r.after, kz, common), "±1%", reasons=hist,
        note="the pageblocks every migrate scanner passed")

    # --- free memory after ---------------------------------------------------------------------
    sec = f"FREE BLOCKS AFTER ({home}, /proc/buddyinfo | the model's free lists)"
    # /proc/buddyinfo the moment compaction returned, where the run recorded it
    kafter = k.after.buddyinfo_at_record or k.after.buddyinfo
    kb = kafter.get(home, [])
    for order in range(len(m.buddyinfo[home])):
        kv = kb[order] if order < len(kb) else None
        row(sec, f"order {order}", kv, lambda r, o=order: r.buddyinfo[home][o],
            f"±{max(3, (kv or 0) // 10)}", MEET, course)
    for mz in m.zones:
        if mz.name != home:
            row(sec.replace(home, mz.name), f"{mz.name} buddyinfo",
                " ".join(map(str, kafter.get(mz.name, []))),
                lambda r, n=mz.name: " ".join(map(str, r.buddyinfo[n])), "exact", MEET,
                ("one-zone",) if m.driver_elsewhere else ())
    kfree = k.after.frames.free_pageblocks(kz) - k.before.frames.free_pageblocks(kz)
    row(sec, "pageblocks emptied by compaction", kfree,
        lambda r: r.after.free_pageblocks(kz) - r.before.free_pageblocks(kz), "±2", MEET, course)

    # --- the driver ------------------------------------------------------------------------------
    sec = f"DRIVER ({driver})"
    km = _moved(k.before.frames, k.after.frames, code, kz, kmeet)
    moved = {id(r): _moved(r.before, r.after, code, kz, r.meeting.get(home)) for r in runs}
    row(sec, f"{driver} pages migrated", km["migrated"], lambda r: moved[id(r)]["migrated"],
        "±5%", MEET, course)
    row(sec, "unmoved: beyond where the scanners met", km["unmoved_beyond"],
        lambda r: moved[id(r)]["unmoved_beyond"], "±5%", MEET, course)
    row(sec, "unmoved: scanned, refused or failed", km["unmoved_scanned"],
        lambda r: moved[id(r)]["unmoved_scanned"], "±5%", MEET, course,
        note="isolated in the last batch and put back when the scanners met")
    # by label, not by position: a row present for one run may be absent for the other
    newer = {r.label: r.model for r in _driver_rows(sc, plan, k, g)} if g is not None else {}
    for r in _driver_rows(sc, plan, k, m):
        rows.append(Row(r.section, r.label, r.kernel, r.model, r.tolerance, r.reasons, r.note,
                        newer.get(r.label), r.versions, g is not None))
    return rows


def _disturbed(k: KernelRun, home: str, zone: ZoneSpan) -> tuple[str, ...]:
    """The reasons, found in the run's own files, why the kernel's compaction of `home`
    did not start from, or keep to, the free pages the model starts from."""
    why: tuple[str, ...] = ()
    if k.allocated_during(zone.start_pfn):
        why += ("concurrent-alloc",)
    # a record the shell's drain took alone, and /proc/buddyinfo read after it short of
    # pages: they left the buddy lists between the record and compaction
    read_after = k.before.buddyinfo_at_record
    if home not in k.before.hooked and read_after is not None and home in read_after:
        if _pages(read_after[home]) < _pages(k.before.frames.buddy_blocks(zone)):
            why += ("record-gap",)
    return why


def _free_above(frames: PageFrames, zone: ZoneSpan, meet: int | None) -> int | None:
    if meet is None:
        return None
    start = -(-meet // 512) * 512
    return len(frames.pfns_of(".", start, zone.end_pfn))


def _pages(blocks: list[int]) -> int:
    return sum(n << o for o, n in enumerate(blocks))


def _driver_rows(sc: Scenario, plan: GuestPlan, k: KernelRun, m: ModelRun) -> list[Row]:
    rows: list[Row] = []
    hist = ("reclaim-order",) if sc.kind == "zswap" else ()
    inst = m.instance
    if sc.kind == "zram":
        sec = "ZRAM (mm_stat | the model's zsmalloc)"
        ks = k.before.mm_stat or {}
        huge = inst.huge_class_size if inst is not None else 0
        freed = set(plan.facts["freed"])
        compr = sum(s for i, b in enumerate(sc.blocks)
                    if i not in freed and (s := zram_object_size(b, huge)) is not None)
        filled = k.extra.get("mm_stat.filled", {})
        mf = m.extra.get("filled_pages")
        if filled and mf is not None:
            rows.append(Row(sec, "zsmalloc pages after the fill",
                            filled["mem_used_total"] // PAGE_SIZE, mf))
        rows.append(Row(sec, "compr_data_size before compaction", ks.get("compr_data_size"), compr))
        rows.append(Row(sec, "zsmalloc pages before compaction (mem_used_total)",
                        ks.get("mem_used_total", 0) // PAGE_SIZE, m.extra.get("pages_before")))
        ka = k.after.mm_stat or {}
        rows.append(Row(sec, "zsmalloc pages after compact_memory", ka.get("mem_used_total", 0)
                        // PAGE_SIZE, m.extra.get("pages_before")))
        kc = k.extra.get("mm_stat.compacted")
        if kc is not None and "compact_freed" in m.extra:
            rows.append(Row(sec, "pages freed by zram's compact (pages_compacted)",
                            kc["pages_compacted"] - ka.get("pages_compacted", 0),
                            m.extra["compact_freed"]))
            rows.append(Row(sec, "zsmalloc pages after zram's compact",
                            kc["mem_used_total"] // PAGE_SIZE, m.extra["pages_after_compact"]))
    elif sc.kind == "balloon":
        sec = "BALLOON (/proc/vmstat | the model's balloon)"
        kv = k.before.vmstat
        rows.append(Row(sec, "balloon pages (balloon_inflate - balloon_deflate)",
                        kv.get("balloon_inflate", 0) - kv.get("balloon_deflate", 0),
                        len(inst.pages()) if inst is not None else 0))
    else:
        sec = "ZSWAP (debugfs zswap | the model's z3fold)"
        zs = k.before.zswap or {}
        objects = zs.get("stored_pages", 0) - zs.get("same_filled_pages", 0)
        rows.append(Row(sec, "objects in the pool", objects, m.extra.get("objects"), "±2%",
                        ("reclaim-order",)))
        kpages = zs.get("pool_total_size", 0) // PAGE_SIZE
        rows.append(Row(sec, "z3fold pages (pool_total_size)", kpages,
                        len(inst.pages()) if inst is not None else 0, "±5%", ("reclaim-order",)))
        kmov = len(k.before.frames.pfns_of(DRIVERS["z3fold"][0]))
        rows.append(Row(sec, "headless z3fold pages (not movable)", kpages - kmov,
                        m.extra.get("headless"), "±10%", ("reclaim-order",)))
    if m.placement:
        rows.append(Row("PLACEMENT (how the model's driver pages sit on the kernel's pfns)",
                        "model driver pages without a kernel driver pfn", 0,
                        m.placement.get("extra", 0),
                        reasons=(("headless", "one-zone") + hist) if sc.kind == "zswap" else (),
                        note="placed on free pfns of the snapshot"))
        rows.append(Row("PLACEMENT (how the model's driver pages sit on the kernel's pfns)",
                        "kernel driver pfns without a model page", 0,
                        m.placement.get("unfilled", 0),
                        reasons=("reclaim-order",) if sc.kind == "zswap" else ()))
    return rows


# --- rendering ---------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render(rows: list[Row], header: str, columns: tuple[str, ...] = ("model",)) -> str:
    """The table; `columns` names the model columns (one, or v4.19 and the guest's release)."""
    two = any(r.guested for r in rows)
    w = max(len(r.label) for r in rows) + 2
    wk = max([len(_fmt(r.kernel)) for r in rows] + [6]) + 2
    wm = max([len(_fmt(r.model)) for r in rows] + [len(columns[0])]) + 2
    wg = max([len(_fmt(r.guest)) for r in rows] + [len(columns[-1])]) + 2 if two else 0
    title = f"{'':<{w}}{'kernel':>{wk}}{columns[0]:>{wm}}"
    if two:
        title += f"{columns[-1]:>{wg}}"
    out = [header, f"{title}  {'tolerance':<10} verdict"]
    sec = None
    for r in rows:
        if r.section != sec:
            sec = r.section
            out.append(sec)
        line = f"  {r.label:<{w - 2}}{_fmt(r.kernel):>{wk}}{_fmt(r.model):>{wm}}"
        if two:
            line += f"{_fmt(r.guest):>{wg}}"
        out.append(f"{line}  {r.tolerance:<10} {r.verdict}")
    cited = sorted({x for r in rows for x in r.cited})
    if cited:
        out.append("")
        out.append("Reasons the verdicts name:")
        for x in cited:
            out.append(f"  {x}: {REASONS[x]}")
    bad = [r for r in rows if not r.ok and not r.cited]
    if bad:
        out.append("")
        out.append(f"{len(bad)} row(s) differ without a known reason: " +
                   "; ".join(r.label for r in bad))
    return "\n".join(out) + "\n"


def rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = asdict(r)
        d["verdict"] = r.verdict
        out.append(d)
    return out
