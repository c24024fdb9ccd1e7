"""The driver is a separate distribution, found and loaded like any third-party plugin."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import mmplug
import mmplug_zsmalloc
from mmplug.cli import main
from mmplug.compaction import compact_memory


def test_found_through_its_entry_point():
    host = mmplug.PluginHost()
    loaded = host.load("zsmalloc")
    assert loaded.ok and loaded.origin == "entry point zsmalloc = mmplug_zsmalloc"
    assert loaded.info.version == "1.0.0" and loaded.info.kernel_source == "mm/zsmalloc.c"
    assert loaded.info.capabilities.knobs == frozenset({"pin"})


def test_listed_by_mmplug_plugins(capsys):
    main(["plugins", "--json"])
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["drivers"]}
    assert rows["zsmalloc"]["status"] == "loaded"
    assert rows["zsmalloc"]["version"] == "1.0.0"


def test_the_core_does_not_import_the_driver():
    core = Path(mmplug.__file__).parent
    offenders = [p for p in core.rglob("*.py") if "mmplug_zsmalloc" in p.read_text()]
    assert offenders == []


def test_bad_factory_option_is_a_usage_error():
    vm = mmplug.VM(nr_pages=512, plugins=mmplug.PluginHost())
    with pytest.raises(mmplug.UsageError, match="bad options"):
        vm.create_driver("zsmalloc", colour="blue")


@pytest.mark.parametrize("page_size", [1024, 8192])
def test_other_page_sizes_derive_their_own_classes(page_size):
    host = mmplug.PluginHost()
    host.register(mmplug_zsmalloc)
    vm = mmplug.VM(mmplug.VMConfig(nr_pages=1024, page_size=page_size), plugins=host)
    pool = vm.create_driver("zsmalloc")
    # ZS_SIZE_CLASS_DELTA, never below ZS_ALIGN (8)
    assert pool.layout.class_delta == max(page_size >> 8, 8)
    assert pool.max_object_size == page_size
    rng = random.Random(page_size)
    data = {}
    for _ in range(300):
        d = rng.randbytes(rng.randrange(1, page_size + 1))
        data[pool.store(d)] = d
    for h in rng.sample(sorted(data), 180):
        pool.free(h)
        del data[h]
    compact_memory(vm)
    pool.compact()
    pool.run_deferred_work()
    pool.verify()
    assert all(pool.read(h) == d for h, d in data.items())
    vm.destroy_driver(pool)
    vm.zone.check_free_lists()
