"""The balloon's own rules, checked by `mmplug check-driver` (its mmplug_conformance_checks hook).

Deflation meeting compaction is where the balloon's bugs lived (BUG-9,
BUG-12); the generic suite sees it only when a race scenario happens to
deflate while a page is isolated.  This check drives it on one CPU: pages
isolated, the balloon deflated, then the isolated pages migrated or put back
and the balloon deflated again, with the host's view checked at every step
(DRV-B1: dequeue skips isolated pages; DRV-B2: isolated_pages counts them;
DRV-B3: the host's set of ballooned pfns is always the balloon's pages).
"""

from __future__ import annotations

from typing import Any

from mmplug import CheckFailed, NotSupported, conformance_check
from mmplug.kernel import page_isolated, page_mapping


def _verified(bench: Any, when: str) -> None:
    failed = bench.guarded.verify()
    if failed is not None:
        rule = failed.split(":", 1)[0] if failed.startswith("DRV-B") else "DRV-B1"
        raise CheckFailed(rule, f"the balloon's verify() fails {when}: {failed}", hook="verify")


@conformance_check("DRV-B1/deflate-skips-isolated",
                   "deflation skips the pages compaction holds isolated; they come back "
                   "through migration or putback and deflate later, the host told each time",
                   rules=("DRV-B2", "DRV-B3", "DRV-B4"))
def deflate_skips_isolated(ctx: Any) -> None:
    bench = ctx.bench()
    handles = bench.fill(ctx.size(8, 4))
    pages = bench.pages()
    isolated = [p for p in pages[::2] if bench.isolate(p)]
    if not isolated:
        raise NotSupported("no balloon page could be isolated")
    listed = len(pages) - len(isolated)
    deflated = bench.call("deflate", len(handles))
    if deflated != listed:
        raise CheckFailed("DRV-B1", f"with {len(isolated)} of {len(pages)} page(s) isolated "
                          f"deflate() took {deflated} page(s); it takes every listed page "
                          "and skips the isolated ones", hook="deflate")
    for page in isolated:
        if not page_isolated(page) or page_mapping(page) is not bench.mapping:
            raise CheckFailed("DRV-B1", "deflate() dequeued a page compaction holds isolated",
                              page=page, hook="deflate")
    bench.objects = {h: d for h, d in bench.objects.items() if h in bench.instance.handles}
    _verified(bench, "after deflating around isolated pages")
    half = len(isolated) // 2
    bench.migrate(bench.to_list(isolated[:half]))
    bench.putback_isolated()
    _verified(bench, "after the isolated pages were migrated or put back")
    again = bench.call("deflate", len(isolated))
    if again != len(isolated) or bench.pages():
        raise CheckFailed("DRV-B1", f"after migration and putback deflate() took {again} of "
                          f"the {len(isolated)} page(s) left, and {len(bench.pages())} stay in "
                          "the balloon", hook="deflate")
    bench.objects.clear()
    _verified(bench, "after deflating everything")
    leaked = bench.vm.unclaimed_pages()
    if leaked:
        raise CheckFailed("DRV-B3", f"{len(leaked)} page(s) deflated but never given back to "
                          "the zone", page=leaked[0], hook="deflate")


@conformance_check("DRV-B3/migrate-while-deflating",
                   "a migration while deflation waits for the host leaves the host's "
                   "ballooned pfns equal to the balloon's pages (BUG-9)", rules=("DRV-B1",))
def migrate_while_deflating(ctx: Any) -> None:
    bench = ctx.bench()
    bench.fill(4)
    page = bench.pages()[0]
    if not bench.isolate(page):
        raise NotSupported("no balloon page could be isolated")
    plist = bench.to_list([page])
    balloon = bench.instance
    ran: list[int] = []

    def while_the_host_reads(what: str) -> None:
        # leak_balloon() sleeps in tell_host() holding the balloon mutex: the moment a
        # compactor on another CPU migrates a balloon page
        if what == "tell_host:deflate":
            balloon.on_point = None
            ran.append(bench.migrate(plist))

    balloon.on_point = while_the_host_reads
    try:
        bench.call("deflate", 2)
    finally:
        balloon.on_point = None
    if not ran:
        raise NotSupported("deflation never told the host (no tell_host:deflate point)")
    bench.putback_isolated()
    bench.objects = {h: d for h, d in bench.objects.items() if h in balloon.handles}
    _verified(bench, "after a migration while deflation waited for the host")


#: what the balloon brings to check-driver, after the generic checks
CHECKS = (deflate_skips_isolated, migrate_while_deflating)
