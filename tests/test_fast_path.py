"""The one-CPU fast paths of mm/migrate.c's model give what the general path gives.

On a plain `SingleCPU` the VM's per-page paths (isolate_movable_page,
__unmap_and_move, the putback and the last put of unmap_and_move) and
mmplug.kernel's helpers take and drop page locks and references in place,
call_migratepage() passes a clean success without its full judgement, and
migrate_pages() migrates a page in one frame, stepping aside into
unmap_and_move() wherever the case is unusual (CASES from "no newpage" on, and
the test after them that each case leaves at the step it concerns).  A
subclass of SingleCPU that changes nothing takes the general path: every page
operation through the backend.  Each case here runs on both and compares
everything the run leaves: the result or the error (type, rule, message,
driver, hook), vmstat, warnings, every page frame, the free lists and the
zone's bytes.  The per-page paths also decide PageMovable's usual case in
place: a test compares each of them with mmplug.page.movable_mapping on pages
in every state it tells apart.  And the call sites keep each callback's time
limit in place, without a wrapper: the watchdog tests check what it sees and
reports.  The buddy merge leaves out its bounds checks in a zone of whole aligned
MAX_ORDER-1 blocks: the last test frees pages both ways and compares the lists.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

import pytest

from corehelp import HERE, SIMPLEPOOL, PoolPlugin, fresh_target, make_vm, simplepool
from mmplug import VM, DriverError, MmplugError, PluginHost, VMConfig, hookimpl, migrate, watchdog
from mmplug.compaction import compact_memory
from mmplug.constants import EAGAIN, EBUSY, ISOLATE_ASYNC_MIGRATE, MigrateMode
from mmplug.cpus.backend import PageOperations
from mmplug.cpus.single import SingleCPU
from mmplug.errors import ContractViolation
from mmplug.kernel import (
    clear_page_movable,
    copy_highpage,
    get_page,
    lock_page,
    put_page,
    set_page_movable,
    unlock_page,
)
from mmplug.mapping import MovableOps
from mmplug.migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from mmplug.page import (
    ISOLATED,
    LOCKED,
    PAGE_MAPPING_ANON,
    PAGE_MAPPING_MOVABLE,
    SLAB,
    TAIL,
    WRITEBACK,
    Page,
    movable_mapping,
)


class GeneralCPU(SingleCPU):
    """One CPU as SingleCPU is, under another type: the VM's general path."""

    __slots__ = ()


def _migrate_with(mistake: str):
    """simplepool's migratepage, done right or with one `mistake`."""
    def migratepage(self, mapping, newpage, page, mode):
        pool = mapping.private_data
        if mistake == "raises":
            raise KeyError("no such zspage")
        if mistake == "ebusy":
            return -EBUSY
        if mistake in ("returns None", "returns 1", "returns 0.0"):
            return {"returns None": None, "returns 1": 1, "returns 0.0": 0.0}[mistake]
        if mistake == "double unlock":
            unlock_page(newpage)
            unlock_page(newpage)
        if mistake == "fails but changed":
            set_page_movable(newpage, mapping)
            return -EAGAIN
        if mistake == "touches lru":
            page.lru = None
            return -EAGAIN
        if mistake == "touches lru on success":
            page.lru = None
        if mistake == "flags the old page":
            page.flags |= 1 << 12        # PG_private, which the free path refuses
        st = page.private
        if pool.held or st.pinned:
            return -EAGAIN
        copy_highpage(newpage, page)
        if mistake != "no set":
            set_page_movable(newpage, mapping)
        if mistake != "no get":
            get_page(newpage)
        newpage.private = st
        st.page = newpage
        st.isolated = False
        if st.used() < simplepool.SLOTS:
            pool.partial[st] = None
        if mistake != "no clear":
            clear_page_movable(page)
        if mistake != "keeps private":
            page.private = 0
        if mistake == "clears isolated":
            page.flags &= ~ISOLATED
        if mistake == "unlocks page":
            unlock_page(page)
        if mistake == "unlocks newpage":
            unlock_page(newpage)
        if mistake != "no put":
            put_page(page)
        return 0
    return migratepage


