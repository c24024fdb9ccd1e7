"""PUT: putback (mm/migrate.c: putback_movable_pages, putback_movable_page; the
driver's a_ops->putback_page) and the fate of every isolated page (PUT-3).

A permanent failure is forced by the VM (PG_writeback under a non-SYNC
migration gives -EBUSY in __unmap_and_move) and, where the driver offers the
"map" knob, by the driver's own logic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...constants import EAGAIN, MigrateMode, errno_name
from ...errors import NoMemory
from ...page import ISOLATED, WRITEBACK, Page
from ..bench import Bench
from ..invariants import check_owned_pages, verify_objects
from ..observation import DriverSnapshot, PageSnapshot
from ..outcomes import CheckFailed, NotSupported
from ..registry import Context, check


@check("PUT-1/putback-restores",
       "putback gives every page back exactly once and restores it as it was",
       rules=("PUT-2", "PUT-3"))
def putback_restores(ctx: Context) -> None:
    bench = ctx.bench()
    bench.populate(ctx.size(6, 3))
    drv_before = DriverSnapshot.take(bench)
    pages_before = {p: PageSnapshot.take(bench.vm, p) for p in bench.pages()}
    done, _ = bench.isolate_all()
    if not done:
        raise NotSupported("no page could be isolated")
    counts = {p: bench.spy.count("putback_page", p) for p in done}
    bench.putback(bench.to_list(done))
    for page in done:
        n = bench.spy.count("putback_page", page) - counts[page]
        if n != 1:
            raise CheckFailed("PUT-3", f"putback_page called {n} times for one isolated page; "
                              "expected exactly once", page=page)
        snap = PageSnapshot.take(bench.vm, page)
        before = pages_before[page]
        changed = [d for d in before.diff(snap) if not d.startswith("lru ")]
        if changed:
            raise CheckFailed("PUT-2", f"after putback the page is not as before isolation: "
                              f"{'; '.join(changed)}", page=page, hook="putback_page")
    changed = drv_before.diff(DriverSnapshot.take(bench))
    if changed:
        raise CheckFailed("PUT-2", f"after putback the driver is not as before isolation: "
                          f"{'; '.join(changed)}", hook="putback_page")


@check("PUT-2/usable-again",
       "after putback the page is used and found exactly as before isolation",
       rules=("PUT-1", "ISO-1"))
def usable_again(ctx: Context) -> None:
    # Two identical instances; one goes through isolation and putback of every page.
    twin = ctx.bench()
    bench = ctx.bench()
    for b in (twin, bench):
        b.rng.seed(ctx.seed)
        b.populate(ctx.size(6, 3))
    if sorted(twin.objects.values()) != sorted(bench.objects.values()):
        raise NotSupported("the driver is not deterministic enough to compare two instances")
    done, _ = bench.isolate_all()
    if not done:
        raise NotSupported("no page could be isolated")
    bench.putback(bench.to_list(done))
    want = twin.capacity()
    got = bench.capacity()
    if got < want:
        raise CheckFailed("PUT-2", f"after putback the driver stored only {got} new object(s) "
                          f"before taking a new page, an instance never isolated stored {want}: "
                          "putback_page did not give the pages' free space back to the driver",
                          page=done[0], hook="putback_page")
    verify_objects(bench, "PUT-2", "after putback and new stores")
    again, refused = bench.isolate_all()
    if refused and not ctx.caps.may_refuse_isolation:
        raise CheckFailed("PUT-2", "a page put back could not be isolated again",
                          page=refused[0], hook="isolate_page")
    rc = bench.migrate(bench.to_list(again))
    if rc and not ctx.caps.may_fail_migration:
        raise CheckFailed("PUT-2", f"pages put back could not be migrated ({errno_name(rc)})")
    verify_objects(bench, "PUT-2", "after putback, isolation and migration")
    check_owned_pages(bench, "PUT-2", "after putback, isolation and migration")


def _fates(bench: Bench, done: list[Page], before: dict[Page, Any]) -> None:
    """PUT-3: each page migrated, put back or released: exactly one of them."""
    migrated = {pfn for hook, pfn, rc in bench.spy.results
                if hook == "migratepage" and rc == 0}
    for page in done:
        putbacks = bench.spy.count("putback_page", page) - before[page]
        moved = page.pfn in migrated
        if putbacks + moved != 1:
            raise CheckFailed("PUT-3", f"an isolated page was migrated {int(moved)} and put "
                              f"back {putbacks} time(s); expected exactly one of them",
                              page=page)
        if page.flags & ISOLATED:
            raise CheckFailed("PUT-3", "a page is still PG_isolated after migration ended",
                              page=page)


@check("PUT-3/vm-failure",
       "a permanent failure (-EBUSY under writeback) is followed by exactly one putback",
       rules=("MIG-8", "PUT-2"))
def vm_failure(ctx: Context) -> None:
    bench = ctx.bench()
    done = bench.isolate_populated(ctx.size(4, 2))
    bench.spy.reset()
    before = {p: 0 for p in done}
    for page in done:
        page.flags |= WRITEBACK
    try:
        rc = bench.migrate(bench.to_list(done), MigrateMode.ASYNC)
    finally:
        for page in done:
            page.flags &= ~WRITEBACK
    if rc != len(done):
        raise CheckFailed("MIG-8", f"with every page under writeback an ASYNC migration "
                          f"returned {errno_name(rc)}; expected {len(done)} failed")
    if bench.spy.count("migratepage"):
        raise CheckFailed("MIG-8", "migratepage was called for a page under writeback in "
                          "ASYNC mode")
    _fates(bench, done, before)
    verify_objects(bench, "PUT-2", "after a failed migration and putback")
    check_owned_pages(bench, "PUT-2", "after a failed migration and putback")
    again, _ = bench.isolate_all()
    if bench.migrate(bench.to_list(again)) and not ctx.caps.may_fail_migration:
        raise CheckFailed("PUT-2", "pages put back after a failure could not be migrated")
    verify_objects(bench, "PUT-2", "after a failure, putback and a later migration")


@check("PUT-3/driver-failure",
       "a mapped object fails migration for good; the page stays isolated until putback, "
       "each page migrated or put back, once",
       rules=("MIG-8", "PUT-2"), needs=("knob:map",))
def driver_failure(ctx: Context) -> None:
    bench = ctx.bench()
    done = bench.isolate_populated(ctx.size(4, 2))
    handles = list(bench.objects)[::2]
    for h in handles:
        bench.call("map", h)
    bench.spy.reset()
    before = {p: 0 for p in done}
    # Between a permanent failure and the VM's putback_page the page is still isolated:
    # whatever store() does then must leave it alone (another CPU may store right then).
    bench.mapping.interpose(migratepage=lambda call, *args: _store_after_failure(
        bench, call, *args))
    try:
        rc = bench.migrate(bench.to_list(done), MigrateMode.SYNC)
    finally:
        for h in handles:
            if h in bench.objects:
                bench.call("unmap", h)
    _fates(bench, done, before)
    if rc < 0:
        raise CheckFailed("MIG-9", f"migrate_pages returned {errno_name(rc)}")
    verify_objects(bench, "PUT-2", "after failed migrations and putback")
    check_owned_pages(bench, "PUT-2", "after failed migrations and putback")


#: objects store() is asked for in the window after a permanent failure
WINDOW_STORES = 8


def _store_after_failure(bench: Any, call: Callable[..., Any], mapping: Any, newpage: Page,
                         page: Page, mode: int) -> Any:
    """migratepage, then, if it failed for good, stores while `page` is still isolated:
    none may land in it (MIG-8: the driver holds it as isolate_page left it)."""
    rc = call(mapping, newpage, page, mode)
    if not isinstance(rc, int) or rc >= 0 or rc == -EAGAIN:
        return rc
    snap = PageSnapshot.take(bench.vm, page)
    for _ in range(WINDOW_STORES):
        try:
            bench.store(bench.payload(16))
        except NoMemory:
            break
    now = PageSnapshot.take(bench.vm, page)
    if now.digest != snap.digest or now.refcount != snap.refcount:
        raise CheckFailed("MIG-8", f"migratepage failed for good ({errno_name(rc)}) and "
                          "store(), called before the VM put the page back, wrote into it: "
                          "the driver made the page usable again itself, while the VM "
                          "still holds it isolated (putback_page is the VM's to call)",
                          page=page, hook="migratepage",
                          what="store() uses a page after a failed migration, before putback")
    return rc
