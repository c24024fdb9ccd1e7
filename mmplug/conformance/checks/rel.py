"""REL: a driver releasing its pages (mm/compaction.c __ClearPageMovable; the VM's side
in mm/migrate.c: unmap_and_move "freed from under us", move_to_new_page and
putback_movable_pages skipping a page that is no longer PageMovable).
"""

from __future__ import annotations

from ...constants import MigrateMode
from ...page import ISOLATED, PAGE_MAPPING_MOVABLE
from ..invariants import check_no_leak, verify_driver
from ..outcomes import CheckFailed
from ..registry import Context, check
from ..violations import RELEASED_MOVABLE


@check("REL-1/free-releases",
       "freeing every object releases every page: no leak, refcounts balance",
       rules=("REL-3", "FREE-1", "REF-1"))
def free_releases(ctx: Context) -> None:
    bench = ctx.bench()
    rng = ctx.rng("order")
    bench.populate(ctx.size(8, 4))
    handles = list(bench.objects)
    rng.shuffle(handles)
    for i, h in enumerate(handles):
        bench.free(h)
        if i % 4 == 3:
            check_no_leak(bench, "REL-1", f"after freeing {i + 1} object(s)")
    check_no_leak(bench, "REL-1", "after freeing every object")
    bench.destroy()


@check("REL-2/free-while-isolated",
       "objects freed while their page is isolated: the VM finishes without migratepage",
       rules=("REL-1", "MIG-6", "MIG-3", "PUT-1", "ISO-4"), needs=("free_while_isolated",))
def free_while_isolated(ctx: Context) -> None:
    bench = ctx.bench()
    rng = ctx.rng("order")
    done = bench.isolate_populated(ctx.size(6, 4))
    handles = list(bench.objects)
    rng.shuffle(handles)
    for h in handles:
        bench.free(h)
        for page in done:
            if not page.flags & ISOLATED:
                raise CheckFailed("REL-2", "after free() an isolated page lost PG_isolated: "
                                  "a driver releasing an isolated page must leave it to the VM",
                                  page=page, hook="free")
    for page in done:
        if page._refcount == 1 and page.mapping != PAGE_MAPPING_MOVABLE:
            # what the VM says when it finds the page so (unmap_and_move): one violation
            raise CheckFailed("REL-1", "the driver dropped its last reference to an isolated "
                              "page without __ClearPageMovable(): only the VM's is left, "
                              "after free()", page=page, what=RELEASED_MOVABLE)
    released = [p for p in done if p.mapping == PAGE_MAPPING_MOVABLE]
    calls = {p: (bench.spy.count("migratepage", p), bench.spy.count("putback_page", p))
             for p in done}
    half = len(done) // 2
    bench.migrate(bench.to_list(done[:half]), MigrateMode.SYNC)
    bench.putback(bench.to_list(done[half:]))
    for page in released:
        mig, put = calls[page]
        if bench.spy.count("migratepage", page) != mig or \
                bench.spy.count("putback_page", page) != put:
            raise CheckFailed("MIG-6", "the driver was called for a page it had released "
                              "while isolated", page=page)
    for page in done:
        if page.flags & ISOLATED:
            raise CheckFailed("PUT-3", "a page is still isolated after migration and putback",
                              page=page)
    # The VM called the driver for none of the released pages: whatever isolate_page
    # counted for them (a count of isolated pages) the release must have given up.
    verify_driver(bench, "REL-2", "after the VM finished the pages released while isolated")
    check_no_leak(bench, "REL-1", "after objects were freed while isolated")
    bench.destroy()


@check("REL-3/destroy",
       "destroy releases every page after isolation, migration and putback",
       rules=("REL-1",))
def destroy(ctx: Context) -> None:
    bench = ctx.bench()
    done = bench.isolate_populated(ctx.size(6, 3))
    half = len(done) // 2
    bench.migrate(bench.to_list(done[:half]))
    bench.putback(bench.to_list(done[half:]))
    bench.fill(4)
    bench.destroy()