def _isolate_with(mistake: str):
    def isolate_page(self, page, mode):
        if mistake == "refuses":
            return False
        if mistake == "raises":
            raise RuntimeError("isolate failed")
        if mistake == "returns 1":
            return 1
        if mistake == "double unlock":
            unlock_page(page)
            unlock_page(page)
        ret = simplepool.isolate_page(page, mode)
        if mistake == "unlocks":
            unlock_page(page)
        if mistake == "sets isolated":
            page.flags |= ISOLATED
        return ret
    return isolate_page


class Listener:
    """An event plugin: migratepage and isolate_page results are reported to it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    @hookimpl
    def mmplug_after_migratepage(self, mapping, newpage, page, mode, result):
        self.seen.append(("migratepage", result))

    @hookimpl
    def mmplug_after_isolate_page(self, mapping, page, mode, result):
        self.seen.append(("isolate_page", result))


def _plugin(isolate: str = "", migrate: str = "") -> Any:
    overrides = {}
    if isolate:
        overrides["isolate_page"] = hookimpl(_isolate_with(isolate))
    if migrate:
        overrides["migratepage"] = hookimpl(_migrate_with(migrate))
    return type("Case", (PoolPlugin,), overrides)()


def _word(value: Any) -> Any:
    """A field of a page as the two runs can compare it: an int as it is, else its type."""
    if value is None or isinstance(value, int):
        return value
    return type(value).__name__


def _state(vm) -> dict[str, Any]:
    zone = vm.zone
    return {
        "vmstat": vm.vmstat.snapshot(),
        "warnings": [w.render() for w in vm.warnings],
        "frames": [(p.pfn, p.flags, p._refcount, p.mapping, _word(p.private), _word(p.lru))
                   for p in zone.pages],
        "free lists": [[list(zone.free_area[o][mt]) for mt in range(len(zone.free_area[o]))]
                       for o in range(zone.max_order)],
        "isolated": sorted(p.pfn for p in vm.isolated),
        "nr_isolated": [m.nr_isolated for m in vm.mappings.values()],
        "bytes": hashlib.sha256(zone.mem).hexdigest(),
    }


def _error(exc: BaseException) -> tuple[Any, ...]:
    return (type(exc).__name__, getattr(exc, "rule", None), str(exc),
            getattr(exc, "driver", None), getattr(exc, "hook", None))


def _run(cpus: SingleCPU, case: dict[str, Any]) -> dict[str, Any]:
    """Store objects over a few pages, set up the case, isolate every driver page, migrate
    them all, put back what is left; everything the run did, or the error it ended in."""
    listener = Listener()
    vm, pool = make_vm(_plugin(case.get("isolate", ""), case.get("migrate", "")), cpus=cpus,
                       **case.get("config", {}))
    if case.get("listen"):
        vm.plugins.register(listener)
    handles = [pool.store(bytes([i]) * (17 + i)) for i in range(4 * simplepool.SLOTS + 2)]
    pages: list[Page] = list(dict.fromkeys(pool.handles[h][0].page for h in handles))
    setup = case.get("setup")
    if setup is not None:
        setup(vm, pool, pages, handles)
    out: dict[str, Any] = {}
    try:
        lst = PageList()
        out["isolate"] = []
        for page in pages:
            rc = isolate_movable_page(vm, page, ISOLATE_ASYNC_MIGRATE)
            out["isolate"].append(rc)
            if rc == 0:
                lst.add(page)
        after = case.get("after_isolate")
        if after is not None:
            after(vm, pool, pages, handles)
        get_new, handed = fresh_target(vm)
        new = case.get("newpage")
        if new is not None:
            get_new = new(vm)
        out["migrate"] = migrate_pages(vm, lst, get_new, None, None,
                                       case.get("mode", MigrateMode.SYNC))
        out["left"] = [p.pfn for p in lst]
        putback_movable_pages(vm, lst)
        out["data"] = [pool.read(h) for h in pool.handles]
    except MmplugError as exc:
        out["error"] = _error(exc)
    out["listened"] = listener.seen
    out.update(_state(vm))
    return out


def _hold(vm, pool, pages, handles):
    pool.hold()


def _pin_first(vm, pool, pages, handles):
    pool.pin(handles[0])


def _release_one(vm, pool, pages, handles):
    for h in [h for h in pool.handles if pool.handles[h][0].page is pages[1]]:
        pool.free(h)


def _clear_movable_of_one(vm, pool, pages, handles):
    lock_page(pages[2])
    clear_page_movable(pages[2])     # released, but the driver still holds its reference
    unlock_page(pages[2])


def _writeback_one(vm, pool, pages, handles):
    pages[0].flags |= WRITEBACK


def _lock_one(vm, pool, pages, handles):
    pages[1].flags |= LOCKED


def _unlock_one(vm, pool, pages, handles):
    pages[1].flags &= ~LOCKED


def _drop_ref_of_one(vm, pool, pages, handles):
    vm.cpus.put_page(pages[0])       # the driver's reference, the page still PageMovable


def _slab_one(vm, pool, pages, handles):
    pages[3].flags |= SLAB


def _lru_changed(vm, pool, pages, handles):
    pages[2].lru = None


def _isolated_cleared(vm, pool, pages, handles):
    pages[1].flags &= ~ISOLATED


def _slab_after_isolation(vm, pool, pages, handles):
    pages[2].flags |= SLAB


def _tail_after_isolation(vm, pool, pages, handles):
    pages[2].flags |= TAIL


def _destroyed_after_isolation(vm, pool, pages, handles):
    pool.mapping.a_ops = None


def _resched(vm, pool, pages, handles):
    vm.cpus.current().need_resched = True


def _no_newpage(vm):
    def get_new(page, private):
        return None
    return get_new


def _newpage_once(vm):
    """A target for the first page only: the second attempt is -ENOMEM."""
    given = []

    def get_new(page, private):
        if given:
            return None
        given.append(page)
        return vm.zone.alloc_pages(0, 0x08, ignore_watermark=True)
    return get_new


def _locked_newpage(vm):
    def get_new(page, private):
        new = vm.zone.alloc_pages(0, 0x08, ignore_watermark=True)
        new.flags |= LOCKED
        return new
    return get_new


CASES: dict[str, dict[str, Any]] = {
    "success": {},
    "success, ASYNC": {"mode": MigrateMode.ASYNC},
    "success, listened to": {"listen": True},
    "EAGAIN every pass": {"setup": _hold},
    "EAGAIN for one page": {"setup": _pin_first},
    "EBUSY": {"migrate": "ebusy"},
    "migratepage raises": {"migrate": "raises"},
    "migratepage returns None": {"migrate": "returns None"},
    "migratepage returns 1": {"migrate": "returns 1"},
    "migratepage returns 0.0": {"migrate": "returns 0.0"},
    "migratepage without clear": {"migrate": "no clear"},
    "migratepage without set": {"migrate": "no set"},
    "migratepage without get": {"migrate": "no get"},
    "migratepage without put": {"migrate": "no put"},
    "migratepage unlocks page": {"migrate": "unlocks page"},
    "migratepage unlocks newpage": {"migrate": "unlocks newpage"},
    "migratepage unlocks twice": {"migrate": "double unlock"},
    "migratepage fails but changed newpage": {"migrate": "fails but changed"},
    "migratepage fails and touches lru": {"migrate": "touches lru"},
    "migratepage clears PG_isolated": {"migrate": "clears isolated"},
    "migratepage clears PG_isolated, listened to": {"migrate": "clears isolated",
                                                    "listen": True},
    "released while isolated": {"after_isolate": _release_one},
    "cleared movable while isolated": {"after_isolate": _clear_movable_of_one},
    "last reference dropped while isolated": {"after_isolate": _drop_ref_of_one},
    "under writeback": {"after_isolate": _writeback_one},
    "locked by someone else": {"after_isolate": _lock_one},
    "locked by someone else, ASYNC": {"after_isolate": _lock_one, "mode": MigrateMode.ASYNC},
    "newpage locked": {"newpage": _locked_newpage},
    "isolate refuses": {"isolate": "refuses"},
    "isolate raises": {"isolate": "raises"},
    "isolate returns 1": {"isolate": "returns 1"},
    "isolate unlocks": {"isolate": "unlocks"},
    "isolate unlocks twice": {"isolate": "double unlock"},
    "isolate sets PG_isolated": {"isolate": "sets isolated"},
    "isolate, listened to": {"listen": True, "isolate": "refuses"},
    "isolate a locked page": {"setup": _lock_one, "after_isolate": _unlock_one},
    "isolate a freed page": {"setup": _release_one},
    "isolate a slab page": {"setup": _slab_one},
    # where migrate_pages' one-CPU path steps aside, before the driver and after it
    "no newpage": {"newpage": _no_newpage},
    "a newpage for the first page only": {"newpage": _newpage_once},
    "lru changed after isolation": {"after_isolate": _lru_changed},
    "PG_isolated cleared after isolation": {"after_isolate": _isolated_cleared},
    "slab after isolation": {"after_isolate": _slab_after_isolation},
    "tail after isolation": {"after_isolate": _tail_after_isolation},
    "instance destroyed after isolation": {"after_isolate": _destroyed_after_isolation},
    "need_resched before migration": {"after_isolate": _resched},
    "no time limit": {"config": {"callback_timeout": None}},
    "migratepage touches lru on success": {"migrate": "touches lru on success"},
    "migratepage leaves a flag the free path refuses": {"migrate": "flags the old page"},
    "migratepage keeps the old page's private": {"migrate": "keeps private"},
}


@pytest.fixture
def backend_calls(monkeypatch):
    """How often the backend's page operations ran, by name: the ones done in place are not."""
    calls: dict[str, int] = {}

    def counted(name):
        op = getattr(PageOperations, name)

        def counting(self, page):
            calls[name] = calls.get(name, 0) + 1
            return op(self, page)
        return counting

    for name in ("trylock_page", "unlock_page", "get_page", "get_page_unless_zero",
                 "put_page"):
        monkeypatch.setattr(PageOperations, name, counted(name))
    return calls


