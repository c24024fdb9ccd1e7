"""Rendering comparison results: the terminal table, the kernel's text formats, JSON.

The table puts drivers in columns and metrics in rows, grouped as a kernel
developer reads them: isolation, migration, the STA-1 counters, the outcome
in free memory, the order-9 blocks obtained against the ceiling, the
pageblocks that could not be emptied, integrity, cost.  Every row and its
definition come from mmplug.compare.rows.  With several seeds every number
is the mean, followed by ±sample stdev.

`--format kernel` prints each driver's end state as the kernel prints it
(mm/vmstat.c: frag_show_print for /proc/buddyinfo, pagetypeinfo_show for
/proc/pagetypeinfo, vmstat_show for /proc/vmstat, unusable_show_print and
extfrag_show_print for /sys/kernel/debug/extfrag/*), so it can be put beside
a real machine's files.
"""

from __future__ import annotations

import json
from typing import Any

from ..constants import MIGRATETYPE_NAMES
from ..vmstat import KERNEL_EVENTS, format_index
from .metrics import Snapshot
from .rows import TABLE_ROWS, sections
from .runner import iter_public, versions
from .workload import describe_size

ZONE_NAME = "Normal"


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


def origins(results: list[list[dict[str, Any]]]) -> list[str]:
    """One line per driver: which code ran (`NAME@FILE` and a file override say so)."""
    return [f"{runs[0]['driver']} {runs[0]['version']}: {runs[0].get('origin', '?')}"
            for runs in results]


def table(results: list[list[dict[str, Any]]], scenario: dict[str, Any], seeds: list[int]) -> str:
    names = [runs[0]["driver"] for runs in results]
    label_w = max(len(row.label) for row in TABLE_ROWS) + 2
    cols = [[row.value(runs) for _, rows in sections() for row in rows] for runs in results]
    widths = [max([len(n)] + [len(c) for c in col]) for n, col in zip(names, cols)]
    out = [header(scenario, seeds), *origins(results), ""]
    out.append(" " * label_w + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths)))
    i = 0
    for title, rows in sections():
        if title:
            out.append(title.upper())
        for row in rows:
            out.append(f"  {row.label:<{label_w - 2}}" +
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
    """compare's JSON: every run, and the kernel the runs modelled (`--kernel-version`)."""
    from ..vm import kernel_model
    doc = json_document(results, scenario, seeds)
    doc["kernel"] = kernel_model()
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def sweep_json_text(sweep: list[list[list[dict[str, Any]]]], scenarios: list[dict[str, Any]],
                    seeds: list[int]) -> str:
    """A sweep's JSON: per workload, the document one workload's comparison gives (every
    run, and each driver's summary over the seeds)."""
    from ..vm import kernel_model
    docs = [json_document(results, sdict, seeds) for results, sdict in zip(sweep, scenarios)]
    doc = {"mmplug": docs[0]["mmplug"], "versions": docs[0]["versions"], "seeds": seeds,
           "workloads": [{k: v for k, v in d.items() if k not in ("mmplug", "versions", "seeds")}
                         for d in docs],
           "kernel": kernel_model()}
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
