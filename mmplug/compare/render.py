"""Rendering comparison results: the terminal table, the kernel's text formats, JSON.

The table puts drivers in columns and metrics in rows, grouped as a kernel
developer reads them: isolation, migration, the STA-1 counters, the outcome
in free memory, the pageblocks that could not be emptied, integrity, cost.
With several seeds every number is the mean, followed by ±sample stdev.

`--format kernel` prints each driver's end state as the kernel prints it
(mm/vmstat.c: frag_show_print for /proc/buddyinfo, pagetypeinfo_show for
/proc/pagetypeinfo, vmstat_show for /proc/vmstat, unusable_show_print and
extfrag_show_print for /sys/kernel/debug/extfrag/*), so it can be put beside
a real machine's files.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Callable

from ..constants import MIGRATETYPE_NAMES
from ..vmstat import KERNEL_EVENTS, format_index
from .metrics import Snapshot, flatten
from .runner import iter_public, versions
from .workload import describe_size

ZONE_NAME = "Normal"


# --- values over seeds ------------------------------------------------------------------

def _values(runs: list[dict[str, Any]], path: str) -> list[Any]:
    return [flatten(r).get(path) for r in runs]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _fmt_number(x: float, decimals: int) -> str:
    if decimals == 0 and float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.{decimals or 1}f}"


def cell(runs: list[dict[str, Any]], path: str, *, decimals: int = 0,
         index: bool = False, percent: bool = False) -> str:
    """One metric of one driver: the value, or mean±stdev over seeds."""
    vals = _values(runs, path)
    nums = [_num(v) for v in vals]
    if any(n is None for n in nums):
        first = vals[0]
        return "-" if first is None else str(first)
    if percent:
        nums = [n * 100 for n in nums]
    if len(nums) == 1:
        if index:
            return format_index(round(nums[0] * 1000))
        text = _fmt_number(nums[0], decimals)
        return text + ("%" if percent else "")
    mean = statistics.fmean(nums)
    sd = statistics.stdev(nums)
    d = 3 if index else max(decimals, 1)
    return f"{mean:,.{d}f}±{sd:,.{d}f}" + ("%" if percent else "")


def pair(runs: list[dict[str, Any]], before: str, after: str, **kw: Any) -> str:
    return f"{cell(runs, before, **kw)} → {cell(runs, after, **kw)}"


# --- the table ----------------------------------------------------------------------------

Row = tuple[str, Callable[[list[dict[str, Any]]], str]]


def _c(path: str, **kw: Any) -> Callable[[list[dict[str, Any]]], str]:
    return lambda runs: cell(runs, path, **kw)


def _p(before: str, after: str, **kw: Any) -> Callable[[list[dict[str, Any]]], str]:
    return lambda runs: pair(runs, before, after, **kw)


def _errnos(runs: list[dict[str, Any]]) -> str:
    total: dict[str, int] = {}
    for r in runs:
        for k, v in r.get("driver_callbacks", {}).get("migratepage_permanent_by_errno", {}).items():
            total[k] = total.get(k, 0) + v
    if not total:
        return cell(runs, "driver_callbacks.migratepage_permanent")
    n = len(runs)
    return ", ".join(f"{k} {v / n:g}" for k, v in sorted(total.items()))


def _knob(name: str, stat: str) -> Callable[[list[dict[str, Any]]], str]:
    def get(runs: list[dict[str, Any]]) -> str:
        if name not in runs[0].get("capabilities", {}).get("knobs", []):
            return "n/a"
        return cell(runs, f"workload_stats.{stat}")
    return get


def _o9(runs: list[dict[str, Any]]) -> str:
    a = _values(runs, "outcome.allocations.9.attempts")
    if a[0] is None:
        return "-"
    return (f"{cell(runs, 'outcome.allocations.9.successes')}/{cell(runs, 'outcome.allocations.9.attempts')}"
            f" ({cell(runs, 'outcome.order9_success_rate', percent=True)})")


def _status(runs: list[dict[str, Any]]) -> str:
    bad = [r for r in runs if r["status"] != "ok"]
    return "ok" if not bad else f"ERROR ({len(bad)}/{len(runs)})"


def _verify(runs: list[dict[str, Any]]) -> str:
    vals = {str(r.get("integrity", {}).get("driver_verify", "-")) for r in runs}
    return "ok" if vals == {"ok"} else ", ".join(sorted(v[:30] for v in vals))


def _warnings(runs: list[dict[str, Any]]) -> str:
    return str(sum(len(r.get("integrity", {}).get("vm_warnings", [])) for r in runs))


SECTIONS: list[tuple[str, list[Row]]] = [
    ("", [("status", _status)]),
    ("workload on this driver", [
        ("objects stored", _c("workload_stats.objects_stored")),
        ("stores failed (no memory)", _c("workload_stats.store_no_memory")),
        ("LRU / slab pages", lambda r: f"{cell(r, 'workload_stats.lru_pages')} / "
                                       f"{cell(r, 'workload_stats.slab_pages')}"),
        ("objects pinned (knob pin)", _knob("pin", "pins")),
        ("objects mapped (knob map)", _knob("map", "maps")),
        ("lock held (knob busy)", _knob("busy", "holds")),
    ]),
    ("isolation", [
        ("isolation attempts", _c("isolation.attempts")),
        ("isolated", _c("isolation.isolated")),
        ("refused by driver", _c("isolation.refused_by_driver")),
        ("failed: page locked", _c("isolation.failed_page_locked")),
        ("failed: released/isolated", _c("isolation.failed_released_or_isolated")),
    ]),
    ("migration", [
        ("pgmigrate_success", _c("counters.pgmigrate_success")),
        ("pgmigrate_fail", _c("counters.pgmigrate_fail")),
        ("migratepage -EAGAIN", _c("driver_callbacks.migratepage_eagain")),
        ("migratepage permanent", _errnos),
        ("putbacks", _c("migration.putbacks")),
        ("released while isolated", _c("migration.released_while_isolated")),
    ]),
    ("compaction (STA-1)", [
        ("compact_migrate_scanned", _c("counters.compact_migrate_scanned")),
        ("compact_free_scanned", _c("counters.compact_free_scanned")),
        ("compact_isolated", _c("counters.compact_isolated")),
        ("compact_stall", _c("counters.compact_stall")),
        ("compact_success", _c("counters.compact_success")),
        ("compact_fail", _c("counters.compact_fail")),
    ]),
    ("outcome (before → after)", [
        ("free pages", _p("outcome.before.nr_free_pages", "outcome.after.nr_free_pages")),
        ("free pageblocks", _p("outcome.before.free_pageblocks", "outcome.after.free_pageblocks")),
        ("unusable index order 3", _p("outcome.before.unusable_index_3",
                                      "outcome.after.unusable_index_3", index=True)),
        ("unusable index order 9", _p("outcome.before.unusable_index_9",
                                      "outcome.after.unusable_index_9", index=True)),
        ("extfrag index order 3", _p("outcome.before.extfrag_index_3",
                                     "outcome.after.extfrag_index_3", index=True)),
        ("extfrag index order 9", _p("outcome.before.extfrag_index_9",
                                     "outcome.after.extfrag_index_9", index=True)),
        ("order-9 allocations", _o9),
    ]),
    ("pageblocks not emptied, by cause", [
        ("unmovable (slab, held)", _c("blocking.blocking_by_cause.unmovable")),
        ("driver page not movable", _c("blocking.blocking_by_cause.driver_not_movable")),
        ("driver refused isolation", _c("blocking.blocking_by_cause.refused_isolation")),
        ("permanent failure", _c("blocking.blocking_by_cause.permanent_failure")),
        ("pinned/-EAGAIN to the end", _c("blocking.blocking_by_cause.eagain_until_end")),
        ("target or not reached", _c("blocking.blocking_by_cause.target_or_not_reached")),
        ("order-9 ceiling", _c("blocking.ceiling")),
        ("order-9 obtained", _c("blocking.obtained")),
        ("efficiency", _c("blocking.efficiency", percent=True)),
    ]),
    ("integrity", [
        ("objects verified", _c("integrity.objects_verified")),
        ("objects lost", _c("integrity.objects_lost")),
        ("objects corrupted", _c("integrity.objects_corrupted")),
        ("leaked pages", _c("integrity.leaked_pages")),
        ("driver verify()", _verify),
        ("VM warnings", _warnings),
    ]),
    ("cost", [
        ("pages scanned (migrate)", _c("cost.pages_scanned_migrate")),
        ("pages scanned (free)", _c("cost.pages_scanned_free")),
        ("pages isolated", _c("cost.pages_isolated")),
        ("MiB copied", lambda r: cell([{"x": x / 2**20} for x in _values(r, "cost.bytes_copied")],
                                      "x", decimals=1)),
        ("Gorman cost (Mwords)", lambda r: cell(
            [{"x": x / 1e6} for x in _values(r, "cost.gorman_words.total")], "x", decimals=2)),
        ("wall time (s)", _c("wall_seconds.run", decimals=2)),
    ]),
]


def header(scenario: dict[str, Any], seeds: list[int]) -> str:
    size = describe_size(scenario["nr_pages"] * scenario["page_size"])
    what = scenario.get("description") or ""
    kind = "trace" if scenario.get("kind") == "trace" else "workload"
    seed_text = (f"seed {seeds[0]}" if len(seeds) == 1
                 else f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} runs, mean±stdev)")
    if kind == "trace":
        seed_text = f"replayed exactly ({scenario['events']} events)" + (
            "" if len(seeds) == 1 else f", {len(seeds)} runs")
    cpus = scenario.get("cpus", 1)
    cpu_text = f", {cpus} CPUs" if cpus > 1 else ""
    lines = [f"{kind} {scenario['name']}: {scenario['nr_pages']:,} pages of "
             f"{scenario['page_size']} bytes ({size}){cpu_text}, {seed_text}"]
    if what:
        lines.append(what)
    return "\n".join(lines)


def table(results: list[list[dict[str, Any]]], scenario: dict[str, Any], seeds: list[int]) -> str:
    names = [runs[0]["driver"] for runs in results]
    label_w = max(len(label) for _, rows in SECTIONS for label, _ in rows) + 2
    cols = [[fn(runs) for _, rows in SECTIONS for _, fn in rows] for runs in results]
    widths = [max([len(n)] + [len(c) for c in col]) for n, col in zip(names, cols)]
    out = [header(scenario, seeds), ""]
    out.append(" " * label_w + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths)))
    i = 0
    for title, rows in SECTIONS:
        if title:
            out.append(title.upper())
        for label, _ in rows:
            out.append(f"  {label:<{label_w - 2}}" +
                       "  ".join(f"{col[i]:>{w}}" for col, w in zip(cols, widths)))
            i += 1
    out.append("")
    out.extend(buddyinfo_rows(results))
    errors = [(runs[0]["driver"], r["error"]) for runs in results for r in runs if r["error"]]
    for name, err in errors[:len(results)]:
        out.append(f"error in {name}: {err}")
    return "\n".join(out) + "\n"


def buddyinfo_rows(results: list[list[dict[str, Any]]]) -> list[str]:
    """Free blocks per order before and after, per driver (first seed; /proc/buddyinfo)."""
    rows = [[runs[0]["driver"], when] + [str(n) for n in runs[0]["outcome"][when]["buddyinfo"]]
            for runs in results for when in ("before", "after")]
    orders = len(rows[0]) - 2 if rows else 0
    head = ["", ""] + [str(o) for o in range(orders)]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    seeds = len(results[0]) if results else 1
    title = "FREE BLOCKS PER ORDER (/proc/buddyinfo)" + (", first seed" if seeds > 1 else "")
    lines = [title, "  " + "  ".join(h.rjust(w) if i > 1 else h.ljust(w)
                                     for i, (h, w) in enumerate(zip(head, widths)))]
    for r in rows:
        lines.append("  " + "  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                                      for i, (c, w) in enumerate(zip(r, widths))))
    return lines


# --- the kernel's formats -----------------------------------------------------------------

def buddyinfo_text(snap: Snapshot) -> str:
    return (f"Node 0, zone {ZONE_NAME:>8} " + "".join(f"{n:6d} " for n in snap.buddyinfo) + "\n")


def pagetypeinfo_text(snap: Snapshot, pageblock_order: int = 9) -> str:
    lines = [f"Page block order: {pageblock_order}",
             f"Pages per block:  {1 << pageblock_order}", ""]
    orders = len(snap.buddyinfo)
    lines.append(f"{'Free pages count per migrate type at order':<43} "
                 + "".join(f"{o:6d} " for o in range(orders)))
    for mt, counts in enumerate(snap.free_by_type):
        lines.append(f"Node {0:4d}, zone {ZONE_NAME:>8}, type {MIGRATETYPE_NAMES[mt]:>12} "
                     + "".join(f"{n:6d} " for n in counts))
    lines.append("")
    lines.append(f"{'Number of blocks type ':<23}"
                 + "".join(f"{name:>12} " for name in MIGRATETYPE_NAMES))
    lines.append(f"Node 0, zone {ZONE_NAME:>8} " + "".join(f"{n:12d} " for n in snap.blocks_by_type))
    return "\n".join(lines) + "\n"


def index_text(indices: list[int]) -> str:
    return f"Node 0, zone {ZONE_NAME:>8} " + "".join(f"{format_index(i)} " for i in indices) + "\n"


def kernel_text(results: list[list[dict[str, Any]]]) -> str:
    """Every driver's end state (first seed) in the kernel's own formats."""
    out = []
    for runs in results:
        r = runs[0]
        snap: Snapshot = r["_after"]
        name = r["driver"]
        out.append(f"==> {name}: /proc/buddyinfo <==\n{buddyinfo_text(snap)}")
        out.append(f"==> {name}: /proc/pagetypeinfo <==\n{pagetypeinfo_text(snap)}")
        names = list(KERNEL_EVENTS)
        out.append(f"==> {name}: /proc/vmstat <==\n"
                   + "".join(f"{n} {r['counters'].get(n, 0)}\n" for n in names))
        out.append(f"==> {name}: /sys/kernel/debug/extfrag/unusable_index <==\n"
                   f"{index_text(snap.unusable)}")
        out.append(f"==> {name}: /sys/kernel/debug/extfrag/extfrag_index <==\n"
                   f"{index_text(snap.extfrag)}")
    return "\n".join(out)


# --- JSON -----------------------------------------------------------------------------------

def json_document(results: list[list[dict[str, Any]]], scenario: dict[str, Any],
                  seeds: list[int]) -> dict[str, Any]:
    from .metrics import aggregate
    drivers = {}
    for runs in results:
        public = [dict(iter_public(r)) for r in runs]
        entry: dict[str, Any] = {"version": runs[0]["version"], "runs": public}
        if len(runs) > 1:
            entry["summary"] = aggregate([{k: v for k, v in p.items() if k != "wall_seconds"}
                                          for p in public])
        drivers[runs[0]["driver"]] = entry
    return {"mmplug": versions(results)["mmplug"], "versions": versions(results),
            "workload": scenario, "seeds": seeds, "drivers": drivers}


def json_text(results: list[list[dict[str, Any]]], scenario: dict[str, Any],
              seeds: list[int]) -> str:
    return json.dumps(json_document(results, scenario, seeds), indent=2, sort_keys=False) + "\n"
