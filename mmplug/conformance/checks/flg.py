"""FLG: the page flags and the tagged mapping word (include/linux/page-flags.h,
mm/compaction.c: __SetPageMovable, __ClearPageMovable, PageMovable).

The core's set_page_movable/clear_page_movable raise FLG-4/FLG-5 when called
without the page lock, so storing and freeing through the driver is enough to
catch a driver that makes pages movable unlocked; what the driver owns
afterwards is checked page by page.  Reads of the raw mapping word (FLG-7) are
watched directly, whatever they lead to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...constants import MigrateMode
from ...drivercode import DriverCode
from ..invariants import check_owned_pages, verify_objects
from ..observation import RawMappingReads
from ..outcomes import CheckFailed
from ..registry import Context, check


@check("FLG-4/movable-under-lock",
       "driver makes its pages movable under the page lock, with its own mapping",
       rules=("FLG-5", "FLG-6", "LCK-2"))
def movable_under_lock(ctx: Context) -> None:
    bench = ctx.bench()
    rng = ctx.rng("ops")
    for step in range(ctx.size(120, 40)):
        if bench.objects and rng.random() < 0.35:
            bench.free(rng.choice(list(bench.objects)))
        else:
            bench.fill(1)
        if step % 8 == 0:
            check_owned_pages(bench, "FLG-4", f"after {step + 1} store/free calls")
    check_owned_pages(bench, "FLG-4", "after store/free calls")
    verify_objects(bench, "API-1", "after store/free calls")


@check("FLG-7/mapping-masked",
       "driver code never reads the raw page.mapping word: page_mapping() masks its tag bits",
       rules=("FLG-1", "FLG-2"))
def mapping_masked(ctx: Context) -> None:
    bench = ctx.bench()
    watch = RawMappingReads(DriverCode.of(ctx.loaded))
    watch.install(bench.vm)
    try:
        # everything a driver's code runs for: store, read, free, isolate, migrate (a
        # success and, through the knobs, a failure), putback, destroy; not verify(),
        # a self-check that may look at the word as it is
        done = bench.isolate_populated(ctx.size(4, 2))
        half = len(done) // 2
        held = _hold_one(bench)
        try:
            bench.migrate(bench.to_list(done[:half]), MigrateMode.SYNC)
        finally:
            held()
        bench.putback_isolated()
        bench.putback(bench.to_list([p for p in done[half:] if p in bench.lru.owner]))
        for handle in list(bench.objects)[::2]:
            bench.free(handle)
        verify_objects(bench, "MIG-7", "after migration, putback and free")
        bench.destroy()
    finally:
        watch.remove(bench.vm)
    if watch.sites:
        first = watch.sites[0]
        more = f" (and {len(watch.sites) - 1} more place(s))" if len(watch.sites) > 1 else ""
        raise CheckFailed("FLG-7", f"driver code reads the raw page.mapping word in "
                          f"{first.describe()}{more}: its low bits are tags "
                          "(PAGE_MAPPING_MOVABLE), so it never equals an address space; use "
                          "page_mapping(page), has_movable_tag(page) or page_movable(page)",
                          what="driver code reads page.mapping raw", site=first)


def _hold_one(bench: Any) -> Callable[[], None]:
    """Make one page's migration fail through a knob, if the driver has one (so that the
    failure path runs too); returns the undo."""
    if not bench.objects:
        return lambda: None
    for knob, undo in (("pin", "unpin"), ("map", "unmap")):
        if bench.has_knob(knob):
            handle = next(iter(bench.objects))
            bench.call(knob, handle)
            return lambda: bench.call(undo, handle) if handle in bench.objects else None
    return lambda: None
