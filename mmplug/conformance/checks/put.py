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
from ...errors import ContractViolation, NoMemory
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
       "after putback the page is used and found exactly as before isolation, also when a "
       "migration failed first (-EAGAIN, -ENOMEM, -EBUSY)",
       rules=("PUT-1", "ISO-1"))
def usable_again(ctx: Context) -> None:
    # Two identical instances; one goes through isolation and putback of every page, each
    # way a putback can follow: at once, or after a migration failed in each way it can.
    plain: Bench | None = None
    put_back: set[Page] = set()
    for how, give_back in _GIVE_BACK:
        twin = ctx.bench()
        bench = ctx.bench()
        for b in (twin, bench):
            b.rng.seed(ctx.seed)
            b.populate(ctx.size(6, 3))
        if sorted(twin.objects.values()) != sorted(bench.objects.values()):
            raise NotSupported("the driver is not deterministic enough to compare two "
                               "instances")
        done, _ = bench.isolate_all()
        if not done:
            raise NotSupported("no page could be isolated")
        if not give_back(bench, done):
            bench.putback_isolated()
            continue
        _same_capacity(bench, twin, done, how)
        if plain is None:
            plain, put_back = bench, set(done)
    assert plain is not None   # the first way, putback at once, always applies
    bench = plain
    again, refused = bench.isolate_all()
    # (a page the VM would not isolate the first time is not the putback's)
    refused = [p for p in refused if p in put_back]
    if refused and not ctx.caps.may_refuse_isolation:
        raise CheckFailed("PUT-2", "a page put back could not be isolated again",
                          page=refused[0], hook="isolate_page")
    rc = bench.migrate(bench.to_list(again))
    if rc and not ctx.caps.may_fail_migration:
        raise CheckFailed("PUT-2", f"pages put back could not be migrated ({errno_name(rc)})")
    verify_objects(bench, "PUT-2", "after putback, isolation and migration")
    check_owned_pages(bench, "PUT-2", "after putback, isolation and migration")


def _same_capacity(bench: Bench, twin: Bench, done: list[Page], how: str) -> None:
    """PUT-2: `bench`, whose pages were isolated and given back `how`, stores as many new
    objects in the space it has as `twin`, which was never isolated."""
    want = twin.capacity()
    try:
        got = bench.capacity()
    except ContractViolation as exc:
        if exc.rule not in ("API-1", "PUT-2") or exc.hook != "store":
            raise
        # the twin stores as it always did: the putback is what changed
        raise CheckFailed("PUT-2", f"after {how} store() fails ({exc.message}); an instance "
                          "never isolated stores on: putback_page did not put the page back as "
                          "it was", page=done[0], hook="store",
                          what="store() refuses the smallest object") from exc
    if got < want:
        raise CheckFailed("PUT-2", f"after {how} the driver stored only {got} new "
                          f"object(s) before taking a new page, an instance never isolated "
                          f"stored {want}: putback_page did not give the pages' free space "
                          "back to the driver", page=done[0], hook="putback_page",
                          what="putback_page does not give the free space back")
    verify_objects(bench, "PUT-2", f"after {how} and new stores")


def _putback(bench: Bench, done: list[Page]) -> bool:
    bench.putback(bench.to_list(done))
    return True


def _after_eagain(bench: Bench, done: list[Page]) -> bool:
    """Every migratepage says -EAGAIN (the "busy" or "pin" knob), ten passes; putback."""
    args: list[tuple[Any, ...]]
    if bench.has_knob("busy"):
        hold, undo, args = "hold", "release", [()]
    elif bench.has_knob("pin"):
        hold, undo, args = "pin", "unpin", [(h,) for h in bench.objects]
    else:
        return False
    for a in args:
        bench.call(hold, *a)
    try:
        plist = bench.to_list(done)
        bench.migrate(plist, MigrateMode.SYNC, putback=False)
    finally:
        for a in args:
            bench.call(undo, *a)
    bench.putback(plist)
    return True


def _after_enomem(bench: Bench, done: list[Page]) -> bool:
    """No new page: -ENOMEM before migratepage is called; putback."""
    plist = bench.to_list(done)
    bench.migrate(plist, MigrateMode.SYNC, get_new_page=lambda page, private: None,
                  putback=False)
    bench.putback(plist)
    return True


def _after_writeback(bench: Bench, done: list[Page]) -> bool:
    """PG_writeback in ASYNC mode: -EBUSY before migratepage is called; putback."""
    for page in done:
        page.flags |= WRITEBACK
    try:
        bench.migrate(bench.to_list(done), MigrateMode.ASYNC)
    finally:
        for page in done:
            page.flags &= ~WRITEBACK
    return True


def _after_mapped(bench: Bench, done: list[Page]) -> bool:
    """Every object mapped (the "map" knob): migratepage fails for good; putback."""
    if not bench.has_knob("map"):
        return False
    handles = list(bench.objects)
    for h in handles:
        bench.call("map", h)
    try:
        bench.migrate(bench.to_list(done), MigrateMode.SYNC)
    finally:
        for h in handles:
            bench.call("unmap", h)
    return True


#: each way isolated pages end in putback_page, and how a message says it
_GIVE_BACK: tuple[tuple[str, Callable[[Bench, list[Page]], bool]], ...] = (
    ("putback", _putback), ("-EAGAIN and putback", _after_eagain),
    ("-ENOMEM and putback", _after_enomem), ("-EBUSY (writeback) and putback", _after_writeback),
    ("a permanent failure of migratepage and putback", _after_mapped))


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
    held = bench.pages_holding(handles)
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
    bench.moved_while_held(held, "mapped")
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
