"""MIG: migration (mm/migrate.c: migrate_pages, unmap_and_move, __unmap_and_move,
move_to_new_page; the driver's a_ops->migratepage).

Success is checked from the outside, by reference-count deltas and the
driver's own view (pages(), read()), so that a driver that does the right
things in the wrong place still fails.  The failure paths are forced through
the driver's knobs (-EAGAIN) and by the VM itself: no new page (-ENOMEM,
MIG-2) and a new page somebody else holds locked (-EAGAIN, MIG-5).
"""

from __future__ import annotations

from typing import Any

from ...compaction import alloc_pages_compact, compact_memory, kcompactd_do_work
from ...constants import ENOMEM, ISOLATE_ASYNC_MIGRATE, MIGRATE_PASSES, MigrateMode, errno_name
from ...cpus.locks import SchedLock
from ...cpus.schedule import YIELD
from ...cpus.scheduler import Scheduler
from ...page import (
    ISOLATED,
    LOCKED,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_MOVABLE,
    Page,
    flag_names,
)
from ..bench import Bench
from ..invariants import (
    FOREIGN_FLAGS,
    check_no_leak,
    check_owned_pages,
    verify_driver,
    verify_objects,
)
from ..outcomes import CheckFailed
from ..registry import Context, check


@check("MIG-7/success",
       "on success the old page is released and the new one is movable, referenced and used",
       rules=("MIG-6", "MIG-8", "REF-1"))
def success(ctx: Context) -> None:
    twin = ctx.bench()
    bench = ctx.bench()
    for b in (twin, bench):
        b.rng.seed(ctx.seed)
        b.populate(ctx.size(6, 3))
    twins = sorted(twin.objects.values()) == sorted(bench.objects.values())
    migrated = 0
    failed: list[Page] = []
    for page in list(bench.pages()):
        driver_refs = page._refcount
        if not bench.isolate(page):
            continue
        handle = bench.mapping.handle
        plist = bench.to_list([page])
        calls = bench.spy.count("migratepage", page)
        rc = bench.migrate(plist, MigrateMode.SYNC)
        newpage = bench.targets[-1] if bench.targets else None
        if rc != 0:
            if not ctx.caps.may_fail_migration:
                raise CheckFailed("MIG-8", f"migration failed ({errno_name(rc)} pages left) but "
                                  "the driver declares may_fail_migration=False", page=page)
            failed.append(page)
            continue
        migrated += 1
        assert newpage is not None   # a migration that succeeded had a new page
        if bench.spy.count("migratepage", page) != calls + 1:
            raise CheckFailed("MIG-6", "migratepage was not called exactly once for a "
                              "successful migration", page=page)
        # The old page: no longer movable, the driver's reference dropped: freed.
        if page.mapping & ~PAGE_MAPPING_FLAGS:
            raise CheckFailed("MIG-7", "after migration the old page still points at the "
                              "mapping: __ClearPageMovable(page) was not called", page=page)
        if page._refcount:
            raise CheckFailed("MIG-7", f"after migration the old page still has refcount "
                              f"{page._refcount}: the driver did not drop its reference "
                              f"(expected {driver_refs} reference(s) dropped)", page=page)
        # The new page: movable with the same mapping, the driver's references, unlocked.
        if newpage.mapping != handle | PAGE_MAPPING_MOVABLE:
            raise CheckFailed("MIG-7", "the new page is not movable with the driver's mapping: "
                              "__SetPageMovable(newpage, mapping) was not called", page=newpage)
        if newpage._refcount != driver_refs:
            raise CheckFailed("MIG-7", f"the new page has refcount {newpage._refcount}; the old "
                              f"one had {driver_refs} (the driver's references must move to "
                              "newpage with get_page)", page=newpage)
        if newpage.flags & (LOCKED | ISOLATED | FOREIGN_FLAGS):
            raise CheckFailed("MIG-7", f"the new page is left with "
                              f"{flag_names(newpage.flags & (LOCKED | ISOLATED | FOREIGN_FLAGS))}"
                              " set", page=newpage)
        pfns = {p.pfn for p in bench.pages()}
        if page.pfn in pfns or newpage.pfn not in pfns:
            raise CheckFailed("MIG-7", f"after migration pages() lists "
                              f"{'the old page' if page.pfn in pfns else 'not the new page'}: "
                              "the driver's structures must point at newpage",
                              page=page if page.pfn in pfns else newpage)
        verify_objects(bench, "MIG-7", f"after migrating pfn {page.pfn:#x} to "
                             f"{newpage.pfn:#x} (the old page is poisoned)")
    _fails_for_good(bench, failed)
    if not migrated and bench.pages():
        raise CheckFailed("MIG-8", "no page could be migrated (SYNC, nothing pinned, mapped or "
                          "busy): migratepage must succeed when nothing stands in its way",
                          page=bench.pages()[0], hook="migratepage")
    check_owned_pages(bench, "MIG-7", "after migration")
    verify_driver(bench, "MIG-7", "after migration")
    check_no_leak(bench, "MIG-7", "after migration")
    if twins:
        # Not a FAIL: a driver may carry a "claimed" state of its own over to newpage, so
        # that its own compaction work never lists the page again (a kernel driver of v5.x
        # did); the contract does not forbid a driver to waste space.
        want, got = twin.capacity(), bench.capacity()
        if got < want:
            ctx.warnings.append(f"MIG-7: after migration the driver stored only {got} new "
                                f"object(s) before taking a new page, an instance never "
                                f"migrated stored {want}: the new pages' free space is not used")


