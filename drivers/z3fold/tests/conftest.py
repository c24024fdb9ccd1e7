"""Fixtures of the z3fold driver's tests: pools on fresh VMs, isolation and migration steps,
and a two-CPU interleaver for the reader/migration race."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from greenlet import greenlet

from mmplug import VM, PluginHost, VMConfig
from mmplug.constants import ISOLATE_UNEVICTABLE, MigrateMode
from mmplug.cpus.single import SingleCPU
from mmplug.kernel import page_count
from mmplug.migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages


@pytest.fixture(scope="session")
def host() -> PluginHost:
    plugins = PluginHost()
    plugins.load_entry_points()
    return plugins


@pytest.fixture
def make_pool(host: PluginHost) -> Callable[..., tuple[VM, Any]]:
    """make_pool(nr_pages=512, cpus=None, **options) -> (vm, z3fold instance)."""
    def make(nr_pages: int = 512, cpus: Any = None, **options: Any) -> tuple[VM, Any]:
        vm = VM(VMConfig(nr_pages=nr_pages), plugins=host, cpus=cpus)
        return vm, vm.create_driver("z3fold", **options)
    return make


class Steps:
    """isolate / migrate / putback of one page through the core, as compaction does."""

    def __init__(self, vm: VM) -> None:
        self.vm = vm
        self.pagelist = PageList()

    def isolate(self, page: Any) -> bool:
        if isolate_movable_page(self.vm, page, ISOLATE_UNEVICTABLE):
            return False
        self.pagelist.add(page)
        return True

    def migrate(self, mode: MigrateMode = MigrateMode.SYNC) -> int:
        """migrate_pages() of everything isolated; leftovers are put back. Returns its result."""
        def new_page(page: Any, private: Any) -> Any:
            return self.vm.alloc_page()
        rc = migrate_pages(self.vm, self.pagelist, new_page, None, None, mode)
        if rc:
            putback_movable_pages(self.vm, self.pagelist)
        return rc

    def putback(self) -> None:
        putback_movable_pages(self.vm, self.pagelist)


@pytest.fixture
def steps() -> Callable[[VM], Steps]:
    return Steps


class Interleaver(SingleCPU):
    """One CPU plus a second task that starts when the first reaches a named schedule point.

    The second task (another CPU, as a greenlet) runs until its own next
    schedule point (e.g. cpu_relax in a retry loop, or a deliberate pause),
    then the first resumes; `finish_other()` lets it run to the end.  Tasks
    switch only at schedule points, so the interleaving is exact and repeatable.
    """

    def __init__(self, trigger: str, body: Callable[[], Any]) -> None:
        super().__init__()
        self.trigger = trigger
        self.body = body
        self.other: greenlet | None = None
        self.result: Any = None
        self.points_in_other: list[str] = []
        self.seen_at_trigger: Any = None

    def point(self, what: str, obj: Any = None) -> None:
        current = greenlet.getcurrent()
        if self.other is not None and current is self.other:
            self.points_in_other.append(what)
            current.parent.switch()
        elif self.other is None and what.endswith(self.trigger):
            self.other = greenlet(self._run)
            self.other.switch()

    def _run(self) -> None:
        self.result = self.body()

    def finish_other(self) -> Any:
        while self.other is not None and not self.other.dead:
            self.other.switch()
        return self.result


def _snapshot(pool: Any, page: Any) -> tuple:
    """Everything a refusal must leave alone: the page and the pool's view of it."""
    from mmplug.kernel import page_address
    zhdr = pool.headers.get(page.pfn)
    header = None
    if zhdr is not None:
        header = (zhdr.refcount, zhdr.cpu, zhdr.first_chunks, zhdr.middle_chunks, zhdr.last_chunks,
                  zhdr.start_middle, zhdr.first_num, zhdr.mapped_count, zhdr.foreign_handles,
                  zhdr.buddy.name if zhdr.buddy else None, zhdr.page_lock.is_locked(),
                  zhdr.work.pending)
    return (page.flags, page.mapping, page_count(page), page.private, id(page.lru),
            bytes(page_address(page)), header, pool.lru.holds(page),
            {h: pool.read(h) for h in pool.objects})


@pytest.fixture
def snapshot() -> Callable[[Any, Any], tuple]:
    return _snapshot


@pytest.fixture
def interleaver() -> type[Interleaver]:
    return Interleaver
