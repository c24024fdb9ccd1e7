"""Every row of `mmplug compare`'s table: how its cell is computed and what it means.

One definition per row: the label the table prints, the cell function, the
formula, the kernel source where there is one, the JSON fields it reads and
how to read it.  The table (render.py), `mmplug explain ROW`, `mmplug
compare --explain ROW`, the HTML report and docs/metrics.md all come from
ROWS, so a row cannot be shown without its definition.  docs/metrics.md is
written by `python -m mmplug.compare.rows > docs/metrics.md`.
"""

from __future__ import annotations

import difflib
import re
import statistics
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from attrs import frozen

from ..errors import UsageError
from ..vmstat import format_index
from .metrics import flatten

Runs = list[dict[str, Any]]


# --- cells: one driver's value, or mean±stdev over seeds -------------------------------------

def _values(runs: Runs, path: str) -> list[Any]:
    return [flatten(r).get(path) for r in runs]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)   # the indices are kept as the kernel prints them, "0.123"
        except ValueError:
            return None
    return None


def _fmt_number(x: float, decimals: int) -> str:
    if decimals == 0 and float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.{decimals or 1}f}"


def cell(runs: Runs, path: str, *, decimals: int = 0, index: bool = False,
         percent: bool = False) -> str:
    """One metric of one driver: the value, or mean±stdev over seeds."""
    vals = _values(runs, path)
    maybe = [_num(v) for v in vals]
    nums = [n for n in maybe if n is not None]
    if len(nums) != len(maybe):
        first = vals[0]
        return "-" if first is None else str(first)
    if percent:
        nums = [n * 100 for n in nums]
    if len(nums) == 1:
        if index:
            return format_index(round(nums[0] * 1000))
        return _fmt_number(nums[0], decimals) + ("%" if percent else "")
    mean = statistics.fmean(nums)
    sd = statistics.stdev(nums)
    d = 3 if index else max(decimals, 1)
    return f"{mean:,.{d}f}±{sd:,.{d}f}" + ("%" if percent else "")


def pair(runs: Runs, before: str, after: str, **kw: Any) -> str:
    return f"{cell(runs, before, **kw)} → {cell(runs, after, **kw)}"


def _c(path: str, **kw: Any) -> Callable[[Runs], str]:
    return lambda runs: cell(runs, path, **kw)


def _p(before: str, after: str, **kw: Any) -> Callable[[Runs], str]:
    return lambda runs: pair(runs, before, after, **kw)


def _scaled(path: str, divisor: float, decimals: int) -> Callable[[Runs], str]:
    return lambda runs: cell([{"x": x / divisor} for x in _values(runs, path)], "x",
                             decimals=decimals)


def _errnos(runs: Runs) -> str:
    total: dict[str, int] = {}
    for r in runs:
        for k, v in r.get("driver_callbacks", {}).get("migratepage_permanent_by_errno", {}).items():
            total[k] = total.get(k, 0) + v
    if not total:
        return cell(runs, "driver_callbacks.migratepage_permanent")
    n = len(runs)
    return ", ".join(f"{k} {v / n:g}" for k, v in sorted(total.items()))


def _knob(name: str, stat: str) -> Callable[[Runs], str]:
    def get(runs: Runs) -> str:
        if name not in runs[0].get("capabilities", {}).get("knobs", []):
            return "n/a"
        return cell(runs, f"workload_stats.{stat}")
    return get


def _o9(runs: Runs) -> str:
    if _values(runs, "outcome.allocations.9.attempts")[0] is None:
        return "-"
    return (f"{cell(runs, 'outcome.allocations.9.successes')}/"
            f"{cell(runs, 'outcome.allocations.9.attempts')}"
            f" ({cell(runs, 'outcome.order9_success_rate', percent=True)})")


def _status(runs: Runs) -> str:
    bad = [r for r in runs if r["status"] != "ok"]
    return "ok" if not bad else f"ERROR ({len(bad)}/{len(runs)})"


def _verify(runs: Runs) -> str:
    vals = {str(r.get("integrity", {}).get("driver_verify", "-")) for r in runs}
    return "ok" if vals == {"ok"} else ", ".join(sorted(v[:30] for v in vals))


def _warnings(runs: Runs) -> str:
    return str(sum(len(r.get("integrity", {}).get("vm_warnings", [])) for r in runs))