#: how many more times MIG-7/success tries a page whose migration failed
RETRIES = 2


def _fails_for_good(bench: Bench, failed: list[Page]) -> None:
    """MIG-8: a page whose migration failed, with nothing in its way (SYNC, no object pinned
    or mapped, the driver's lock free), migrates when tried again: a driver fails only for a
    cause that goes away; one whose migratepage fails a page every time makes it a page
    compaction can never move."""
    for page in failed:
        for _ in range(RETRIES):
            if page.pfn not in {p.pfn for p in bench.pages()} or not bench.isolate(page):
                break
            if bench.migrate(bench.to_list([page]), MigrateMode.SYNC) == 0:
                break
        else:
            rcs = [rc for hook, pfn, rc in bench.spy.results
                   if hook == "migratepage" and pfn == page.pfn]
            if rcs and rcs[-1] != 0:
                raise CheckFailed("MIG-8", f"migratepage failed pfn {page.pfn:#x} "
                                  f"({errno_name(rcs[-1])}) each time it was tried in SYNC "
                                  "mode with nothing in its way (no "
                                  "object pinned or mapped, the driver's lock free): a driver "
                                  "fails only for a cause that goes away, or compaction can "
                                  "never move the page", page=page, hook="migratepage",
                                  what="migratepage fails a page with nothing in its way")


@check("MIG-10/all-modes",
       "migration works in ASYNC, SYNC_LIGHT and SYNC mode and the data stays identical",
       rules=("MIG-7", "MIG-9"))
def all_modes(ctx: Context) -> None:
    bench = ctx.bench()
    bench.isolate_populated(ctx.size(8, 4))
    bench.putback_isolated()
    rounds = ctx.size(3, 1)
    for _ in range(rounds):
        for mode in (MigrateMode.ASYNC, MigrateMode.SYNC_LIGHT, MigrateMode.SYNC):
            _migrate_all(bench, mode)
            bench.fill(2)
    # Pages that moved before, and pages left with two objects, then one: states a page
    # of a driver in use is in, which a population fresh from populate() does not show.
    for keep in (2, 1):
        bench.thin(keep)
        _migrate_all(bench, MigrateMode.SYNC)
    verify_driver(bench, "MIG-7", "after migrations in every mode")
    check_no_leak(bench, "MIG-7", "after migrations in every mode")


def _migrate_all(bench: Bench, mode: MigrateMode) -> None:
    """Isolate and migrate every page in `mode`; in SYNC mode, with nothing in the way, a
    page that failed must migrate when tried again (MIG-8)."""
    done, _ = bench.isolate_all()
    rc = bench.migrate(bench.to_list(done), mode)
    if rc < 0:
        raise CheckFailed("MIG-9", f"migrate_pages returned {errno_name(rc)} with pages to "
                          "spare", page=None)
    verify_objects(bench, "MIG-7", f"after a {mode.name} migration")
    check_owned_pages(bench, "MIG-7", f"after a {mode.name} migration")
    if rc and mode == MigrateMode.SYNC:
        owned = {p.pfn for p in bench.pages()}
        _fails_for_good(bench, [p for p in done if p.pfn in owned])


@check("MIG-8/eagain-retried", "-EAGAIN keeps the page isolated and a later migration succeeds",
       rules=("MIG-1", "MIG-7"), needs=("knob:pin|busy",))