@pytest.mark.parametrize("name", list(CASES))
def test_the_one_cpu_path_gives_what_the_general_path_gives(name):
    case = CASES[name]
    assert _run(SingleCPU(), case) == _run(GeneralCPU(), case)


def test_the_cases_take_the_paths_they_compare_and_reach_the_checks(backend_calls):
    """The comparison above is not empty: the general runs call the backend for every page
    operation, the one-CPU runs for none, the put that frees each migrated page included;
    the failures they compare are the rules' own."""
    general = _run(GeneralCPU(), CASES["success"])
    assert general["migrate"] == 0 and general["vmstat"]["pgmigrate_success"] == 5
    assert backend_calls["trylock_page"] >= 10 and backend_calls["unlock_page"] >= 10
    assert backend_calls["put_page"] >= 10
    backend_calls.clear()
    fast = _run(SingleCPU(), CASES["success"])
    assert fast["migrate"] == 0 and fast["vmstat"]["pgmigrate_success"] == 5
    assert backend_calls == {}
    errors = {name: _run(SingleCPU(), CASES[name]).get("error", (None, None))[1]
              for name in ("migratepage raises", "migratepage without get",
                           "migratepage unlocks page", "migratepage returns 0.0",
                           "migratepage fails but changed newpage",
                           "migratepage fails and touches lru", "migratepage unlocks twice",
                           "isolate returns 1", "isolate unlocks twice",
                           "last reference dropped while isolated")}
    assert errors == {"migratepage raises": "MIG-8", "migratepage without get": "MIG-7",
                      "migratepage unlocks page": "MIG-7", "migratepage returns 0.0": "MIG-8",
                      "migratepage fails but changed newpage": "MIG-8",
                      "migratepage fails and touches lru": "ISO-4",
                      "migratepage unlocks twice": "LCK-2", "isolate returns 1": "ISO-2",
                      "isolate unlocks twice": "LCK-2",
                      "last reference dropped while isolated": "REL-1"}
    warned = _run(SingleCPU(), CASES["migratepage clears PG_isolated"])["warnings"]
    assert [w.split(":")[0] for w in warned] == ["MIG-6"]


