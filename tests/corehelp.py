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
            max_order: int = 8, cpus: Any = None, **config: Any) -> tuple[VM, Any]:
    """A small VM (pageblocks of 64 pages) with one instance of `plugin` (default simplepool),
    on the CPU backend `cpus` (default one plain CPU)."""
    host = PluginHost()
    loaded = host.register(plugin if plugin is not None else PoolPlugin())
    assert loaded.ok, loaded.reason
    cfg = VMConfig(nr_pages=nr_pages, pageblock_order=pageblock_order, max_order=max_order,
                   min_free_pages=config.pop("min_free_pages", 0), **config)
    vm = VM(cfg, plugins=host, cpus=cpus)
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



class Layout:
    """A zone built pfn by pfn from a map, so a test can work its outcome out by hand.

    One character per page frame:
      D  a simplepool page holding SLOTS objects (movable; `handles[pfn]`)
      L  an anonymous page on the LRU (`lru_keys[pfn]`)
      U  a page in use by nobody the VM knows: unmovable, never isolated
      .  a free page
    Pages are freed in increasing pfn order, so buddies merge as that order makes them.
    `types` sets pageblock migratetypes ({block index: MigrateType}) before anything is
    freed, so free pages land on the lists of their block's type.
    """

    def __init__(self, layout: str, *, pageblock_order: int = 3, max_order: int = 5,
                 types: dict[int, int] | None = None, **config: Any) -> None:
        from mmplug.constants import GFP_HIGHUSER_MOVABLE
        from mmplug.users import LruPages
        self.vm, self.pool = make_vm(nr_pages=len(layout), pageblock_order=pageblock_order,
                                     max_order=max_order, **config)
        vm, zone = self.vm, self.vm.zone
        self.layout = layout
        held = {}
        while True:
            page = zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE, ignore_watermark=True)
            if page is None:
                break
            held[page.pfn] = page
        assert len(held) == zone.nr_pages
        for block, mt in (types or {}).items():
            zone.set_pageblock_migratetype(zone.start_pfn + (block << pageblock_order), mt)
        self.lru = LruPages(vm)
        self.handles: dict[int, list[int]] = {}
        self.lru_keys: dict[int, int] = {}
        self.unmovable = []
        for i, c in enumerate(layout):
            pfn = zone.start_pfn + i
            if c == "D":
                vm.cpus.put_page(held.pop(pfn))       # the one free page: the next alloc_page
                hs = [self.pool.store(bytes([i & 0xFF]) * 8) for _ in range(simplepool.SLOTS)]
                assert self.pool.handles[hs[0]][0].page.pfn == pfn
                self.handles[pfn] = hs
            elif c == "L":
                vm.cpus.put_page(held.pop(pfn))
                self.lru_keys[pfn] = self.lru.alloc(bytes([i & 0xFF]) * 8)
                assert self.lru.pages[self.lru_keys[pfn]].pfn == pfn
            elif c == "U":
                self.unmovable.append(held.pop(pfn))
            elif c != ".":
                raise ValueError(f"layout character {c!r}")
        for pfn in sorted(held):
            vm.cpus.put_page(held[pfn])
        zone.check_free_lists()

    def pfn_of(self, pfn: int) -> int:
        """Where the objects first stored at `pfn` are now."""
        return self.pool.handles[self.handles[pfn][0]][0].page.pfn

    def intact(self) -> bool:
        return all(self.pool.read(h) == bytes([(pfn - self.vm.zone.start_pfn) & 0xFF]) * 8
                   for pfn, hs in self.handles.items() for h in hs)
