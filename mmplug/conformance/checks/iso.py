"""ISO: isolation (mm/migrate.c: isolate_movable_page; the driver's a_ops->isolate_page).

The VM isolates the driver's pages exactly as the compaction scanner does and
then looks at the page, at what the driver still does with it, and at what
the driver can be seen to hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...page import ISOLATED, LOCKED, Page
from ..bench import Bench
from ..invariants import check_owned_pages, verify_driver, verify_objects
from ..observation import DriverSnapshot, PageSnapshot
from ..outcomes import CheckFailed, NotSupported
from ..registry import Context, check


@check("ISO-1/isolate-putback",
       "every page can be isolated and put back, the VM's reference balanced",
       rules=("ISO-2", "PUT-1", "REF-1"))
def isolate_putback(ctx: Context) -> None:
    bench = ctx.bench()
    bench.populate(ctx.size(6, 3))
    before = {p: p._refcount for p in bench.pages()}
    done, refused = bench.isolate_all()
    for page in done:
        if page._refcount != before[page] + 1:
            raise CheckFailed("ISO-1", f"refcount {before[page]} before isolation, "
                              f"{page._refcount} after; expected +1 (the VM's reference)",
                              page=page)
        if page.flags & LOCKED:
            raise CheckFailed("ISO-2", "page left locked after isolation", page=page)
    for page in refused:
        if page._refcount != before[page]:
            raise CheckFailed("ISO-6", "a refused isolation changed the refcount", page=page)
    bench.putback_isolated()
    for page, count in before.items():
        if page._refcount != count:
            raise CheckFailed("PUT-1", f"refcount {count} before isolation, {page._refcount} "
                              "after putback", page=page)
        if page.flags & (ISOLATED | LOCKED):
            raise CheckFailed("PUT-1", "page still isolated or locked after putback", page=page)
    check_owned_pages(bench, "PUT-2", "after isolation and putback")
    verify_objects(bench, "PUT-2", "after isolation and putback")
    verify_driver(bench, "PUT-2", "after isolation and putback")


@check("ISO-2/taken-out",
       "isolate_page returns True only after taking the page out of the driver's structures")
def taken_out(ctx: Context) -> None:
    bench = ctx.bench()
    bench.populate(ctx.size(6, 3))
    done, refused = bench.isolate_all()
    if not done:
        raise NotSupported("no page could be isolated")
    # New objects must go to pages the driver still has, never to an isolated one, not
    # even to a slot free() gave up while the page was isolated.
    _stores_miss(bench, done, ctx.size(48, 16), "store", "")
    _stores_miss(bench, _free_one_of_each(bench, done), ctx.size(16, 8), "free",
                 " after free() of one of its objects while it was isolated: free() must not "
                 "give an isolated page back to the driver's structures")
    bench.putback_isolated()
    verify_objects(bench, "PUT-2", "after isolation, stores and putback")
    verify_driver(bench, "ISO-2", "after isolation, stores and putback")


def _stores_miss(bench: Any, isolated: list[Page], n: int, culprit: str, when: str) -> None:
    """Store `n` objects; none may write into or take a reference on an isolated page."""
    snaps = {p: PageSnapshot.take(bench.vm, p) for p in isolated}
    for _ in bench.fill(n):
        for page, snap in snaps.items():
            now = PageSnapshot.take(bench.vm, page)
            if now.digest != snap.digest or now.refcount != snap.refcount:
                raise CheckFailed("ISO-2", "store() wrote into (or took a reference on) a page "
                                  "isolate_page had reported as taken out of the driver's "
                                  f"structures{when}", page=page, hook=culprit)


def _free_one_of_each(bench: Any, isolated: list[Page]) -> list[Page]:
    """Free one object of each isolated page that holds several (and so stays in use):
    the pages whose slot was given up while they were isolated.  Such a page stays out of
    the driver's structures (mm/zsmalloc.c: zs_free -> fix_fullness_group moves no
    isolated zspage between fullness lists)."""
    on: dict[Page, list[Any]] = {}
    for handle in list(bench.objects):
        pages = bench.pages_of(handle)
        if len(pages) == 1 and pages[0] in isolated:
            on.setdefault(pages[0], []).append(handle)
    freed = []
    for page, handles in on.items():
        if len(handles) > 1:
            bench.free(handles[0])
            freed.append(page)
    return freed


@check("ISO-3/pg-isolated-vm-only", "driver leaves PG_isolated to the VM",
       rules=("FLG-6",))
def pg_isolated_vm_only(ctx: Context) -> None:
    bench = ctx.bench()
    bench.populate(ctx.size(6, 3))

    def watched(call: Callable[[Page, int], Any], page: Page, mode: int) -> Any:
        was = page.flags & ISOLATED
        ret = call(page, mode)
        if ret is True and page.flags & ISOLATED and not was:
            raise CheckFailed("ISO-3", "isolate_page set PG_isolated itself; only the VM sets "
                              "it, after the callback returns", page=page, hook="isolate_page")
        if ret is False and page.flags & ISOLATED and not was:
            raise CheckFailed("FLG-6", "isolate_page refused but left PG_isolated set",
                              page=page, hook="isolate_page")
        return ret

    bench.mapping.interpose(isolate_page=watched)
    done, _ = bench.isolate_all()
    half = len(done) // 2
    bench.migrate(bench.to_list(done[:half]))
    bench.putback(bench.to_list(done[half:]))
    check_owned_pages(bench, "FLG-6", "after migration and putback")
    verify_objects(bench, "MIG-7", "after migration and putback")


@check("ISO-4/lru-untouched", "driver leaves lru of an isolated page alone",
       rules=("REL-2",))
def lru_untouched(ctx: Context) -> None:
    bench = ctx.bench()
    rng = ctx.rng("ops")
    bench.populate(ctx.size(8, 4))
    done, refused = bench.isolate_all()
    if not done:
        raise NotSupported("no page could be isolated")
    # Every driver call verifies the sentinels (Bench.call); the spy does after callbacks.
    for handle in list(bench.objects):
        bench.read(handle)
    if ctx.caps.free_while_isolated:
        for handle in [h for h in bench.objects if rng.random() < 0.4]:
            bench.free(handle)
    bench.fill(ctx.size(12, 6))
    bench.lru.verify("store/read/free")
    half = len(done) // 2
    bench.migrate(bench.to_list([p for p in done[:half] if p.flags & ISOLATED]))
    bench.putback(bench.to_list([p for p in done[half:] if p.flags & ISOLATED]))
    verify_objects(bench, "MIG-7", "after migration and putback")


@check("ISO-6/refusal-unchanged",
       "a refused isolation leaves the page and the driver exactly as they were",
       rules=("ISO-1",))
def refusal_unchanged(ctx: Context) -> str | None:
    bench = ctx.bench()
    bench.populate(ctx.size(6, 3))
    refusals = 0
    settings = ["plain"] + [k for k in ("map", "pin") if bench.has_knob(k)]
    for setting in settings:
        undo = _provoke(bench, setting)
        try:
            for page in bench.pages():
                if page.flags & ISOLATED:
                    continue
                drv_before = DriverSnapshot.take(bench)
                page_before = PageSnapshot.take(bench.vm, page)
                if bench.isolate(page):
                    bench.putback_isolated()
                    continue
                refusals += 1
                page_after = PageSnapshot.take(bench.vm, page)
                drv_after = DriverSnapshot.take(bench)
                changed = page_before.diff(page_after) + drv_before.diff(drv_after)
                if changed:
                    raise CheckFailed("ISO-6", f"isolate_page refused ({setting}) but changed "
                                      f"things: {'; '.join(changed)}", page=page,
                                      hook="isolate_page")
        finally:
            undo()
    if not refusals:
        if not ctx.caps.may_refuse_isolation:
            raise NotSupported("the driver declares it never refuses isolation")
        raise NotSupported("no refusal could be provoked (no 'map' knob, or the driver "
                           "accepted every page)")
    verify_objects(bench, "ISO-6", "after refused isolations")
    return f"{refusals} refusal(s) examined"


def _provoke(bench: Bench, setting: str) -> Callable[[], None]:
    """Put the driver in a state where it may refuse; returns the undo."""
    if setting == "plain":
        return lambda: None
    if setting == "busy":
        bench.call("hold")
        return lambda: bench.call("release")
    handles = list(bench.objects)
    method, undo = {"map": ("map", "unmap"), "pin": ("pin", "unpin")}[setting]
    for h in handles:
        bench.call(method, h)

    def _undo() -> None:
        for h in handles:
            if h in bench.objects:
                bench.call(undo, h)

    return _undo