def eagain_retried(ctx: Context) -> None:
    bench = ctx.bench()
    if bench.has_knob("busy"):
        done = bench.isolate_populated(ctx.size(4, 2))
        bench.call("hold")
        try:
            _expect_eagain(bench, done, len(done))
        finally:
            bench.call("release")
    else:
        done = bench.isolate_populated(ctx.size(4, 2))
        handles = list(bench.objects)
        for h in handles:
            bench.call("pin", h)
        try:
            _expect_eagain(bench, done, None, bench.pages_holding(handles))
        finally:
            for h in handles:
                if h in bench.objects:
                    bench.call("unpin", h)
    left = [p for p in done if p.flags & ISOLATED]
    rc = bench.migrate(bench.to_list(left), MigrateMode.SYNC)
    if rc != 0:
        _fails_for_good(bench, left)
        raise CheckFailed("MIG-8", f"after the -EAGAIN cause was gone migration still left "
                          f"{rc} page(s): a later retry must succeed", page=left[0])
    verify_objects(bench, "MIG-7", "after -EAGAIN and a later successful migration")
    check_owned_pages(bench, "MIG-7", "after -EAGAIN and a later successful migration")


def _expect_eagain(bench: Bench, done: list[Page], want: int | None,
                   pinned: dict[int, Any] | None = None) -> None:
    plist = bench.to_list(done)
    before = {p: p._refcount for p in done}
    since = len(bench.spy.results)
    # In the way whatever the mode: ASYNC and SYNC_LIGHT must not move the page either.
    for mode in (MigrateMode.ASYNC, MigrateMode.SYNC_LIGHT):
        bench.migrate(plist, mode, putback=False)
        gone = [p for p in done if p not in plist.pages]
        if want is not None and gone:
            raise CheckFailed("MIG-8", f"with the driver busy a migration in {mode.name} mode "
                              f"moved {len(gone)} page(s): what is in the way in SYNC mode is in "
                              "the way in every mode (-EAGAIN)", page=gone[0], hook="migratepage")
    rc = bench.migrate(plist, MigrateMode.SYNC, putback=False)
    if pinned:
        bench.moved_while_held(pinned, "pinned", since)
    retried = [p for p in done if p in plist.pages]
    if want is not None and rc != want:
        raise CheckFailed("MIG-8", f"with the driver busy migrate_pages returned {rc}; "
                          f"expected {want} (every page retried, -EAGAIN)", page=done[0])
    if not retried:
        raise CheckFailed("MIG-8", "with every object pinned no page stayed on the list: "
                          "the driver did not return -EAGAIN", page=done[0])
    for page in retried:
        n = bench.spy.count("migratepage", page)
        if n < MIGRATE_PASSES:
            raise CheckFailed("MIG-1", f"a page that returned -EAGAIN was tried {n} times; "
                              f"migrate_pages retries it {MIGRATE_PASSES} times", page=page)
        if not page.flags & ISOLATED or page._refcount != before[page]:
            raise CheckFailed("MIG-8", "after -EAGAIN the page must stay isolated with its "
                              "references as they were", page=page)
    owned = {p.pfn for p in bench.pages()}
    for newpage in bench.targets:
        if newpage.pfn in owned:
            continue  # a page whose objects were not pinned did migrate
        if newpage._refcount or newpage.mapping:
            raise CheckFailed("MIG-8", "after -EAGAIN the new page must be untouched (the VM "
                              "frees it) but the driver kept it or made it movable", page=newpage)
    verify_objects(bench, "MIG-8", "after -EAGAIN")
    bench.putback(plist)
    verify_objects(bench, "PUT-2", "after -EAGAIN and putback")
    for page in done:
        if not page.flags & ISOLATED:
            bench.isolate(page)


@check("MIG-5/newpage-locked",
       "a locked new page gives -EAGAIN without calling the driver; a later migration succeeds",
       rules=("MIG-8",))