#: cases whose pages leave migrate_pages' one-CPU path before the driver is called, and after
STEP_ASIDE_BEFORE = ("no newpage", "lru changed after isolation", "slab after isolation",
                     "tail after isolation", "instance destroyed after isolation",
                     "released while isolated", "last reference dropped while isolated",
                     "under writeback", "locked by someone else", "newpage locked")
STEP_ASIDE_AFTER = ("EBUSY", "EAGAIN for one page", "migratepage clears PG_isolated",
                    "success, listened to", "migratepage without get",
                    "migratepage touches lru on success")
#: ... of which these break a rule: the judgement raises, nothing resumes
JUDGED_BROKEN = ("migratepage without get", "migratepage touches lru on success")


@pytest.fixture
def general_steps(monkeypatch):
    """How often migrate_pages reached the general functions: unmap_and_move from the start
    ("unmap_and_move": the general path, or the one-CPU path stepping aside before the
    driver), unmap_and_move resumed after move_to_new_page ("resumed": the one-CPU path
    stepping aside after the driver), and _judge_migratepage (the driver's answer judged in
    full)."""
    calls: dict[str, int] = {}
    unmap_and_move, judge = migrate.unmap_and_move, migrate._judge_migratepage

    def count(name):
        calls[name] = calls.get(name, 0) + 1

    def counted_unmap_and_move(*args, moved=None):
        count("unmap_and_move" if moved is None else "resumed")
        return unmap_and_move(*args, moved=moved)

    def counted_judge(*args):
        count("_judge_migratepage")
        return judge(*args)

    monkeypatch.setattr(migrate, "unmap_and_move", counted_unmap_and_move)
    monkeypatch.setattr(migrate, "_judge_migratepage", counted_judge)
    return calls


