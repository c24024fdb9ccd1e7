"""z3fold's own rules, checked by `mmplug check-driver` (its mmplug_conformance_checks hook).

What the generic suite cannot know: that a page with a mapped object must be
refused (DRV-3F2: a mapped object is being read or written through its
address), and that a page holding one large object (HEADLESS) is never
movable at all (DRV-3F1).
"""

from __future__ import annotations

from typing import Any

from mmplug import CheckFailed, NotSupported, conformance_check
from mmplug.kernel import PAGE_SIZE, has_movable_tag


@conformance_check("DRV-3F2/refuses-mapped",
                   "isolation refuses a page while one of its objects is mapped, and takes it "
                   "once it is unmapped", rules=("ISO-6",))
def refuses_mapped(ctx: Any) -> None:
    bench = ctx.bench()
    size = PAGE_SIZE(bench.vm) // 8
    handles = [bench.store(bench.payload(size)) for _ in range(3)]
    shared = [h for h in handles if len(bench.pages_of(h)) == 1]
    if not shared:
        raise NotSupported("no object could be found in its page")
    handle = shared[0]
    page = bench.pages_of(handle)[0]
    bench.call("map", handle)
    try:
        if bench.isolate(page):
            raise CheckFailed("DRV-3F2", "isolate_page took a page one of whose objects is "
                              "mapped: its user reads and writes the object through the old "
                              "page's address", page=page, hook="isolate_page")
    finally:
        bench.call("unmap", handle)
    if not bench.isolate(page):
        raise CheckFailed("DRV-3F2", "isolate_page refused a page whose objects are all "
                          "unmapped again", page=page, hook="isolate_page")
    bench.putback_isolated()


@conformance_check("DRV-3F1/headless-not-movable",
                   "a page holding one object too large to share it (HEADLESS) is never made "
                   "movable", rules=("FLG-4",))
def headless_not_movable(ctx: Any) -> None:
    bench = ctx.bench()
    ps = PAGE_SIZE(bench.vm)
    big = bench.store(bench.payload(ps - 32))   # more than a page with a header holds
    bench.fill(4)
    pages = bench.pages_of(big)
    if len(pages) != 1:
        raise NotSupported("the large object could not be found in one page")
    page = pages[0]
    if has_movable_tag(page):
        raise CheckFailed("DRV-3F1", "a HEADLESS page (one object, no header) is movable: "
                          "z3fold migrates only pages with a header", page=page, hook="store")
    if bench.isolate(page):
        raise CheckFailed("DRV-3F1", "a HEADLESS page was isolated", page=page,
                          hook="isolate_page")
    done, _ = bench.isolate_all()
    bench.migrate(bench.to_list(done))
    if bench.read(big) != bench.objects[big]:
        raise CheckFailed("DRV-3F1", "the object of a HEADLESS page reads back different bytes "
                          "after the other pages migrated", page=page, hook="read")


#: what z3fold brings to check-driver, after the generic checks
CHECKS = (refuses_mapped, headless_not_movable)
