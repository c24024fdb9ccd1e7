"""The driver is a separate distribution found through its entry point, like any third party's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mmplug
import mmplug_balloon


def test_entry_point_loads_the_driver():
    host = mmplug.PluginHost()
    host.load_entry_points()
    loaded = host.drivers["balloon"]
    assert loaded.ok and loaded.origin == "entry point balloon = mmplug_balloon"
    assert loaded.info.version == "1.0.0"
    caps = loaded.info.capabilities
    assert not caps.stores_data and not caps.may_refuse_isolation and caps.knobs == {"busy"}


def test_mmplug_plugins_lists_it():
    out = subprocess.run([sys.executable, "-c", "from mmplug.cli import main; main()", "plugins"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("balloon "))
    assert "1.0.0" in line and "loaded" in line


def test_the_core_does_not_know_about_the_driver():
    core = Path(mmplug.__file__).parent
    for path in core.rglob("*.py"):
        assert "mmplug_balloon" not in path.read_text(), path


def test_created_by_name_through_the_vm():
    host = mmplug.PluginHost()
    host.register(mmplug_balloon)
    vm = mmplug.VM(nr_pages=512, plugins=host)
    balloon = vm.create_driver("balloon")
    assert vm.instance_record(balloon).mapping is balloon.mapping
    assert balloon.mapping.private_data is balloon
