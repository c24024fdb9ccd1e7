"""Every hook of mmplug.hookspecs: documented with its exact signature, and tested here
(one `test_hook_<name>` each, as datasette keeps its plugin hooks honest)."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import pytest

from corehelp import SIMPLEPOOL, PoolPlugin, fresh_target, isolate, make_vm, migrate, simplepool
from mmplug import (
    CheckFailed,
    DriverError,
    DriverInfo,
    PluginError,
    PluginHost,
    RaceEnv,
    Scenario,
    conformance_check,
    hookimpl,
    hookspecs,
    isolate_movable_page,
    migrate_pages,
    putback_movable_pages,
    races,
)
from mmplug.compaction import compact_memory
from mmplug.conformance import run_suite
from mmplug.constants import EAGAIN, CompactResult, MigrateMode
from mmplug.plugins import FailedDriver, LoadedDriver, LoadedListener

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "driver-api.md"
HOOKS = sorted(name for name, obj in vars(hookspecs).items()
               if inspect.isfunction(obj) and hasattr(obj, "mmplug_spec"))


def _signature(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"`{name}({', '.join(params)})`"


# --- every hook is documented and tested ------------------------------------------------------

def test_the_hookspecs_are_the_driver_hooks_and_the_events():
    assert set(HOOKS) == set(hookspecs.DRIVER_HOOKS) | set(hookspecs.EVENT_HOOKS)
    assert all(name.startswith("mmplug_") for name in HOOKS
               if name not in hookspecs.DRIVER_CALLBACKS)


@pytest.mark.skipif(not API.is_file(), reason="runs from a source tree only")
@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook):
    assert _signature(hook) in API.read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert re.search(rf"^def test_hook_{hook}\(", tests, re.M), f"no test_hook_{hook}"


# --- the driver hooks -----------------------------------------------------------------------------

def test_hook_mmplug_driver():
    host = PluginHost()
    loaded = host.load(str(SIMPLEPOOL))
    assert isinstance(loaded, LoadedDriver) and loaded.info.name == "simplepool"
    assert loaded.status == "loaded" and loaded.version == "1.0"


def test_hook_isolate_page():
    calls = []

    class Plugin(PoolPlugin):
        @hookimpl
        def isolate_page(self, page, mode):
            calls.append((page.pfn, mode))
            return super().isolate_page(page, mode)

    vm, pool = make_vm(Plugin())
    page = pool.handles[pool.store(b"x")][0].page
    isolate(vm, page, 0)
    assert calls == [(page.pfn, 0)]


def test_hook_migratepage():
    calls = []

    class Plugin(PoolPlugin):
        @hookimpl
        def migratepage(self, mapping, newpage, page, mode):
            calls.append((page.pfn, mode))
            return super().migratepage(mapping, newpage, page, mode)

    vm, pool = make_vm(Plugin())
    h = pool.store(b"x")
    page = pool.handles[h][0].page
    rc, _ = migrate(vm, isolate(vm, page))
    assert rc == 0 and calls == [(page.pfn, MigrateMode.SYNC)] and pool.read(h) == b"x"


def test_hook_putback_page():
    calls = []

    class Plugin(PoolPlugin):
        @hookimpl
        def putback_page(self, page):
            calls.append(page.pfn)
            return super().putback_page(page)

    vm, pool = make_vm(Plugin())
    page = pool.handles[pool.store(b"x")][0].page
    putback_movable_pages(vm, isolate(vm, page))
    assert calls == [page.pfn]


def _store_then_compact(env: RaceEnv) -> None:
    env.store_objects(2)


WITH_SCENARIO = Scenario("simplepool_own_race", ("REL-2",), "a race of the driver's own",
                         _store_then_compact, (RaceEnv.compact, RaceEnv.free_all))


class ScenarioPlugin(PoolPlugin):
    name = "withrace"

    @hookimpl
    def mmplug_race_scenarios(self, driver):
        assert driver.name == self.name
        return [WITH_SCENARIO]


def test_hook_mmplug_race_scenarios():
    names = [s.name for s in races.scenarios_for(ScenarioPlugin())]
    assert names[-1] == "simplepool_own_race" and "two_compactors" in names
    result = races.explore(ScenarioPlugin(), "simplepool_own_race", seed=0, runs=20)
    assert result.ok and result.runs == 20, result.render()


@pytest.mark.parametrize("gives, says", [
    (lambda: ["not a scenario"], "not an mmplug.Scenario"),
    (lambda: [WITH_SCENARIO, WITH_SCENARIO], "twice or like a generic one"),
    (lambda: 1 / 0, "raised ZeroDivisionError"),
])
def test_scenarios_a_driver_gives_wrong_are_its_api1_failure(gives, says):
    class Bad(PoolPlugin):
        name = "badrace"

        @hookimpl
        def mmplug_race_scenarios(self, driver):
            return gives()

    with pytest.raises(DriverError) as exc:
        races.scenarios_for(Bad())
    assert exc.value.rule == "API-1" and says in str(exc.value)
    assert exc.value.driver == "badrace" and exc.value.hook == "mmplug_race_scenarios"


@conformance_check("DRV-T1/nothing-pinned", "no object is pinned after store()")
def _nothing_pinned(ctx):
    bench = ctx.bench()
    bench.fill(3)
    if bench.instance.pinned_count():
        raise CheckFailed("DRV-T1", "an object is pinned right after store()")


class CheckPlugin(PoolPlugin):
    name = "withcheck"
    pinned = 0

    @hookimpl
    def mmplug_driver(self):
        pinned = self.pinned

        class Pool(simplepool.Pool):
            def pinned_count(self):
                return pinned

        return DriverInfo(name=self.name, version="1.0", factory=Pool)

    @hookimpl
    def mmplug_conformance_checks(self, driver):
        return [_nothing_pinned]


def test_hook_mmplug_conformance_checks():
    host = PluginHost()
    host.register(CheckPlugin())
    report = run_suite("withcheck", host=host, select=["DRV"], races=False)
    assert [(r.check, r.verdict) for r in report.results] == [("DRV-T1/nothing-pinned", "OK")]

    class Pinned(CheckPlugin):
        name = "pinnedcheck"
        pinned = 1

    host.register(Pinned())
    report = run_suite("pinnedcheck", host=host, select=["DRV"])
    failed = report.failures()
    assert [(r.check, r.rule) for r in failed] == [("DRV-T1/nothing-pinned", "DRV-T1")]
    assert "DRV-T1/nothing-pinned" in failed[0].repro


def test_a_driver_check_outside_drv_is_an_api1_failure():
    class Bad(CheckPlugin):
        name = "badcheck"

        @hookimpl
        def mmplug_conformance_checks(self, driver):
            return [conformance_check("ISO-1/mine", "not mine to add")(lambda ctx: None)]

    host = PluginHost()
    host.register(Bad())
    with pytest.raises(DriverError, match="ids start with DRV-"):
        run_suite("badcheck", host=host)


# --- a driver's scenarios come with what it is, not with its name ------------------------------

def _installed(name):
    return pytest.importorskip(f"mmplug_{name}")


def test_a_bundled_driver_copied_under_another_name_keeps_its_race_scenarios(tmp_path):
    package = Path(_installed("zsmalloc").__file__).parent
    copy = tmp_path / "zsmalloc_copy"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    host = PluginHost()
    loaded = host.load(f"mine@{copy}")
    assert loaded.name == "mine" and loaded.plugin.__file__.startswith(str(copy))
    names = [s.name for s in races.scenarios_for(loaded)]
    assert names[-2:] == ["zspage_emptied_while_isolated", "zspage_freed_while_migrating"]
    result = races.explore(loaded, "zspage_freed_while_migrating", seed=0, runs=5)
    assert result.ok and result.driver == "mine", result.render()


def test_a_bundled_driver_aliased_from_its_module_keeps_its_race_scenarios():
    _installed("balloon")
    host = PluginHost()
    loaded = host.load("mine@mmplug_balloon")
    assert loaded.name == "mine" and loaded.info.name == "mine"
    assert "balloon_deflate_vs_migrate" in [s.name for s in races.scenarios_for(loaded)]
    result = races.explore(loaded, "balloon_deflate_vs_migrate", seed=0, runs=5)
    assert result.ok, result.render()


# --- the events -------------------------------------------------------------------------------

class Recorder:
    """A listener of every event."""

    def __init__(self):
        self.events = []

    @hookimpl
    def mmplug_after_isolate_page(self, mapping, page, mode, result):
        self.events.append(("isolate_page", mapping.driver, page.pfn, result))

    @hookimpl
    def mmplug_after_migratepage(self, mapping, newpage, page, mode, result):
        self.events.append(("migratepage", mapping.driver, page.pfn, result))

    @hookimpl
    def mmplug_after_putback_page(self, mapping, page):
        self.events.append(("putback_page", mapping.driver, page.pfn, None))

    @hookimpl
    def mmplug_after_compact_zone(self, zone, order, mode, result):
        self.events.append(("compact_zone", order, mode, result))


def _listening(plugin=None):
    """A VM made before its listener registers: the listener hears it all the same."""
    vm, pool = make_vm(plugin)
    recorder = Recorder()
    assert isinstance(vm.plugins.register(recorder), LoadedListener)
    return vm, pool, recorder


def test_hook_mmplug_after_isolate_page():
    class Refusing(PoolPlugin):
        @hookimpl
        def isolate_page(self, page, mode):
            return False

    vm, pool, rec = _listening(Refusing())
    page = pool.handles[pool.store(b"x")][0].page
    assert isolate_movable_page(vm, page, 0) != 0
    assert rec.events == [("isolate_page", "testpool", page.pfn, False)]   # a refusal too


def test_hook_mmplug_after_migratepage():
    vm, pool, rec = _listening()
    h = pool.store(b"x")
    page = pool.handles[h][0].page
    pool.pin(h)
    lst = isolate(vm, page)
    get_new, _ = fresh_target(vm)
    assert migrate_pages(vm, lst, get_new, None, None, MigrateMode.ASYNC) == 1
    pool.unpin(h)
    assert migrate_pages(vm, lst, get_new, None, None, MigrateMode.SYNC) == 0
    results = [e[3] for e in rec.events if e[0] == "migratepage"]
    assert results[0] == -EAGAIN and results[-1] == 0   # the failures fire too


def test_hook_mmplug_after_putback_page():
    vm, pool, rec = _listening()
    page = pool.handles[pool.store(b"x")][0].page
    lst = isolate(vm, page)
    putback_movable_pages(vm, lst)
    assert rec.events[-1] == ("putback_page", "testpool", page.pfn, None)


def test_hook_mmplug_after_compact_zone():
    vm, pool, rec = _listening()
    pool.store(b"x")
    compact_memory(vm)
    (event,) = [e for e in rec.events if e[0] == "compact_zone"]
    assert event[1] == -1 and event[2] == MigrateMode.SYNC and isinstance(event[3], CompactResult)


def test_a_listener_that_raises_is_an_error_naming_the_event():
    class Broken:
        @hookimpl
        def mmplug_after_putback_page(self, mapping, page):
            raise KeyError("oops")

    vm, pool = make_vm()
    vm.plugins.register(Broken())
    page = pool.handles[pool.store(b"x")][0].page
    with pytest.raises(DriverError) as exc:
        putback_movable_pages(vm, isolate(vm, page))
    assert exc.value.driver == "event listeners" and exc.value.hook == "mmplug_after_putback_page"


def test_a_listener_unregistered_is_no_longer_called():
    vm, pool, rec = _listening()
    vm.plugins.pm.unregister(rec)
    assert vm.listeners.mmplug_after_isolate_page is None
    isolate(vm, pool.handles[pool.store(b"x")][0].page)
    assert rec.events == []


# --- what a plugin is --------------------------------------------------------------------------

def test_a_plugin_with_only_event_hooks_is_a_listener_not_a_driver(tmp_path):
    host = PluginHost()
    listener = host.register(Recorder())
    assert isinstance(listener, LoadedListener) and listener.ok
    assert listener.status == "listener" and "mmplug_after_compact_zone" in listener.reason
    assert listener in host.all() and host.drivers == {}
    assert listener.as_dict()["status"] == "listener"
    path = tmp_path / "tracer.py"
    path.write_text("from mmplug import hookimpl\n\n@hookimpl\n"
                    "def mmplug_after_compact_zone(zone, order, mode, result):\n    pass\n")
    with pytest.raises(PluginError, match="is no driver: it implements only event hooks"):
        host.load(str(path))


def test_a_plugin_with_no_hook_at_all_is_a_failure():
    class Nothing:
        pass

    failed = PluginHost().register(Nothing())
    assert isinstance(failed, FailedDriver) and "implements no mmplug hook" in failed.reason


@pytest.mark.parametrize("marker", ["hookwrapper=True", "wrapper=True"])
@pytest.mark.parametrize("hook, args", [
    ("isolate_page", "page, mode"), ("migratepage", "mapping, newpage, page, mode"),
    ("putback_page", "page"), ("mmplug_race_scenarios", "driver"),
])
def test_a_hook_wrapper_on_a_driver_hook_is_a_clear_load_error(tmp_path, marker, hook, args):
    path = tmp_path / "wrapped.py"
    path.write_text(SIMPLEPOOL.read_text()    # a later definition replaces the callback
                    + f"\n\n@hookimpl({marker})\ndef {hook}({args}):\n    return (yield)\n")
    host = PluginHost()
    with pytest.raises(PluginError) as exc:
        host.load(str(path))
    assert f"{hook} is a hook wrapper; a driver hook is called on the driver's own plugin" \
        in str(exc.value)
    assert isinstance(host.failed[0], FailedDriver) and host.drivers == {}


def test_loaded_and_failed_drivers_are_two_types(tmp_path):
    host = PluginHost()
    good = host.load(str(SIMPLEPOOL))
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('no')\n")
    with pytest.raises(PluginError):
        host.load(str(bad))
    (failed,) = host.failed
    assert isinstance(good, LoadedDriver) and good.ok and good.info.name == "simplepool"
    assert isinstance(failed, FailedDriver) and not failed.ok and failed.status == "failed"
    assert not hasattr(failed, "info") and "RuntimeError" in failed.reason


def test_the_interposer_wraps_the_callbacks_without_touching_the_driver():
    vm, pool = make_vm()
    seen = []

    def counting(call, mapping, newpage, page, mode):
        seen.append(page.pfn)
        return call(mapping, newpage, page, mode)

    before = pool.mapping.a_ops
    assert pool.mapping.interpose(migratepage=counting) is before
    h = pool.store(b"x")
    page = pool.handles[h][0].page
    rc, _ = migrate(vm, isolate(vm, page))
    assert rc == 0 and seen == [page.pfn] and pool.read(h) == b"x"


def test_the_checks_a_driver_brings_are_listed_and_become_pytest_cases(tmp_path):
    path = tmp_path / "checked.py"
    path.write_text(SIMPLEPOOL.read_text().replace('name="simplepool"', 'name="checked"') + '''

from mmplug import conformance_check


@conformance_check("DRV-C1/stores", "store() gives a handle")
def _stores(ctx):
    ctx.bench().store()


@hookimpl
def mmplug_conformance_checks(driver):
    return [_stores]
''')
    from mmplug.conformance import list_checks
    from mmplug.testing import conformance_tests
    assert [c.id for c in list_checks(str(path))][-1] == "DRV-C1/stores"
    assert "DRV-C1/stores" not in [c.id for c in list_checks()]
    test = conformance_tests(str(path), select=["DRV"])
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    assert [p.id for p in mark.args[1]] == ["DRV-C1/stores"]
    report = run_suite(str(path), select=["DRV-C1"])
    assert [(r.check, r.verdict) for r in report.results] == [("DRV-C1/stores", "OK")]