def test_one_cpu_migration_takes_its_own_path_and_steps_aside_where_the_case_ends(
        general_steps):
    """The comparisons above compare two paths: a clean migration on one CPU calls none of
    the general functions, the general backend calls unmap_and_move for every page, and
    each unusual case leaves the one-CPU path at the step it concerns: before the driver
    for unmap_and_move from the start, after it for the full judgement and the rest of
    unmap_and_move."""
    fast = _run(SingleCPU(), CASES["success"])
    assert fast["vmstat"]["pgmigrate_success"] == 5 and general_steps == {}
    _run(GeneralCPU(), CASES["success"])
    assert general_steps == {"unmap_and_move": 5}
    for name in STEP_ASIDE_BEFORE:
        general_steps.clear()
        _run(SingleCPU(), CASES[name])
        assert general_steps.get("unmap_and_move") and "resumed" not in general_steps, name
    for name in STEP_ASIDE_AFTER:
        general_steps.clear()
        _run(SingleCPU(), CASES[name])
        assert general_steps.get("_judge_migratepage"), name
        assert bool(general_steps.get("resumed")) == (name not in JUDGED_BROKEN), name
        assert "unmap_and_move" not in general_steps, name
    general_steps.clear()
    _run(SingleCPU(), CASES["a newpage for the first page only"])
    assert general_steps == {"unmap_and_move": 1}