def newpage_locked(ctx: Context) -> None:
    bench = ctx.bench()
    done = bench.isolate_populated(ctx.size(4, 2))
    cpus = bench.vm.cpus

    def locked_page(page: Page, private: int) -> Page | None:
        newpage = bench.vm.alloc_page()
        if newpage is not None:
            cpus.trylock_page(newpage)  # somebody else holds it
        return newpage

    def put_locked(newpage: Page, private: int) -> None:
        cpus.unlock_page(newpage)
        cpus.put_page(newpage)

    calls = bench.spy.count("migratepage")
    plist = bench.to_list(done)
    rc = bench.migrate(plist, MigrateMode.SYNC, get_new_page=locked_page,
                       put_new_page=put_locked, putback=False)
    if rc != len(done) or bench.spy.count("migratepage") != calls:
        raise CheckFailed("MIG-5", f"with every new page locked migrate_pages returned {rc} "
                          f"and called migratepage {bench.spy.count('migratepage') - calls} "
                          "times; expected every page retried and no call", page=done[0])
    rc = bench.migrate(plist, MigrateMode.SYNC)
    if rc != 0:
        _fails_for_good(bench, done)
        raise CheckFailed("MIG-8", f"after -EAGAIN a migration with free new pages left {rc} "
                          "page(s)", page=done[0])
    verify_objects(bench, "MIG-7", "after a retried migration")
    check_owned_pages(bench, "MIG-7", "after a retried migration")


@check("MIG-2/enomem",
       "no new page (-ENOMEM) stops migration without calling the driver; pages go back",
       rules=("PUT-1", "PUT-3"))
def enomem(ctx: Context) -> None:
    bench = ctx.bench()
    done = bench.isolate_populated(ctx.size(4, 2))
    calls = bench.spy.count("migratepage")
    putbacks = {p: bench.spy.count("putback_page", p) for p in done}
    plist = bench.to_list(done)
    rc = bench.migrate(plist, MigrateMode.SYNC, get_new_page=lambda page, private: None,
                       putback=False)
    if rc != -ENOMEM:
        raise CheckFailed("MIG-2", f"migrate_pages returned {errno_name(rc)} with no new page; "
                          "expected -ENOMEM")
    if bench.spy.count("migratepage") != calls:
        raise CheckFailed("MIG-2", "migratepage was called although there was no new page")
    if len(plist) != len(done) or any(not p.flags & ISOLATED for p in done):
        raise CheckFailed("MIG-2", "after -ENOMEM every page must stay isolated on the list",
                          page=done[0])
    bench.putback(plist)
    for page in done:
        n = bench.spy.count("putback_page", page) - putbacks[page]
        if n != 1:
            raise CheckFailed("PUT-3", f"putback_page called {n} times for a page after "
                              "-ENOMEM; expected exactly once", page=page)
    verify_objects(bench, "PUT-2", "after -ENOMEM and putback")
    done, _ = bench.isolate_all()
    if bench.migrate(bench.to_list(done)) != 0:
        _fails_for_good(bench, done)
        raise CheckFailed("PUT-2", "pages put back after -ENOMEM could not be migrated later",
                          page=done[0] if done else None)
    verify_objects(bench, "MIG-7", "after -ENOMEM, putback and a later migration")


@check("MIG-7/compaction",
       "compaction (whole zone, direct, background) moves the driver's pages, objects intact",
       rules=("CMP-3", "MIG-10"))
