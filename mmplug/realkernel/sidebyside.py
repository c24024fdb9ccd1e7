"""The side-by-side table: one row per figure, kernel | model | tolerance | verdict.

A row outside its tolerance names the reasons it differs: each reason is a
difference between the model's v4.19 and the guest's 6.1 (or between the
machine and the model), naming the functions on both sides.  A row outside
its tolerance with no reason says so: that is a defect to fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..compare.snapshot import DRIVERS, PageFrames, ZoneSpan
from .kernelside import KernelRun
from .modelside import ModelRun
from .scenario import PAGE_SIZE, GuestPlan, Scenario, zram_object_size

#: the reasons of every row that depends on where the scanners met
MEET = ("stride", "rescan")

#: Named differences a row may cite.  Each names the functions on both sides.
REASONS = {
    "stride": (
        "6.1's free scanner samples: isolate_freepages() passes isolate_freepages_block() a "
        "stride that doubles, up to COMPACT_CLUSTER_MAX, after each pageblock that gave no free "
        "page, and resets to 1 after one that did; v4.19's isolate_freepages_block() looks at "
        "every pfn.  The kernel scans fewer pages (compact_free_scanned) and passes free pages "
        "by, so it comes down further for the same targets and the scanners meet lower: the "
        "rows that depend on where they met move with it."),
    "rescan": (
        "6.1 finishes a pageblock in one go: compact_zone() sets cc->rescan when the migrate "
        "scanner resumes in the pageblock of the previous migration, and "
        "isolate_migratepages_block() then isolates the rest of the block instead of stopping "
        "at COMPACT_CLUSTER_MAX; v4.19's isolate_migratepages_block() always stops at 32 "
        "pages.  Bigger batches take more targets from compaction_alloc() at once, so the free "
        "scanner comes down further and the scanners meet at another pfn: the rows that depend "
        "on where they met (pages migrated and isolated, pages scanned, free blocks after, "
        "pageblocks emptied) move with it; the last batch may also hold more pages than the "
        "free scanner can still find targets for, and those go back (putback_movable_pages)."),
    "zone-end": (
        "The model's zone is whole pageblocks: the pfns past the real zone's end in its last "
        "pageblock are held pages in the model, which its free scanner (isolate_freepages_block) "
        "scans and the kernel's, bounded by zone_end_pfn(), does not."),
    "drift": (
        "Not a difference of the model: /proc/kpageflags is read a moment after "
        "/proc/buddyinfo (the per-cpu lists drained before each), and a guest still busy "
        "after reclaim and swap-out allocates or frees pages in between.  The model starts "
        "from the snapshot, not from /proc/buddyinfo."),
    "one-zone": (
        "The model's driver instance lives in one zone (the one holding most of its pages); "
        "the kernel's pool allocates in every zone, here in DMA under memory pressure "
        "(__alloc_pages() falling back along the zonelist in both versions).  Its pages in "
        "other zones are held, unmovable pages in the model."),
    "headless": (
        "z3fold pages of one large object (headless) are not movable in either version "
        "(z3fold_alloc() calls __SetPageMovable() only for pages with a header), so the probe, "
        "which lists movable pages, does not see the kernel's: the model's headless pages take "
        "free pfns of the snapshot."),
    "reclaim-order": (
        "Which tmpfs pages zswap holds is decided by reclaim (shrink_inactive_list() and the "
        "LRU order, both versions): the model stores the first pages written, as many as zswap "
        "held; z3fold then packs a different sequence of objects (z3fold_alloc(), "
        "z3fold_free()), so its page count and layout are close, not equal."),
}


@dataclass
class Row:
    section: str
    label: str
    kernel: Any
    model: Any
    tolerance: str = "exact"
    reasons: tuple[str, ...] = ()
    note: str = ""
    ok: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.ok = within(self.kernel, self.model, self.tolerance)

    @property
    def verdict(self) -> str:
        if self.ok:
            return "agrees"
        if self.reasons:
            return "differs: " + ", ".join(self.reasons)
        return "DIFFERS, unexplained"


def within(k: Any, m: Any, tolerance: str) -> bool:
    if k is None or m is None or tolerance == "shown":
        return True
    if tolerance == "exact" or not isinstance(k, (int, float)) or not isinstance(m, (int, float)):
        return k == m
    t = tolerance.lstrip("±")
    if t.endswith("%"):
        return abs(k - m) <= abs(k) * float(t[:-1]) / 100
    return abs(k - m) <= float(t)


def _zone_start(frames: PageFrames, name: str) -> ZoneSpan:
    return frames.zone(name)


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


def build_rows(sc: Scenario, plan: GuestPlan, k: KernelRun, m: ModelRun) -> list[Row]:
    rows: list[Row] = []
    driver = sc.driver
    # zswap's history is reclaim's: rows that depend on which objects sit where cite it
    hist = ("reclaim-order",) if sc.kind == "zswap" else ()
    code = DRIVERS[driver][0]
    home = m.driver_zone or k.before.frames.zones[-1].name
    kz = k.before.frames.zone(home)

    # --- the starting point -------------------------------------------------------------
    sec = "START (the snapshot the model is built from)"
    for z in k.before.frames.zones:
        bi = k.before.buddyinfo.get(z.name)
        snap = k.before.frames.buddy_blocks(z)
        rows.append(Row(sec, f"{z.name} free pages: /proc/buddyinfo | snapshot",
                        _pages(bi) if bi else None, _pages(snap), "±0.5%", ("drift",),
                        note="the model starts from the snapshot's free pages"))
    rows.append(Row(sec, f"{home} free pageblocks before", k.before.frames.free_pageblocks(kz),
                    m.before.free_pageblocks(kz)))
    rows.append(Row(sec, f"{driver} pages before compaction (movable)",
                    len(k.before.frames.pfns_of(code)), len(m.before.pfns_of(code)),
                    reasons=hist))
    if m.driver_elsewhere:
        rows.append(Row(sec, f"{driver} pages outside {home} (unmovable in the model)",
                        m.driver_elsewhere, 0, reasons=("one-zone",)))

    # --- compaction's counters ---------------------------------------------------------------
    sec = "COMPACTION (echo 1 > /proc/sys/vm/compact_memory: every zone)"
    kmeet = k.meeting_point(kz.start_pfn)
    rows.append(Row(sec, f"{home} pfn where the scanners met", kmeet, m.meeting.get(home),
                    "±512", MEET))
    spec = {"pgmigrate_success": ("±5%", MEET), "pgmigrate_fail": ("exact", MEET),
            "compact_isolated": ("±5%", MEET), "compact_migrate_scanned": ("±5%", MEET),
            "compact_free_scanned": ("±10%", MEET + ("zone-end",))}
    if driver == "balloon":
        spec["balloon_migrate"] = ("±5%", MEET)
    for name, (tol, why) in spec.items():
        rows.append(Row(sec, name, k.counter(name), m.counters.get(name, 0), tol, why))
    rows.append(Row(sec, f"{home} free pages left above where the scanners met",
                    _free_above(k.after.frames, kz, kmeet), _free_above(m.after, kz,
                                                                       m.meeting.get(home)),
                    "±10%", MEET, note="free pages the free scanner passed by or gave back"))
    # The pageblocks both migrate scanners went through, short of the one where either met
    # the free scanner: there every movable page should have moved on both sides.
    common = (min(x for x in (kmeet, m.meeting.get(home), kz.end_pfn) if x is not None) - 1) \
        // 512 * 512
    rows.append(Row(sec, f"{home} LRU and {driver} pages moved below pfn {common}",
                    _movable_moved(k.before.frames, k.after.frames, kz, common),
                    _movable_moved(m.before, m.after, kz, common), "±1%", hist,
                    note="the pageblocks both migrate scanners passed"))

    # --- free memory after ---------------------------------------------------------------------
    sec = f"FREE BLOCKS AFTER ({home}, /proc/buddyinfo | the model's free lists)"
    kb = k.after.buddyinfo.get(home, [])
    mz = next(z for z in m.zones if z.name == home)
    mb = mz.vm.zone.buddyinfo()
    for order in range(len(mb)):
        kv = kb[order] if order < len(kb) else None
        tol = f"±{max(3, (kv or 0) // 10)}"
        rows.append(Row(sec, f"order {order}", kv, mb[order], tol, MEET))
    for z in m.zones:
        if z.name != home:
            rows.append(Row(sec.replace(home, z.name), f"{z.name} buddyinfo",
                            " ".join(map(str, k.after.buddyinfo.get(z.name, []))),
                            " ".join(map(str, z.vm.zone.buddyinfo())), "exact",
                            MEET + (("one-zone",) if m.driver_elsewhere else ())))
    kfree = k.after.frames.free_pageblocks(kz) - k.before.frames.free_pageblocks(kz)
    mfree = m.after.free_pageblocks(kz) - m.before.free_pageblocks(kz)
    rows.append(Row(sec, "pageblocks emptied by compaction", kfree, mfree, "±2", MEET))

    # --- the driver ------------------------------------------------------------------------------
    sec = f"DRIVER ({driver})"
    km = _moved(k.before.frames, k.after.frames, code, kz, kmeet)
    mm = _moved(m.before, m.after, code, kz, m.meeting.get(home))
    rows.append(Row(sec, f"{driver} pages migrated", km["migrated"], mm["migrated"], "±5%",
                    MEET + hist))
    rows.append(Row(sec, "unmoved: beyond where the scanners met", km["unmoved_beyond"],
                    mm["unmoved_beyond"], "±5%", MEET + hist))
    rows.append(Row(sec, "unmoved: scanned, refused or failed", km["unmoved_scanned"],
                    mm["unmoved_scanned"], "±5%", ("rescan",) + hist,
                    note="isolated in the last batch and put back when the scanners met"))
    rows.extend(_driver_rows(sc, plan, k, m))
    return rows


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
            rows.append(Row(sec, "zsmalloc pages after the fill", filled["mem_used_total"] // PAGE_SIZE,
                            mf))
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


def render(rows: list[Row], header: str) -> str:
    w = max(len(r.label) for r in rows) + 2
    wk = max([len(_fmt(r.kernel)) for r in rows] + [6]) + 2
    wm = max([len(_fmt(r.model)) for r in rows] + [5]) + 2
    out = [header, f"{'':<{w}}{'kernel':>{wk}}{'model':>{wm}}  {'tolerance':<10} verdict"]
    sec = None
    for r in rows:
        if r.section != sec:
            sec = r.section
            out.append(sec)
        out.append(f"  {r.label:<{w - 2}}{_fmt(r.kernel):>{wk}}{_fmt(r.model):>{wm}}  "
                   f"{r.tolerance:<10} {r.verdict}")
    cited = sorted({x for r in rows if not r.ok for x in r.reasons})
    if cited:
        out.append("")
        out.append("Reasons for the rows that differ:")
        for x in cited:
            out.append(f"  {x}: {REASONS[x]}")
    bad = [r for r in rows if not r.ok and not r.reasons]
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
