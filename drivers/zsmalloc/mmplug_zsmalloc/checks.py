"""zsmalloc's own rules, checked by `mmplug check-driver` (the mmplug_conformance_checks hook).

The generic suite sees a zspage emptied while isolated (BUG-6) and zs_compact
meeting page migration (DRV-Z6) only as the symptoms a race leaves, if the
race is found at all.  These checks drive the two situations directly, on one
CPU: every object of a zspage freed while one of its subpages is isolated,
then putback and the deferred work (DRV-Z5, DRV-Z4); zs_compact run while a
subpage is isolated, then after putback (DRV-Z6).
"""

from __future__ import annotations

from typing import Any

from mmplug import CheckFailed, ContractViolation, NotSupported, conformance_check
from mmplug.kernel import PAGE_SIZE, page_address, page_isolated, page_mapping

from .races import OBJECT_SIZE


def _zspage_of_three(bench: Any) -> tuple[list[Any], list[Any]]:
    """Four objects of a class whose zspages chain 3 pages: their handles and pages."""
    size = OBJECT_SIZE * PAGE_SIZE(bench.vm) // 4096
    handles = [bench.store(bench.payload(size)) for _ in range(4)]
    pages = bench.pages()
    if len(pages) < 2:
        raise NotSupported("no zspage of several pages at this page size")
    return handles, pages


@conformance_check("DRV-Z5/emptied-while-isolated",
                   "a zspage emptied while a subpage is isolated is freed once migration or "
                   "putback ends, not before and not never (BUG-6)",
                   rules=("DRV-Z4", "DRV-Z2", "BUG-6"))
def emptied_while_isolated(ctx: Any) -> None:
    for ending in ("migration", "putback"):
        bench = ctx.bench()
        handles, pages = _zspage_of_three(bench)
        middle = pages[1]     # freeing walks the subpage chain across it
        if not bench.isolate(middle):
            raise CheckFailed("DRV-Z2", "isolate_page refused a subpage of a zspage with "
                              "objects in use", page=middle, hook="isolate_page")
        for handle in handles:
            bench.free(handle)
        if not page_isolated(middle) or page_mapping(middle) is not bench.mapping:
            raise CheckFailed("DRV-Z5", "zs_free of the last object freed a zspage one of "
                              "whose subpages the VM holds isolated: it is putback's or "
                              "migration's to free", page=middle, hook="free")
        if ending == "migration":
            bench.migrate(bench.to_list([middle]))
        else:
            bench.putback_isolated()
        bench.call("run_deferred_work")
        left = bench.pages()
        hook = "migratepage" if ending == "migration" else "putback_page"
        if left:
            raise CheckFailed("DRV-Z4", f"every object was freed but {len(left)} page(s) of "
                              f"the zspage are still held after {ending} and the deferred "
                              "work: a zspage emptied while isolated stays in ZS_EMPTY "
                              "forever (BUG-6)", page=left[0], hook=hook)
        leaked = bench.vm.unclaimed_pages()
        if leaked:
            raise CheckFailed("DRV-Z4", f"{len(leaked)} page(s) of the freed zspage were never "
                              f"given back to the zone after {ending}", page=leaked[0],
                              hook=hook)


@conformance_check("DRV-Z6/compaction-skips-isolated",
                   "zs_compact leaves alone a zspage a subpage of which is isolated, and "
                   "compacts it once it is put back", rules=("DRV-Z2", "ISO-2"))
def compaction_skips_isolated(ctx: Any) -> None:
    bench = ctx.bench()
    size = PAGE_SIZE(bench.vm) // 8
    handles = []
    while len(bench.pages()) < 12 and len(handles) < 400:   # three zspages of four pages
        handles.append(bench.store(bench.payload(size)))
    for handle in handles[1::2]:         # every zspage half empty: work for zs_compact
        bench.free(handle)
    pages = bench.pages()
    target = pages[0]
    if not bench.isolate(target):
        raise NotSupported("the zspage to hold isolated was refused")
    before = bytes(page_address(target))
    try:
        bench.call("compact")
    except ContractViolation as exc:
        raise CheckFailed("DRV-Z6", f"zs_compact failed with a subpage of a zspage isolated: "
                          f"{exc.message}", page=target, hook="compact") from exc
    if bytes(page_address(target)) != before or not page_isolated(target):
        raise CheckFailed("DRV-Z6", "zs_compact moved objects of a zspage whose subpage the VM "
                          "holds isolated: object compaction and page migration must exclude "
                          "each other through the zspage's isolation", page=target,
                          hook="compact")
    for handle, want in bench.objects.items():
        if bench.read(handle) != want:
            raise CheckFailed("DRV-Z6", f"object {handle:#x} reads back different bytes after "
                              "zs_compact ran with a subpage isolated", hook="compact")
    bench.putback_isolated()
    freed = bench.call("compact")
    failed = bench.guarded.verify()
    if failed is not None:
        raise CheckFailed("DRV-Z6", f"the pool's verify() fails after compaction: {failed}",
                          hook="compact")
    for handle, want in bench.objects.items():
        if bench.read(handle) != want:
            raise CheckFailed("DRV-Z6", f"object {handle:#x} reads back different bytes after "
                              "putback and zs_compact", hook="compact")
    if not freed and len(bench.pages()) == len(pages):
        raise CheckFailed("DRV-Z6", "zs_compact freed nothing from half-empty zspages once "
                          "nothing was isolated", hook="compact")


#: what zsmalloc brings to check-driver, after the generic checks
CHECKS = (emptied_while_isolated, compaction_skips_isolated)
