"""Fixtures: a VM with the zsmalloc driver, page-level steps of compaction, a scripted CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import mmplug
import mmplug_zsmalloc
from mmplug.constants import ISOLATE_ASYNC_MIGRATE, MigrateMode
from mmplug.cpus.single import SingleCPU
from mmplug.migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from mmplug_zsmalloc.zspage import get_zspage


class ScriptedCPU(SingleCPU):
    """One CPU whose schedule points can run "another CPU's" step, once, by name.

    This is how a single-CPU test puts a second actor exactly where a race
    needs it: `at("zs_destroy_pool: wait_for_isolated_drain", putback)`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.script: dict[str, list[Callable[[], None]]] = {}
        self.reached: list[str] = []

    def at(self, what: str, action: Callable[[], None]) -> None:
        """Run `action` the next time a schedule point named (or ending in) `what` is reached."""
        self.script.setdefault(what, []).append(action)

    def point(self, what: str, obj: Any = None) -> None:
        self.reached.append(what)
        for name, actions in self.script.items():
            # cond_resched points carry a prefix; a script names the place itself
            if actions and what.endswith(name):
                actions.pop(0)()
                return


class Steps:
    """What compaction does to one page, one step at a time."""

    @staticmethod
    def isolate(vm: mmplug.VM, *pages: Any, expect: bool = True) -> PageList:
        pagelist = PageList()
        for page in pages:
            ok = isolate_movable_page(vm, page, ISOLATE_ASYNC_MIGRATE) == 0
            assert ok == expect, (page, ok)
            if ok:
                pagelist.add(page)
        return pagelist

    @staticmethod
    def migrate(vm: mmplug.VM, pagelist: PageList, mode: MigrateMode = MigrateMode.SYNC,
                newpages: list | None = None) -> int:
        """migrate_pages with fresh pages; every new page handed out is recorded."""

        def get_new_page(page: Any, private: Any) -> Any:
            new = vm.alloc_page()
            if newpages is not None and new is not None:
                newpages.append(new)
            return new

        rc = migrate_pages(vm, pagelist, get_new_page, None, None, mode)
        if rc:
            putback_movable_pages(vm, pagelist)
        return rc

    @staticmethod
    def putback(vm: mmplug.VM, pagelist: PageList) -> None:
        putback_movable_pages(vm, pagelist)

    @staticmethod
    def zspage_of(pool: Any, handle: int) -> Any:
        page, _ = pool.location(handle)
        return get_zspage(page)

    @staticmethod
    def subpages(pool: Any, handle: int) -> list:
        zspage = Steps.zspage_of(pool, handle)
        return list(pool.struct_pages.chain(zspage))

    @staticmethod
    def class_with_pages(pool: Any, pages: int) -> Any:
        """A size class whose zspages have exactly `pages` subpages."""
        from mmplug_zsmalloc.sizeclass import distinct_classes
        return next(c for c in distinct_classes(pool.size_class)
                    if c.pages_per_zspage == pages and not c.huge)


@pytest.fixture
def steps() -> type[Steps]:
    return Steps


@pytest.fixture
def make_pool() -> Callable[..., tuple[mmplug.VM, Any]]:
    """make_pool(nr_pages=1024, cpus=None, **pool_options) -> (vm, pool)."""

    def make(nr_pages: int = 1024, cpus: Any = None, page_size: int = 4096,
             **options: Any) -> tuple[mmplug.VM, Any]:
        host = mmplug.PluginHost()
        loaded = host.register(mmplug_zsmalloc, origin="module mmplug_zsmalloc")
        assert loaded.ok, loaded.reason
        vm = mmplug.VM(mmplug.VMConfig(nr_pages=nr_pages, page_size=page_size),
                       plugins=host, cpus=cpus)
        return vm, vm.create_driver("zsmalloc", **options)

    return make


@pytest.fixture
def scripted() -> type[ScriptedCPU]:
    return ScriptedCPU
