"""Helpers of the core's tests: a VM with the example driver simplepool, isolate, migrate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from mmplug import VM, DriverInfo, PluginHost, VMConfig, hookimpl
from mmplug.constants import ISOLATE_ASYNC_MIGRATE, MigrateMode
from mmplug.migrate import PageList, isolate_movable_page, migrate_pages

HERE = Path(__file__).parent
SIMPLEPOOL = HERE / "drivers" / "simplepool.py"


def _import_simplepool():
    name = "mmplug_tests_simplepool"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SIMPLEPOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


simplepool = _import_simplepool()


class PoolPlugin:
    """simplepool as a plugin object whose callbacks a test can override one at a time."""

    name = "testpool"

    @hookimpl
    def mmplug_driver(self):
        return DriverInfo(name=self.name, version="1.0", factory=simplepool.Pool)

    @hookimpl
    def isolate_page(self, page, mode):
        return simplepool.isolate_page(page, mode)

    @hookimpl
    def migratepage(self, mapping, newpage, page, mode):
        return simplepool.migratepage(mapping, newpage, page, mode)

    @hookimpl
    def putback_page(self, page):
        return simplepool.putback_page(page)


def make_vm(plugin: Any = None, *, nr_pages: int = 2048, pageblock_order: int = 6,
            max_order: int = 8, **config: Any) -> tuple[VM, Any]:
    """A small VM (pageblocks of 64 pages) with one instance of `plugin` (default simplepool)."""
    host = PluginHost()
    loaded = host.register(plugin if plugin is not None else PoolPlugin())
    assert loaded.ok, loaded.reason
    cfg = VMConfig(nr_pages=nr_pages, pageblock_order=pageblock_order, max_order=max_order,
                   min_free_pages=config.pop("min_free_pages", 0), **config)
    vm = VM(cfg, plugins=host)
    return vm, vm.create_from(loaded)


def fresh_target(vm: VM):
    """A get_new_page that allocates an order-0 page, and a list of what it handed out."""
    handed = []

    def get_new_page(page, private):
        new = vm.zone.alloc_pages(0, 0x08, ignore_watermark=True)
        handed.append(new)
        return new

    return get_new_page, handed


def isolate(vm: VM, page, mode: int = ISOLATE_ASYNC_MIGRATE) -> PageList:
    """Isolate `page` onto a new PageList (asserting success)."""
    lst = PageList()
    assert isolate_movable_page(vm, page, mode) == 0
    lst.add(page)
    return lst


def migrate(vm: VM, lst: PageList, mode: MigrateMode = MigrateMode.SYNC):
    get_new, handed = fresh_target(vm)
    return migrate_pages(vm, lst, get_new, None, None, mode), handed