def _lru_slab(runs: Runs) -> str:
    return f"{cell(runs, 'workload_stats.lru_pages')} / {cell(runs, 'workload_stats.slab_pages')}"


# --- definitions -------------------------------------------------------------------------------

@frozen(slots=True)
class Row:
    """One row of the table and its definition."""

    #: stable id, e.g. "ceiling" (`mmplug explain ceiling`)
    key: str
    #: what the table prints in its first column
    label: str
    #: the section's title, as in SECTIONS
    section: str
    #: the cell of one driver: runs (one per seed) -> text
    value: Callable[[Runs], str]
    #: how the number is computed
    formula: str
    #: how to read it
    reading: str
    #: the kernel function or file it models; "" for numbers only the model has
    kernel: str = ""
    #: the fields of `--json` it comes from (under drivers.NAME.runs[i])
    fields: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return slug(self.label)


def slug(text: str) -> str:
    """"Gorman cost (Mwords)" -> "gorman-cost-mwords": how a row is named on a command line."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


#: (title, one-line description), in the order of the table
SECTIONS: tuple[tuple[str, str], ...] = (
    ("", "whether the run finished"),
    ("workload on this driver", "what the seeded workload did on this driver"),
    ("isolation", "isolate_movable_page() on this driver's pages (mm/migrate.c)"),
    ("migration", "migrate_pages() and the driver's answers (mm/migrate.c)"),
    ("compaction (STA-1)", "the kernel's compaction counters, as /proc/vmstat shows them"),
    ("outcome (before → after)",
     "free memory just before the first compaction and at the end of the run"),
    ("order-9 blocks at the end", "what compaction got, against what it could have got"),
    ("pageblocks not emptied, by cause",
     "why each pageblock still in use at the end stayed in use: one cause per pageblock"),
    ("integrity", "nothing lost: every object read back through the driver at the end"),
    ("cost", "what the compaction cost"),
    ("free blocks per order", "the free lists, before and after"),
)

def _counted(key: str, label: str, section: str, path: str, *, formula: str, reading: str,
             kernel: str = "", **cell_kw: Any) -> Row:
    """A row showing one field of the JSON as it is (or as an index or a percentage)."""
    return Row(key, label, section, _c(path, **cell_kw), formula=formula, reading=reading,
               kernel=kernel, fields=(path,))


_BEFORE_AFTER = ("Before is the zone just before the run's first compaction; after is the "
                 "end of the run (every round done, knobs released, order-9 blocks the "
                 "workload kept still allocated).")

ROWS: tuple[Row, ...] = (
    # --- status
    Row("status", "status", "", _status,
        formula="ok, or ERROR (k/n): k of the n seeds stopped on a contract violation or a "
                "model error, failed the integrity checks, or left pages behind when the run "
                "ended by destroying the instance (REL-3); the first error is printed under "
                "the table.",
        reading="An ERROR column holds the numbers up to the error. The error names the rule, "
                "the driver, the callback and the page, as check-driver does. Every run ends "
                "as the VM ends an instance: destroy(), after which no page of the instance "
                "may be isolated, point at its mapping or stay in use.",
        fields=("status", "error")),
    # --- workload on this driver
    _counted(
        "objects_stored", "objects stored", "workload on this driver",
        "workload_stats.objects_stored",
        formula="store() calls that succeeded during the whole run (frees do not subtract). "
                "Sizes come from the workload's size mix, capped at the driver's "
                "max_object_size; a size the driver rejects is halved until it fits.",
        reading="Every driver fills the same share of the zone, so a denser driver stores more "
                "objects in it. The balloon stores one page per object."),
    _counted(
        "stores_failed", "stores failed (no memory)", "workload on this driver",
        "workload_stats.store_no_memory",
        formula="store() calls that raised NoMemory: no free page for the driver.",
        reading="Nonzero when the fill target could not be reached; the driver stops being "
                "offered objects in that fill phase."),
    Row("lru_slab", "LRU / slab pages", "workload on this driver", _lru_slab,
        formula="LRU pages and slab pages allocated by the workload's other users.",
        reading="LRU pages are movable (compaction migrates them as anonymous pages); slab "
                "pages are not, and every pageblock holding one stays unusable for order 9.",
        kernel="mm/slub.c, mm/vmscan.c (the users modelled)",
        fields=("workload_stats.lru_pages", "workload_stats.slab_pages")),
    Row("pins", "objects pinned (knob pin)", "workload on this driver", _knob("pin", "pins"),
        formula="pin() calls on live objects while compaction runs; n/a: the driver has no "
                "\"pin\" knob.",
        reading="A pinned object makes its page's migratepage return -EAGAIN (zsmalloc's "
                "pin_tag): look for it under migratepage -EAGAIN and pinned/-EAGAIN to the end.",
        fields=("workload_stats.pins",)),
    Row("maps", "objects mapped (knob map)", "workload on this driver", _knob("map", "maps"),
        formula="map() calls on live objects while compaction runs; n/a: the driver has no "
                "\"map\" knob.",
        reading="A mapped object makes isolation refuse its page, or its migration fail for "
                "good (z3fold's mapped_count: -EBUSY): look under refused by driver and "
                "permanent failure.",
        fields=("workload_stats.maps",)),
    Row("holds", "lock held (knob busy)", "workload on this driver", _knob("busy", "holds"),
        formula="Compaction triggers run with the driver's lock held (hold() ... release()); "
                "n/a: the driver has no \"busy\" knob.",
        reading="While the lock is held every migratepage returns -EAGAIN (the balloon's "
                "mutex_trylock).",
        fields=("workload_stats.holds",)),
    # --- isolation
    _counted(
        "isolation_attempts", "isolation attempts", "isolation", "isolation.attempts",
        formula="isolate_movable_page() calls by the migrate scanner (LRU pages take "
                "isolate_lru_page() and are not counted). It equals the sum of the next six rows.",
        reading="How often compaction reached one of the driver's pages.",
        kernel="mm/migrate.c isolate_movable_page"),
    _counted(
        "isolated", "isolated", "isolation", "isolation.isolated",
        formula="isolate_movable_page() returned 0: the page is PG_isolated and on the "
                "migrate list.",
        reading="Pages handed to migrate_pages.",
        kernel="mm/migrate.c isolate_movable_page"),
    _counted(
        "refused", "refused by driver", "isolation", "isolation.refused_by_driver",
        formula="The driver's isolate_page() returned false.",
        reading="The driver's own choice (ISO-6), e.g. z3fold refuses pages with mapped "
                "objects. A page refused to the end blocks its pageblock: see driver refused "
                "isolation.",
        kernel="mm/migrate.c isolate_movable_page (a_ops->isolate_page)"),
    _counted(
        "failed_locked", "failed: page locked", "isolation", "isolation.failed_page_locked",
        formula="trylock_page() failed: someone held the page lock.",
        reading="Isolation never sleeps; the page is tried again on a later scan.",
        kernel="mm/migrate.c isolate_movable_page (trylock_page)"),
    _counted(
        "failed_released", "failed: released/isolated", "isolation",
        "isolation.failed_released_or_isolated",
        formula="Under the page lock the page was no longer PageMovable (its driver released "
                "it) or already PG_isolated (another compactor has it).",
        reading="Races with the driver's frees and with other compactors; harmless.",
        kernel="mm/migrate.c isolate_movable_page (PageMovable, PageIsolated)"),
    _counted(
        "failed_not_movable", "failed: not movable", "isolation", "isolation.failed_not_movable",
        formula="__PageMovable() was false when the page was looked at again, or it is a slab "
                "page.",
        reading="The page stopped being a movable driver page between the scanner's look and "
                "the isolation.",
        kernel="mm/migrate.c isolate_movable_page (__PageMovable)"),
    _counted(
        "failed_refcount", "failed: no reference", "isolation", "isolation.failed_refcount",
        formula="get_page_unless_zero() failed: the page was being freed.",
        reading="The driver freed the page as compaction reached it; harmless.",
        kernel="mm/migrate.c isolate_movable_page (get_page_unless_zero)"),
    # --- migration
    _counted(
        "pgmigrate_success", "pgmigrate_success", "migration", "counters.pgmigrate_success",
        formula="Pages migrate_pages() moved, LRU pages included; a page its driver released "
                "after isolation counts as moved (MIG-3, MIG-6).",
        reading="The work that made free pageblocks.",
        kernel="mm/migrate.c migrate_pages (PGMIGRATE_SUCCESS)"),
    _counted(
        "pgmigrate_fail", "pgmigrate_fail", "migration", "counters.pgmigrate_fail",
        formula="Pages migrate_pages() gave up on: a permanent error, or still -EAGAIN after "
                "its 10 passes.",
        reading="Each one went back to its driver through putback.",
        kernel="mm/migrate.c migrate_pages (PGMIGRATE_FAIL)"),
    _counted(
        "migratepage_eagain", "migratepage -EAGAIN", "migration",
        "driver_callbacks.migratepage_eagain",
        formula="Times the driver's migratepage() returned -EAGAIN.",
        reading="Temporary refusals (pinned object, lock busy): migrate_pages retries the page "
                "on its next pass, up to 10 (MIG-8, MIG-1), so one page can count many times.",
        kernel="mm/migrate.c migrate_pages, move_to_new_page"),
    Row("migratepage_permanent", "migratepage permanent", "migration", _errnos,
        formula="Times the driver's migratepage() returned another negative errno, per errno "
                "(mean over seeds).",
        reading="Permanent failures: the VM puts the page back at once (MIG-8, PUT-1).",
        kernel="mm/migrate.c unmap_and_move",
        fields=("driver_callbacks.migratepage_permanent",
                "driver_callbacks.migratepage_permanent_by_errno")),
    _counted(
        "putbacks", "putbacks", "migration", "migration.putbacks",
        formula="putback_movable_page() calls: the driver's putback_page() ran.",
        reading="Every isolated page ends migrated, put back or released by its driver, "
                "exactly one of them (PUT-3).",
        kernel="mm/migrate.c putback_movable_pages, putback_movable_page"),
    _counted(
        "released_isolated", "released while isolated", "migration",
        "migration.released_while_isolated",
        formula="Isolated pages the VM found !PageMovable: their driver released them "
                "meanwhile, so migratepage or putback_page was never called for them.",
        reading="Frees racing with compaction (REL-2, MIG-3, MIG-6, PUT-1); not an error.",
        kernel="mm/migrate.c unmap_and_move, move_to_new_page, putback_movable_pages"),
    # --- compaction (STA-1)
    _counted(
        "compact_migrate_scanned", "compact_migrate_scanned", "compaction (STA-1)",
        "counters.compact_migrate_scanned",
        formula="Pages the migrate scanner looked at.",
        reading="The first term of the Gorman cost.",
        kernel="mm/compaction.c isolate_migratepages_block (COMPACTMIGRATE_SCANNED)"),
    _counted(
        "compact_free_scanned", "compact_free_scanned", "compaction (STA-1)",
        "counters.compact_free_scanned",
        formula="Pages the free scanner looked at for migration targets.",
        reading="High when free pages are scarce or scattered: the free scanner walked far "
                "to feed the migrations.",
        kernel="mm/compaction.c isolate_freepages_block (COMPACTFREE_SCANNED)"),
    _counted(
        "compact_isolated", "compact_isolated", "compaction (STA-1)", "counters.compact_isolated",
        formula="Pages isolated by both scanners: migration sources (driver and LRU pages) plus "
                "free target pages.",
        reading="Not the driver's isolations alone: compare with isolated above.",
        kernel="mm/compaction.c isolate_migratepages_block, isolate_freepages_block "
               "(COMPACTISOLATED)"),
    _counted(
        "compact_stall", "compact_stall", "compaction (STA-1)", "counters.compact_stall",
        formula="Direct compaction runs: an allocation of the workload's direct triggers "
                "failed and compacted, ASYNC first, then SYNC_LIGHT, so one allocation may "
                "count twice. Deferred or skipped compactions do not count.",
        reading="Whole-zone compaction and kcompactd are not counted here.",
        kernel="mm/page_alloc.c __alloc_pages_direct_compact (COMPACTSTALL)"),
    _counted(
        "compact_success", "compact_success", "compaction (STA-1)", "counters.compact_success",
        formula="Direct compaction runs after which the allocation got its page.",
        reading="compact_success + compact_fail = compact_stall. An allocation that succeeds "
                "without compacting counts in neither.",
        kernel="mm/page_alloc.c __alloc_pages_direct_compact (COMPACTSUCCESS)"),
    _counted(
        "compact_fail", "compact_fail", "compaction (STA-1)", "counters.compact_fail",
        formula="Direct compaction runs after which the allocation still failed.",
        reading="Compare with order-9 allocations below.",
        kernel="mm/page_alloc.c __alloc_pages_direct_compact (COMPACTFAIL)"),
    # --- outcome
    Row("free_pages", "free pages", "outcome (before → after)",
        _p("outcome.before.nr_free_pages", "outcome.after.nr_free_pages"),
        formula="NR_FREE_PAGES of the zone. " + _BEFORE_AFTER,
        reading="Falls when the workload keeps order-9 blocks or allocates again after "
                "compaction; compaction itself neither frees nor uses pages.",
        kernel="mm/vmstat.c (NR_FREE_PAGES)",
        fields=("outcome.before.nr_free_pages", "outcome.after.nr_free_pages")),
    Row("free_pageblocks", "free pageblocks", "outcome (before → after)",
        _p("outcome.before.free_pageblocks", "outcome.after.free_pageblocks"),
        formula="Order-9 blocks the free lists can hand out now: Σ nr_free[o] · 2^(o−9) over "
                "orders o ≥ 9. " + _BEFORE_AFTER,
        reading="The free pageblocks left after the workload took its order-9 blocks; what "
                "compaction got in all is order-9 obtained.",
        kernel="mm/vmstat.c frag_show_print (/proc/buddyinfo)",
        fields=("outcome.before.free_pageblocks", "outcome.after.free_pageblocks")),
    Row("unusable_3", "unusable index order 3", "outcome (before → after)",
        _p("outcome.before.unusable_index_3", "outcome.after.unusable_index_3", index=True),
        formula="(free_pages − suitable · 2^3) / free_pages, suitable = Σ nr_free[o] · 2^(o−3) "
                "over o ≥ 3: the share of free memory in blocks smaller than order 3; 1.000 "
                "when nothing is free. Printed to three decimals as the kernel prints it. "
                + _BEFORE_AFTER,
        reading="0 = every free page could serve an order-3 allocation, 1 = none could. "
                "Order 3 is PAGE_ALLOC_COSTLY_ORDER: up to it the allocator retries hard "
                "rather than fail.",
        kernel="mm/vmstat.c unusable_free_index (/sys/kernel/debug/extfrag/unusable_index)",
        fields=("outcome.before.unusable_index_3", "outcome.after.unusable_index_3")),
    Row("unusable_9", "unusable index order 9", "outcome (before → after)",
        _p("outcome.before.unusable_index_9", "outcome.after.unusable_index_9", index=True),
        formula="(free_pages − suitable · 2^9) / free_pages, suitable = Σ nr_free[o] · 2^(o−9) "
                "over o ≥ 9; 1.000 when nothing is free. " + _BEFORE_AFTER,
        reading="0 = all free memory is in whole free pageblocks, 1 = none is. It can rise "
                "after compaction when the workload took the free pageblocks compaction made.",
        kernel="mm/vmstat.c unusable_free_index (/sys/kernel/debug/extfrag/unusable_index)",
        fields=("outcome.before.unusable_index_9", "outcome.after.unusable_index_9")),
    Row("extfrag_3", "extfrag index order 3", "outcome (before → after)",
        _p("outcome.before.extfrag_index_3", "outcome.after.extfrag_index_3", index=True),
        formula="-1.000 when a free block of order ≥ 3 exists; else 1 − (1 + free_pages / 2^3) "
                "/ free_blocks_total (C integer arithmetic in thousandths); 0.000 when nothing "
                "is free. " + _BEFORE_AFTER,
        reading="-1.000 means an order-3 allocation would succeed now: the index measures only "
                "failures. Otherwise near 0 a failure would be for lack of memory, near 1 for "
                "fragmentation.",
        kernel="mm/vmstat.c __fragmentation_index (/sys/kernel/debug/extfrag/extfrag_index)",
        fields=("outcome.before.extfrag_index_3", "outcome.after.extfrag_index_3")),
    Row("extfrag_9", "extfrag index order 9", "outcome (before → after)",
        _p("outcome.before.extfrag_index_9", "outcome.after.extfrag_index_9", index=True),
        formula="-1.000 when a free block of order ≥ 9 exists; else 1 − (1 + free_pages / 2^9) "
                "/ free_blocks_total (C integer arithmetic in thousandths); 0.000 when nothing "
                "is free. " + _BEFORE_AFTER,
        reading="-1.000 means an order-9 allocation would succeed now, so the index does not "
                "apply. Otherwise near 0 a failure is for lack of memory, near 1 for "
                "fragmentation. compaction_suitable() skips compaction for orders above 3 "
                "while the index is between 0 and vm.extfrag_threshold (0.500).",
        kernel="mm/vmstat.c __fragmentation_index (/sys/kernel/debug/extfrag/extfrag_index); "
               "mm/compaction.c compaction_suitable",
        fields=("outcome.before.extfrag_index_9", "outcome.after.extfrag_index_9")),
    Row("order9_allocations", "order-9 allocations", "outcome (before → after)", _o9,
        formula="successes/attempts (rate) of the workload's order-9 allocations that may "
                "compact (its direct triggers).",
        reading="What a THP or a huge-page user would have got on this driver.",
        kernel="mm/page_alloc.c __alloc_pages_direct_compact",
        fields=("outcome.allocations.9", "outcome.order9_success_rate")),
    # --- order-9 blocks at the end
    Row("obtained", "order-9 obtained", "order-9 blocks at the end", _c("blocking.obtained"),
        formula="Pageblocks wholly free at the end + order-9 blocks the workload got and still "
                "holds.",
        reading="What compaction delivered, whoever took it.",
        fields=("blocking.obtained", "blocking.free_pageblocks", "blocking.held_pageblocks")),
    _counted(
        "ceiling", "order-9 ceiling", "order-9 blocks at the end", "blocking.ceiling",
        formula="B − U − ⌈max(0, M − F) / 512⌉: B pageblocks, U of them holding a page that "
                "cannot move (slab, part of a smaller held allocation, a driver page without "
                "the movable tag), M movable pages (driver and LRU) in the other pageblocks, "
                "F free pages inside the U pageblocks, where migrated pages may also land.",
        reading="The most order-9 blocks any compaction could get from the population at the "
                "end, with unmovable pages where they are: an upper bound, reached only by "
                "packing the movable pages into as few pageblocks as they fit in. 512 is the "
                "pages of a pageblock (pageblock_order 9).",
        kernel="mm/compaction.c suitable_migration_target (at MIN_COMPACT_PRIORITY any "
               "pageblock may receive pages)"),
    _counted(
        "efficiency", "efficiency", "order-9 blocks at the end",
        "blocking.efficiency", percent=True,
        formula="order-9 obtained / order-9 ceiling; - when the ceiling is 0.",
        reading="100%: compaction got every pageblock this population allows. Less: the "
                "driver's refusals, -EAGAIN or failures, or pageblocks compaction never "
                "reached, kept some; the causes are in the next section."),
    # --- pageblocks not emptied, by cause
    _counted(
        "cause_unmovable", "unmovable (slab, held)", "pageblocks not emptied, by cause",
        "blocking.blocking_by_cause.unmovable",
        formula="Pageblocks holding a slab page, part of an allocation smaller than a "
                "pageblock that the workload keeps, or a page of no known owner. Causes are "
                "tried in the order of this section; each pageblock counts once, under the "
                "first that applies. The six causes add up to the pageblocks in use at the "
                "end.",
        reading="No driver can help these: compaction never moves unmovable pages."),
    _counted(
        "cause_not_movable", "driver page not movable", "pageblocks not emptied, by cause",
        "blocking.blocking_by_cause.driver_not_movable",
        formula="Pageblocks holding a driver page without PAGE_MAPPING_MOVABLE in its mapping "
                "word (__SetPageMovable never called, e.g. z3fold's headless pages).",
        reading="The driver's design, not a failure: such pages are unmovable.",
        kernel="include/linux/page-flags.h __PageMovable"),
    _counted(
        "cause_refused", "driver refused isolation", "pageblocks not emptied, by cause",
        "blocking.blocking_by_cause.refused_isolation",
        formula="Pageblocks holding a driver page whose last isolate_page() answer was false.",
        reading="The driver's refusals kept these (ISO-6).",
        kernel="mm/migrate.c isolate_movable_page"),
    _counted(
        "cause_permanent", "permanent failure", "pageblocks not emptied, by cause",
        "blocking.blocking_by_cause.permanent_failure",
        formula="Pageblocks holding a driver page whose last migratepage() answer was a "
                "permanent errno.",
        reading="The driver failed these for good (MIG-8).",
        kernel="mm/migrate.c unmap_and_move"),
    _counted(
        "cause_eagain", "pinned/-EAGAIN to the end", "pageblocks not emptied, by cause",
        "blocking.blocking_by_cause.eagain_until_end",
        formula="Pageblocks holding a driver page whose last migratepage() answer was -EAGAIN.",
        reading="Pinned objects or a busy lock outlasted every retry (MIG-8, MIG-1).",
        kernel="mm/migrate.c migrate_pages"),
    _counted(
        "cause_target", "target or not reached", "pageblocks not emptied, by cause",
        "blocking.blocking_by_cause.target_or_not_reached",
        formula="Every other pageblock in use: only movable pages and none of the driver's "
                "failures above.",
        reading="Pageblocks that received migrated pages (someone's pages must live "
                "somewhere), or that compaction stopped before reaching."),
    # --- integrity
    _counted(
        "objects_verified", "objects verified", "integrity", "integrity.objects_verified",
        formula="Live objects at the end read back through the driver's read() with exactly "
                "the bytes stored (for a driver that stores no data: the bytes read right "
                "after the store).",
        reading="Equals the live objects when nothing was lost: objects stored minus the "
                "objects freed."),
    _counted(
        "objects_lost", "objects lost", "integrity", "integrity.objects_lost",
        formula="Live objects whose read() raised.",
        reading="Must be 0: a migration lost the object."),
    _counted(
        "objects_corrupted", "objects corrupted", "integrity", "integrity.objects_corrupted",
        formula="Live objects whose read() returned other bytes.",
        reading="Must be 0: a migration corrupted the object."),
    _counted(
        "lru_corrupted", "LRU pages corrupted", "integrity", "integrity.lru_corrupted",
        formula="LRU pages whose contents differ from what was written, after every migration.",
        reading="Must be 0: the VM's own migration of LRU pages is checked too."),
    _counted(
        "leaked_pages", "leaked pages", "integrity", "integrity.leaked_pages",
        formula="Pages in use that neither the driver's pages(), the slab and LRU users nor "
                "the workload's held blocks claim.",
        reading="Must be 0: a page lost its owner (a reference taken and never dropped)."),
    Row("driver_verify", "driver verify()", "integrity", _verify,
        formula="The driver's own verify() at the end: ok, failed: MESSAGE, or not provided.",
        reading="The driver's internal invariants after everything the run did.",
        fields=("integrity.driver_verify",)),
    Row("vm_warnings", "VM warnings", "integrity", _warnings,
        formula="WARN_ON_ONCE reports the VM recorded, all seeds together.",
        reading="The kernel would have printed a warning and gone on: each names its rule.",
        fields=("integrity.vm_warnings",)),
    # --- cost
    Row("mib_copied", "MiB copied", "cost", _scaled("cost.bytes_copied", 2 ** 20, 1),
        formula="Bytes copied by migrations (a whole page each, LRU pages included) / 2^20.",
        reading="About pgmigrate_success × the page size: a page its driver released after "
                "isolation counts as migrated but copies nothing.",
        kernel="mm/migrate.c copy_highpage via migrate_page_copy",
        fields=("cost.bytes_copied",)),
    Row("gorman_cost", "Gorman cost (Mwords)", "cost",
        _scaled("cost.gorman_words.total", 1e6, 2),
        formula="Mel Gorman's compaction cost model, in millions of words (u = 8 bytes): "
                "Ca·compact_migrate_scanned + Ca·compact_free_scanned + "
                "(Ca + Wi)·compact_isolated + 2(Ca + PAGE_SIZE/u)·pgmigrate_success + "
                "2Ca·pgmigrate_fail, with Ca = sizeof(struct page)/u = 8 and Wi, the cost of "
                "the isolation's locking, taken as 16 words.",
        reading="Compare drivers on the same workload: lower is cheaper. Copies dominate "
                "(1,040 words a page at 4 KiB), then scanning.",
        kernel="commit 397487db696c (\"mm: compaction: Add scanned and isolated counters for "
               "compaction\", v3.7), which defines the model on these /proc/vmstat counters",
        fields=("cost.gorman_words",)),
    _counted(
        "wall_time", "wall time (s)", "cost", "wall_seconds.run", decimals=2,
        formula="Seconds the run took in this process (workload, compaction, the driver's "
                "callbacks).",
        reading="The model's speed, not the kernel's: it varies from run to run, every other "
                "number does not."),
    # --- the buddyinfo block under the table
    Row("buddyinfo", "free blocks per order", "free blocks per order",
        lambda runs: " ".join(str(n) for n in runs[0]["outcome"]["after"]["buddyinfo"]),
        formula="nr_free of every order, before and after, first seed: the block under the "
                "table, one line per driver and moment, orders 0 to MAX_ORDER−1 across.",
        reading="Where the free memory is: compaction moves counts from the low orders to "
                "order 9 and up.",
        kernel="mm/vmstat.c frag_show_print (/proc/buddyinfo)",
        fields=("outcome.before.buddyinfo", "outcome.after.buddyinfo")),
)

#: rows printed in the table's columns (the buddyinfo block is printed apart)
TABLE_ROWS = tuple(r for r in ROWS if r.section != "free blocks per order")


def sections() -> list[tuple[str, list[Row]]]:
    """The table's sections in order, each with its rows."""
    return [(title, [r for r in TABLE_ROWS if r.section == title])
            for title, _ in SECTIONS if any(r.section == title for r in TABLE_ROWS)]


