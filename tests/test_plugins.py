"""Finding, loading and validating driver plugins; dispatch through the mapping word."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap

import pytest

from corehelp import SIMPLEPOOL, PoolPlugin, isolate, make_vm
from mmplug import VM, PluginError, PluginHost, UsageError, hookimpl
from mmplug.plugins import ENTRY_POINT_GROUP

GOOD = SIMPLEPOOL.read_text()


def write(tmp_path, name, text):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_load_by_file_path():
    host = PluginHost()
    drv = host.load(str(SIMPLEPOOL))
    assert drv.ok and drv.name == "simplepool" and drv.origin.startswith("file ")
    assert host.get("simplepool") is drv


def test_load_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_movable_driver.py").write_text(GOOD.replace('name="simplepool"', 'name="mine"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    drv = host.load("my_movable_driver")
    assert drv.ok and drv.name == "mine" and drv.origin == "module my_movable_driver"
    sys.modules.pop("my_movable_driver", None)


def test_load_by_entry_point(tmp_path, monkeypatch):
    (tmp_path / "ep_driver.py").write_text(GOOD.replace('name="simplepool"', 'name="epdrv"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = importlib.metadata.EntryPoints([
        importlib.metadata.EntryPoint("epdrv", "ep_driver", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("broken", "no_such_module_xyz", ENTRY_POINT_GROUP),
    ])
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: eps if group == ENTRY_POINT_GROUP else [])
    host = PluginHost()
    host.load_entry_points()
    assert host.drivers["epdrv"].origin == "entry point epdrv = ep_driver"
    assert [f.name for f in host.failed] == ["broken"]          # one bad plugin, others load
    assert "import failed" in host.failed[0].reason
    vm = VM(nr_pages=512, pageblock_order=6, max_order=8, plugins=host)
    pool = vm.create_driver("epdrv")
    assert pool.read(pool.store(b"hi")) == b"hi"
    sys.modules.pop("ep_driver", None)


def test_unknown_driver_is_a_usage_error_with_suggestions():
    host = PluginHost()
    host.load(str(SIMPLEPOOL))
    with pytest.raises(UsageError, match="did you mean simplepool"):
        host.get("simplepoo")


def test_missing_file_is_a_usage_error():
    with pytest.raises(UsageError, match="no driver file"):
        PluginHost().load("/nonexistent/driver.py")


@pytest.mark.parametrize("mutation,reason", [
    (lambda s: s.replace("@hookimpl\ndef putback_page", "def putback_page"),
     "missing callback putback_page(page)"),
    (lambda s: s.replace("def migratepage(mapping, newpage, page, mode)",
                         "def migratepage(mapping, page, newpage, mode)"),
     "must take exactly (mapping, newpage, page, mode)"),
    (lambda s: s.replace("def isolate_page(page, mode)", "def isolate_page(page, mode, extra)"),
     "invalid hook"),
    (lambda s: s + "\n@hookimpl\ndef isolate_pages(page):\n    return True\n",
     "unknown hook(s) isolate_pages"),
    (lambda s: s.replace("@hookimpl\ndef mmplug_driver", "def mmplug_driver"),
     "missing hook mmplug_driver"),
    (lambda s: s.replace("    return DriverInfo(name=", "    return dict(name="),
     "returned dict, expected mmplug.DriverInfo"),
    (lambda s: s + "\nraise RuntimeError('import-time failure')\n",
     "import failed: RuntimeError: import-time failure"),
    (lambda s: s.replace("def store(self, data: bytes) -> int:",
                         "def store(self, data: bytes) -> int"),
     "import failed: SyntaxError"),
])
def test_validation_failures_are_reported_with_reason(tmp_path, mutation, reason):
    path = write(tmp_path, "bad", mutation(GOOD))
    host = PluginHost()
    with pytest.raises(PluginError) as exc:
        host.load(str(path))
    assert reason in str(exc.value)
    assert host.failed and reason in host.failed[0].reason
    assert host.drivers == {}


def test_duplicate_driver_names_are_refused(tmp_path):
    host = PluginHost()
    host.load(str(SIMPLEPOOL))
    copy = write(tmp_path, "copy", GOOD)
    with pytest.raises(PluginError, match="already loaded"):
        host.load(str(copy))


def test_per_page_dispatch_follows_the_mapping_word_not_a_broadcast():
    """Two drivers loaded: each page's callbacks are its own driver's only."""
    calls = []

    class A(PoolPlugin):
        name = "drv_a"

        @hookimpl
        def isolate_page(self, page, mode):
            calls.append("a")
            return super().isolate_page(page, mode)

    class B(PoolPlugin):
        name = "drv_b"

        @hookimpl
        def isolate_page(self, page, mode):
            calls.append("b")
            return super().isolate_page(page, mode)

    host = PluginHost()
    la, lb = host.register(A()), host.register(B())
    vm = VM(nr_pages=1024, pageblock_order=6, max_order=8, min_free_pages=0, plugins=host)
    pa, pb = vm.create_from(la), vm.create_from(lb)
    page_b = pb.handles[pb.store(b"b")][0].page
    pa.store(b"a")
    isolate(vm, page_b)
    assert calls == ["b"]


def test_event_hooks_are_broadcast_to_every_listener_only_when_implemented():
    events = []

    class Listener:
        @hookimpl
        def mmplug_after_isolate_page(self, mapping, page, mode, result):
            events.append(("isolated", page.pfn, mapping.driver, result))

        @hookimpl
        def mmplug_after_migratepage(self, mapping, newpage, page, mode, result):
            events.append(("migrated", page.pfn, newpage.pfn, result))

    vm, pool = make_vm()
    assert vm.listeners.mmplug_after_isolate_page is None    # nobody listens: no call at all
    vm.plugins.register(Listener())
    page = pool.handles[pool.store(b"e")][0].page
    from corehelp import migrate
    lst = isolate(vm, page)
    migrate(vm, lst)
    assert events[0] == ("isolated", page.pfn, "testpool", True)
    assert events[1][0] == "migrated" and events[1][3] == 0


def test_factory_options_are_checked():
    vm, pool = make_vm()
    with pytest.raises(UsageError, match="bad options"):
        vm.create_driver("testpool", nonsense=1)