def compaction(ctx: Context) -> None:
    bench = ctx.bench(nr_pages=1024, pageblock_order=7)
    vm = bench.vm
    # Fill the zone with unmovable fillers, give the lowest quarter to the driver and
    # punch order-0 holes into the upper half.  The free scanner skips a pageblock
    # that starts with a free block of pageblock order or more
    # (suitable_migration_target), so targets must be holes in used blocks.
    fillers = []
    while (page := vm.alloc_page()) is not None:
        fillers.append(page)
    fillers.sort(key=lambda p: p.pfn)
    low, high = fillers[:len(fillers) // 4], fillers[len(fillers) // 2:]
    for page in low:
        vm.cpus.put_page(page)
    bench.populate(ctx.size(24, 8))
    for page in high[::2]:
        vm.cpus.put_page(page)
    blockers = fillers[len(fillers) // 4:len(fillers) // 2] + high[1::2]
    compact_memory(vm)
    bench.refusal_allowed()
    if bench.pages() and not bench.spy.count("migratepage"):
        raise CheckFailed("CMP-3", "compact_memory over a fragmented zone migrated none of "
                          "the driver's pages", page=bench.pages()[0])
    # compact_memory migrates in SYNC mode and nothing is in the way: the pages whose
    # migration failed there must move when tried again (wherever in the zone they are)
    last = {pfn: rc for hook, pfn, rc in bench.spy.results if hook == "migratepage"}
    _fails_for_good(bench, [p for p in bench.pages() if last.get(p.pfn, 0) != 0])
    verify_objects(bench, "MIG-7", "after compact_memory")
    check_owned_pages(bench, "MIG-7", "after compact_memory")
    page = alloc_pages_compact(bench.vm, 3)
    if page is not None:
        bench.vm.cpus.put_page(page)
    verify_objects(bench, "MIG-7", "after direct compaction")
    check_owned_pages(bench, "MIG-7", "after direct compaction")
    kcompactd_do_work(bench.vm, 2)
    verify_objects(bench, "MIG-7", "after background compaction (kcompactd)")
    if bench.vm.isolated:
        p = next(iter(bench.vm.isolated))
        raise CheckFailed("PUT-3", "a page is still isolated after compaction finished",
                          page=p)
    verify_driver(bench, "MIG-7", "after compaction")
    for page in blockers:
        vm.cpus.put_page(page)
    check_no_leak(bench, "MIG-7", "after compaction")


#: schedule points the CPU holding the driver's locks waits, when the migrating CPU
#: blocks outside an ASYNC callback (putback_page may wait for a mutex), before it lets go
HOLD_POINTS = 200


@check("MIG-10/async-never-blocks",
       "ASYNC isolation and migration never wait for a sleeping lock another CPU holds",
       rules=("LCK-1", "MIG-7"))
def async_never_blocks(ctx: Context) -> None:
    """Whether an ASYNC callback blocks depends on who else holds its locks, so the check
    makes sure somebody does: on a second CPU it holds every mutex the driver made and
    the page locks of the driver's pages that are not being migrated, then the first CPU
    isolates (ISOLATE_ASYNC_MIGRATE) and migrates (MIGRATE_ASYNC) the others.  Each of
    those locks is one that another compactor, a store, free or the driver's own worker
    may hold at that moment on a real machine; a driver that only tries them (the
    virtio balloon's mutex_trylock, z3fold's z3fold_page_trylock) gives -EAGAIN and
    passes.  Waiting is LCK-1 (the scheduler's "contended ... in an ASYNC migration
    callback").  A sleeping lock taken while nobody holds it does not block and is not
    reported: ASYNC mode forbids waiting, which mm/migrate.c's own trylocks avoid, not
    the call.  Spinlocks are left free: spinning is not sleeping."""
    bench = ctx.bench(cpus=2)
    bench.populate(ctx.size(6, 3))
    # Two rounds: the pages held in the first are the ones moved in the second.
    first = bench.pages()[1::2]
    for rnd in range(2):
        pages = bench.pages()
        stay = set(first) if rnd == 0 else {p for p in pages if p not in first}
        moved = [p for p in pages if p not in stay]
        if moved:
            _async_while_held(bench, moved, [p for p in pages if p in stay])
        verify_objects(bench, "MIG-7", "after an ASYNC migration while another CPU held the "
                       "driver's sleeping locks")
        check_owned_pages(bench, "MIG-7", "after an ASYNC migration while another CPU held "
                          "the driver's sleeping locks")
    check_no_leak(bench, "MIG-7", "after ASYNC migrations")


def _async_while_held(bench: Bench, moved: list[Page], held: list[Page]) -> None:
    """cpu0 holds the driver's mutexes and the page locks of `held`; cpu1 isolates and
    migrates `moved` in ASYNC mode, then puts back what is left."""
    sched = bench.vm.cpus
    assert isinstance(sched, Scheduler)
    state = {"holding": False, "done": False}

    def holder() -> None:
        mutexes = [lk for lk in sched.locks if isinstance(lk, SchedLock) and lk.sleeping
                   and lk.cls.kind == "driver" and lk.trylock()]
        locked = [p for p in held if sched.trylock_page(p)]
        state["holding"] = True
        for _ in range(HOLD_POINTS):
            if state["done"]:
                break
            sched.point(f"{YIELD}: holding the driver's sleeping locks")
        for page in locked:
            sched.unlock_page(page)
        for lk in mutexes:
            lk.unlock()

    def migrator() -> None:
        while not state["holding"]:
            sched.point(f"{YIELD}: waiting for the holder")
        done = [p for p in moved if bench.isolate(p, ISOLATE_ASYNC_MIGRATE)]
        bench.migrate(bench.to_list(done), MigrateMode.ASYNC)
        state["done"] = True

    out = sched.run([holder, migrator])
    if out.error is not None:
        raise out.error
    if out.deadlock or out.livelock:
        what = "deadlock" if out.deadlock else "livelock"
        raise CheckFailed("LCK-1", f"{what} in an ASYNC migration while another CPU held the "
                          "driver's sleeping locks: " +
                          "; ".join(c.render() for c in out.cpus), page=moved[0])