# --- finding a row by name ----------------------------------------------------------------

def find(query: str) -> Row | None:
    """The row `query` names (its key, its label or its label's slug, any case), or None."""
    key = slug(query)
    for row in ROWS:
        if key in (slug(row.key), row.slug):
            return row
    return None


def resolve(query: str) -> Row:
    """The row `query` names; a unique part of a name will do.  UsageError otherwise."""
    row = find(query)
    if row is not None:
        return row
    key = slug(query)
    partial = [r for r in ROWS if key and (key in r.slug or key in slug(r.key))]
    if len(partial) == 1:
        return partial[0]
    if partial:
        raise UsageError(f"{query!r} names several rows: "
                         + ", ".join(repr(r.label) for r in partial))
    close = difflib.get_close_matches(key, [r.slug for r in ROWS], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"no row {query!r} in compare's table{hint} (every row: docs/metrics.md)")


# --- one definition as text, as JSON, and all of them as Markdown -------------------------------

def render(row: Row, width: int = 88) -> str:
    """A row's definition for the terminal."""
    where = row.section.upper() or "first row"
    lines = [f"{row.label}  ({where}; a row of `mmplug compare`)", ""]
    for name, text in (("value", row.formula), ("kernel", row.kernel or "none: the model's own"),
                       ("reading", row.reading),
                       ("json", ", ".join(row.fields) if row.fields else "-")):
        lines += textwrap.wrap(text, width, initial_indent=f"  {name + ':':<9}",
                               subsequent_indent=" " * 11, break_on_hyphens=False)
    lines += ["", f"  every row: docs/metrics.md; `mmplug explain {row.slug}` prints this one"]
    return "\n".join(lines)