@pytest.mark.parametrize("driver", ["simplepool", "nullpool"])
def test_whole_zone_compaction_is_the_same_on_both_paths(driver):
    """compact_memory() of a fragmented zone: the same pages moved, counted, and freed."""
    path = SIMPLEPOOL if driver == "simplepool" else HERE.parent / "benchmarks" / "nullpool.py"

    def run(cpus):
        host = PluginHost()
        loaded = host.load(str(path))
        vm = VM(VMConfig(nr_pages=4096, pageblock_order=6, max_order=8, min_free_pages=0),
                plugins=host, cpus=cpus)
        pool = vm.create_from(loaded)
        rng = random.Random(7)
        handles = [pool.store(rng.randbytes(rng.randint(1, pool.slot_size)))
                   for _ in range(3000 * (vm.zone.page_size // pool.slot_size))]
        rng.shuffle(handles)
        for h in handles[: len(handles) * 3 // 5]:
            pool.free(h)
        result = compact_memory(vm)
        vm.zone.check_free_lists()
        return result, [pool.read(h) for h in pool.handles], _state(vm)

    fast = run(SingleCPU())
    assert fast[2]["vmstat"]["pgmigrate_success"] > 100
    assert fast == run(GeneralCPU())


class _Watched(PoolPlugin):
    """simplepool that records the watchdog's call of its thread while each callback runs,
    and hangs in the callback named by `hang`."""

    def __init__(self, hang: str = "") -> None:
        self.hang = hang
        self.seen: list[Any] = []

    def _enter(self, hook: str) -> None:
        self.seen.append(watchdog.lane().call)
        # a hang the watchdog stops at 0.2 s (the bound only ends a test that would fail)
        deadline = time.monotonic() + 30
        while hook == self.hang and time.monotonic() < deadline:
            pass

    @hookimpl
    def isolate_page(self, page, mode):
        self._enter("isolate_page")
        return simplepool.isolate_page(page, mode)

    @hookimpl
    def migratepage(self, mapping, newpage, page, mode):
        self._enter("migratepage")
        return simplepool.migratepage(mapping, newpage, page, mode)

    @hookimpl
    def putback_page(self, page):
        self._enter("putback_page")
        return simplepool.putback_page(page)


def _isolate_all(vm, pool) -> tuple[PageList, list[Page]]:
    pages = [pool.handles[pool.store(b"x" * 40)][0].page for _ in range(simplepool.SLOTS * 2)]
    pages = list(dict.fromkeys(pages))
    lst = PageList()
    for page in pages:
        assert isolate_movable_page(vm, page, 0) == 0
        lst.add(page)
    return lst, pages


@pytest.mark.parametrize("cpus", [SingleCPU, GeneralCPU])
def test_the_watchdog_names_each_callback_while_it_runs_and_nothing_after(cpus):
    """The call sites keep the callback's time limit themselves: inside each callback the
    thread's lane names the driver and the callback; after it, returned or raised, the lane
    is as it was."""
    plugin = _Watched()
    vm, pool = make_vm(plugin, cpus=cpus(), callback_timeout=5.0)
    lst, pages = _isolate_all(vm, pool)
    lst2 = PageList()
    page = lst.pages[-1]
    lst.delete(page)
    lst2.add(page)
    assert migrate_pages(vm, lst, fresh_target(vm)[0], None, None, MigrateMode.SYNC) == 0
    putback_movable_pages(vm, lst2)
    hooks = ["isolate_page"] * len(pages) + ["migratepage"] * (len(pages) - 1) + \
        ["putback_page"]
    assert [(c.driver, c.hook, c.limit) for c in plugin.seen] == \
        [("testpool", hook, 5.0) for hook in hooks]
    assert watchdog.lane().call is None
    assert _run(cpus(), {"migrate": "raises"})["error"][1] == "MIG-8"
    assert watchdog.lane().call is None
    no_limit = _Watched()
    vm, pool = make_vm(no_limit, cpus=cpus(), callback_timeout=None)
    _isolate_all(vm, pool)
    assert set(no_limit.seen) == {None}


@pytest.mark.parametrize("hook", ["isolate_page", "migratepage", "putback_page"])
def test_a_hung_callback_is_the_drivers_error_naming_the_callback_and_the_page(hook):
    plugin = _Watched(hang=hook)
    vm, pool = make_vm(plugin, callback_timeout=0.2)
    page = pool.handles[pool.store(b"x")][0].page
    with pytest.raises(DriverError, match=r"did not return within 0\.2 s") as exc:
        lst = PageList()
        assert isolate_movable_page(vm, page, 0) == 0
        lst.add(page)
        if hook == "putback_page":
            putback_movable_pages(vm, lst)
        else:
            migrate_pages(vm, lst, fresh_target(vm)[0], None, None, MigrateMode.SYNC)
    err = exc.value
    assert (err.driver, err.hook, err.page) == ("testpool", hook, page)
    assert watchdog.lane().call is None


def _set_word(word):
    def change(vm, pool, page):
        page.mapping = word(pool.mapping)
    return change


def _flag(bit):
    def change(vm, pool, page):
        page.flags |= bit
    return change


def _ops_without_isolate(vm, pool, page):
    ops = pool.mapping.a_ops
    pool.mapping.a_ops = MovableOps(None, ops.migratepage, ops.putback_page)  # type: ignore


def _destroyed(vm, pool, page):
    pool.mapping.a_ops = None


#: page states that PageMovable tells apart, as changes to a page the pool stored
MOVABLE_STATES: dict[str, Any] = {
    "movable": None,
    "released by its driver": _set_word(lambda m: PAGE_MAPPING_MOVABLE),
    "slab": _flag(SLAB),
    "tail": _flag(TAIL),
    "instance destroyed": _destroyed,
    "no isolate_page": _ops_without_isolate,
    "word pointing nowhere": _set_word(lambda m: (m.handle + 0x1000) | PAGE_MAPPING_MOVABLE),
    "anon word": _set_word(lambda m: m.handle | PAGE_MAPPING_ANON),
    "ksm word": _set_word(lambda m: m.handle | PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE),
}


def _page_movable(page: Page) -> str:
    """What mmplug.page.movable_mapping says of `page`: "movable", "not movable" or the rule
    it raises."""
    locked = page.flags & LOCKED
    page.flags |= LOCKED
    try:
        return "movable" if movable_mapping(page) is not None else "not movable"
    except ContractViolation as exc:
        return exc.rule
    finally:
        page.flags = page.flags & ~LOCKED | locked


def _isolate(vm, page) -> str:
    return "movable" if isolate_movable_page(vm, page, 0) == 0 else "not movable"


def _clear(vm, page) -> str:
    lock_page(page)
    try:
        clear_page_movable(page)
    except ContractViolation as exc:
        if exc.rule == "FLG-5" and "PageMovable" in str(exc):
            return "not movable"
        raise
    return "movable"


def _migrate(vm, page) -> str:
    lst = PageList()
    lst.add(page)
    migrate_pages(vm, lst, fresh_target(vm)[0], None, None, MigrateMode.SYNC)
    ev = vm.vmstat
    assert ev["pgmigrate_success"] == 1
    return "not movable" if ev["migrate_released"] else "movable"


def _put_back(vm, page) -> str:
    lst = PageList()
    lst.add(page)
    putback_movable_pages(vm, lst)
    return "not movable" if vm.vmstat["migrate_released"] else "movable"


#: the places that decide PageMovable in place; the last two on a page isolated before
SITES = {"isolate_movable_page": _isolate, "__ClearPageMovable": _clear,
         "move_to_new_page": _migrate, "putback_movable_pages": _put_back}


def _reachable(site: str, state: str) -> bool:
    """Whether a page can be in `state` at `site`: an isolated page keeps its movable tag
    until it is released, so the last two sites never meet another word."""
    return not (site in ("move_to_new_page", "putback_movable_pages") and "word" in state
                and "nowhere" not in state)


@pytest.mark.parametrize(("state", "site"), [(state, site) for state in MOVABLE_STATES
                                             for site in SITES if _reachable(site, state)])
def test_pagemovable_in_place_answers_as_movable_mapping(site, state):
    """Each per-page path that decides PageMovable's usual case in place takes a page for
    movable exactly when mmplug.page.movable_mapping does, and raises what it raises."""
    vm, pool = make_vm()
    page = pool.handles[pool.store(b"x")][0].page
    if site in ("move_to_new_page", "putback_movable_pages"):
        assert isolate_movable_page(vm, page, 0) == 0
    change = MOVABLE_STATES[state]
    if change is not None:
        change(vm, pool, page)
    expected = _page_movable(page)
    try:
        got = SITES[site](vm, page)
    except ContractViolation as exc:
        got = exc.rule
    assert got == expected
    assert (expected == "movable") == (state == "movable")


@pytest.mark.parametrize("nr_pages, start_pfn", [(4096, 0), (4096 + 64, 0), (4096, 64),
                                                 (4096, 1 << 12)])
def test_buddy_merge_without_bounds_checks_frees_as_with_them(nr_pages, start_pfn):
    """__free_one_page skips its buddy bounds checks only in a zone of whole aligned
    MAX_ORDER-1 blocks, and there it builds the free lists the checks build."""
    from mmplug.constants import GFP_HIGHUSER_MOVABLE
    from mmplug.zone import Zone

    vm = VM(VMConfig(nr_pages=4096, pageblock_order=6, max_order=8, min_free_pages=0))

    def run(checked: bool) -> tuple[Any, ...]:
        zone = Zone(vm, nr_pages, start_pfn=start_pfn, pageblock_order=6, max_order=8,
                    min_free_pages=0)
        assert zone._buddies_inside == (not start_pfn % 128 and not nr_pages % 128)
        if checked:
            zone._buddies_inside = False
        taken = []
        while (page := zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE, ignore_watermark=True)):
            taken.append(page)
        assert len(taken) == nr_pages
        random.Random(5).shuffle(taken)
        seen = []
        for i, page in enumerate(taken):
            page._refcount = 0
            zone.free_pages(page, 0)
            if i % 512 == 0 or i == len(taken) - 1:
                zone.check_free_lists()
                seen.append((zone.buddyinfo(), [[list(lst) for lst in area]
                                                for area in zone.free_area]))
        frames = [(p.pfn, p.flags, p.private, p.lru) for p in zone.pages]
        return seen, frames, zone.nr_free_pages

    fast = run(False)
    assert fast[2] == nr_pages
    assert fast == run(True)
