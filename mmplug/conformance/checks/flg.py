"""FLG: the page flags and the tagged mapping word (include/linux/page-flags.h,
mm/compaction.c: __SetPageMovable, __ClearPageMovable, PageMovable).

The core's set_page_movable/clear_page_movable raise FLG-4/FLG-5 when called
without the page lock, so storing and freeing through the driver is enough to
catch a driver that makes pages movable unlocked; what the driver owns
afterwards is checked page by page.
"""

from __future__ import annotations

from ..invariants import check_owned_pages, verify_objects
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