def as_dict(row: Row) -> dict[str, Any]:
    return {"row": row.label, "key": row.key, "section": row.section, "formula": row.formula,
            "kernel": row.kernel, "reading": row.reading, "json": list(row.fields)}


def markdown() -> str:
    """docs/metrics.md, whole."""
    out = [
        "# The numbers of `mmplug compare`",
        "",
        "<!-- Written by `python -m mmplug.compare.rows > docs/metrics.md` from the row "
        "definitions in mmplug/compare/rows.py; a test keeps the two equal. -->",
        "",
        "Every row of the table `mmplug compare` prints, in the table's order: how it is "
        "computed, the kernel code it models where there is some, how to read it, and the "
        "`--json` fields it comes from (under `drivers.NAME.runs[i]`). "
        "`mmplug explain ROW` and `mmplug compare --explain ROW` print one row, e.g. "
        "`mmplug explain efficiency` or `mmplug explain \"Gorman cost (Mwords)\"`.",
        "",
        "With `--repeat N` a cell is the mean over the N seeds, followed by ±the sample "
        "standard deviation. Indices are printed as the kernel prints them: thousandths, "
        "`%d.%03d`.",
        "",
        "| section | rows |",
        "| --- | --- |",
    ]
    out += [f"| {(title or 'status').upper()} | "
            + ", ".join(r.label for r in ROWS if r.section == title) + " |"
            for title, _ in SECTIONS]
    out.append("")
    for title, about in SECTIONS:
        rows = [r for r in ROWS if r.section == title]
        out += [f"## {title.upper() if title else 'STATUS'}", "", about[0].upper() + about[1:]
                + ".", ""]
        for row in rows:
            out += [f"### {row.label}", "",
                    f"- **Value:** {row.formula}",
                    f"- **Kernel:** {row.kernel or 'none: a number of the model'}",
                    f"- **Reading:** {row.reading}",
                    "- **JSON:** " + (", ".join(f"`{f}`" for f in row.fields) or "-"),
                    ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
