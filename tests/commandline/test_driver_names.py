"""`NAME@FILE` and a file beside an installed driver of the same name: which code ran."""

from __future__ import annotations

import importlib.util
import json

import pytest
from clihelp import SIMPLEPOOL, run

from mmplug.errors import PluginError, UsageError
from mmplug.plugins import PluginHost, split_alias

zsmalloc_installed = pytest.mark.skipif(importlib.util.find_spec("mmplug_zsmalloc") is None,
                                        reason="needs the bundled zsmalloc installed")


@pytest.fixture
def zsmalloc_copy(tmp_path):
    """A .py driver that calls itself zsmalloc, as a copy of the installed one does."""
    path = tmp_path / "zsmalloc_copy.py"
    path.write_text("from mmplug_zsmalloc import (  # noqa: F401\n"
                    "    isolate_page, migratepage, mmplug_driver, putback_page)\n")
    return str(path)


def test_split_alias():
    assert split_alias("mine@./x.py") == ("mine", "./x.py")
    assert split_alias("mine@zsmalloc") == ("mine", "zsmalloc")
    assert split_alias("./x.py") == (None, "./x.py")
    assert split_alias("/tmp/a@b/x.py") == (None, "/tmp/a@b/x.py")   # not a name before @


def test_a_file_under_a_name_of_its_own():
    host = PluginHost()
    mine = host.get(f"mine@{SIMPLEPOOL}")
    assert mine.name == "mine" and mine.info.name == "mine"
    assert mine.origin.startswith("file ") and mine.origin.endswith(", as mine")
    # the same file under two names is two drivers; asking again gives the same one
    other = host.get(f"other@{SIMPLEPOOL}")
    assert other.name == "other" and other.plugin is not mine.plugin
    assert host.get(f"mine@{SIMPLEPOOL}") is mine and host.get("mine") is mine


def test_an_alias_needs_a_free_name():
    host = PluginHost()
    host.get(SIMPLEPOOL)
    with pytest.raises(PluginError, match="already loaded"):
        host.load(f"simplepool@{SIMPLEPOOL.replace('simplepool.py', '../compare/knobpool.py')}")
    with pytest.raises(UsageError):
        host.load("mine@no_such_module_anywhere")


@zsmalloc_installed
def test_a_file_overrides_the_installed_driver_of_its_name(zsmalloc_copy):
    host = PluginHost()
    host.load_entry_points()
    installed = host.get("zsmalloc")
    copy = host.get(zsmalloc_copy)
    assert copy.name == "zsmalloc" and copy is not installed
    assert copy.origin.startswith("file ") and "(instead of entry point zsmalloc" in copy.origin
    assert host.get("zsmalloc") is copy
    assert [d.status for d in host.all() if d.name == "zsmalloc"] == ["loaded", "overridden"]
    with pytest.raises(UsageError, match=r"both the driver 'zsmalloc'.*mine@"):
        host.check_distinct(["zsmalloc", zsmalloc_copy])


@zsmalloc_installed
def test_an_alias_of_an_installed_driver():
    host = PluginHost()
    mine = host.get("mine@zsmalloc")
    assert mine.name == "mine" and mine.ops is host.get("zsmalloc").ops
    assert mine.origin == "entry point zsmalloc = mmplug_zsmalloc, as mine"


@zsmalloc_installed
def test_compare_runs_a_copy_beside_the_installed_driver_and_says_which_ran(capsys,
                                                                            zsmalloc_copy):
    code, out, _ = run(capsys, "compare", "zsmalloc", f"mine@{zsmalloc_copy}",
                       "--zone-size", "8MiB", "--json")
    assert code == 0
    drivers = json.loads(out)["drivers"]
    assert set(drivers) == {"zsmalloc", "mine"}
    assert drivers["zsmalloc"]["runs"][0]["origin"] == "entry point zsmalloc = mmplug_zsmalloc"
    assert drivers["mine"]["runs"][0]["origin"].endswith("zsmalloc_copy.py, as mine")
    # the same workload and seed on the same code: the same numbers
    strip = ("driver", "origin", "wall_seconds")
    a, b = ({k: v for k, v in drivers[n]["runs"][0].items() if k not in strip}
            for n in ("zsmalloc", "mine"))
    assert a == b
    code, out, _ = run(capsys, "compare", "zsmalloc", f"mine@{zsmalloc_copy}",
                       "--zone-size", "8MiB")
    assert "zsmalloc 1" in out and "entry point zsmalloc = mmplug_zsmalloc" in out
    assert f"file {zsmalloc_copy}, as mine" in out


@zsmalloc_installed
def test_compare_refuses_the_same_driver_twice(capsys, zsmalloc_copy):
    code, _, err = run(capsys, "compare", "zsmalloc", zsmalloc_copy, "--zone-size", "8MiB")
    assert code == 2 and "name one of them, e.g. mine@" in err and err.count("\n") == 1


def test_check_driver_takes_a_name_at_file(capsys):
    code, out, _ = run(capsys, "check-driver", f"mine@{SIMPLEPOOL}", "-k", "MIG-2", "--quick")
    assert code == 0 and "Total for mine: 1" in out
