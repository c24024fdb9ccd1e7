"""ISO-1..ISO-6: isolate_movable_page (mm/migrate.c) and what a driver may do in isolate_page."""

from __future__ import annotations

import pytest

from corehelp import PoolPlugin, isolate, make_vm, migrate
from mmplug import VM, ContractViolation, DriverError, PluginHost, VMConfig
from mmplug.constants import EBUSY, ISOLATE_ASYNC_MIGRATE
from mmplug.cpus.single import SingleCPU
from mmplug.migrate import isolate_movable_page
from mmplug.page import ISOLATED, LOCKED, PAGE_MAPPING_MOVABLE


class RecordingCPU(SingleCPU):
    """SingleCPU that logs the page operations, to check their order."""

    def __init__(self):
        super().__init__()
        self.log = []

    def trylock_page(self, page):
        self.log.append("trylock")
        return super().trylock_page(page)

    def unlock_page(self, page):
        self.log.append("unlock")
        super().unlock_page(page)

    def get_page_unless_zero(self, page):
        self.log.append("get")
        return super().get_page_unless_zero(page)

    def put_page(self, page):
        self.log.append("put")
        super().put_page(page)


def recording_vm(plugin=None):
    host = PluginHost()
    loaded = host.register(plugin or PoolPlugin())
    cpus = RecordingCPU()
    vm = VM(VMConfig(nr_pages=1024, pageblock_order=6, max_order=8, min_free_pages=0),
            plugins=host, cpus=cpus)
    return vm, vm.create_from(loaded), cpus


def one_page(pool):
    h = pool.store(b"x" * 100)
    return pool.handles[h][0].page, h


def test_iso1_success_keeps_the_extra_reference_and_sets_isolated():
    vm, pool, cpus = recording_vm()
    page, _ = one_page(pool)
    before = page._refcount
    cpus.log.clear()
    assert isolate_movable_page(vm, page, ISOLATE_ASYNC_MIGRATE) == 0
    assert cpus.log == ["get", "trylock", "unlock"]
    assert page._refcount == before + 1
    assert page.flags & ISOLATED and not page.flags & LOCKED
    assert vm.isolated[page].driver == "testpool"


def test_iso1_free_page_fails_before_anything_else():
    vm, pool, cpus = recording_vm()
    page = vm.zone.pfn_to_page(vm.zone.start_pfn)   # free
    assert isolate_movable_page(vm, page, 0) == -EBUSY
    assert cpus.log == ["get"]
    assert vm.vmstat["isolate_fail_refcount"] == 1


def test_iso1_not_movable_is_checked_before_the_lock():
    vm, pool, cpus = recording_vm()
    page = vm.alloc_page()                             # in use, not movable
    cpus.log.clear()
    assert isolate_movable_page(vm, page, 0) == -EBUSY
    assert cpus.log == ["get", "put"]                  # never touched PG_locked
    assert page._refcount == 1


def test_iso1_locked_page_is_not_waited_for():
    vm, pool, cpus = recording_vm()
    page, _ = one_page(pool)
    page.flags |= LOCKED
    refs = page._refcount
    cpus.log.clear()
    assert isolate_movable_page(vm, page, 0) == -EBUSY
    assert cpus.log == ["get", "trylock", "put"]
    assert page._refcount == refs and vm.vmstat["isolate_fail_locked"] == 1


def test_iso1_released_or_isolated_page_is_unlocked_and_put():
    vm, pool, cpus = recording_vm()
    page, _ = one_page(pool)
    assert isolate_movable_page(vm, page, 0) == 0
    cpus.log.clear()
    assert isolate_movable_page(vm, page, 0) == -EBUSY   # already isolated
    assert cpus.log == ["get", "trylock", "unlock", "put"]
    other = vm.alloc_page()
    other.mapping = PAGE_MAPPING_MOVABLE                   # released: tag without mapping
    assert isolate_movable_page(vm, other, 0) == -EBUSY
    assert vm.vmstat["isolate_fail_released"] == 2




def _plugin(**overrides):
    from mmplug import hookimpl

    attrs = {}
    for name, fn in overrides.items():
        attrs[name] = hookimpl(fn)
    return type("Custom", (PoolPlugin,), attrs)()


def test_iso1_driver_refusal_unlocks_and_puts():
    vm, pool, cpus = recording_vm(_plugin(isolate_page=lambda self, page, mode: False))
    page, _ = one_page(pool)
    refs = page._refcount
    cpus.log.clear()
    assert isolate_movable_page(vm, page, 0) == -EBUSY
    assert cpus.log == ["get", "trylock", "unlock", "put"]
    assert page._refcount == refs and not page.flags & (ISOLATED | LOCKED)
    assert vm.vmstat["isolate_refused"] == 1


@pytest.mark.parametrize("ret", [None, 1, 0, "yes", [True]])
def test_iso2_isolate_must_return_a_bool(ret):
    vm, pool = make_vm(_plugin(isolate_page=lambda self, page, mode: ret))
    page, _ = one_page(pool)
    with pytest.raises(DriverError) as exc:
        isolate_movable_page(vm, page, 0)
    err = exc.value
    assert err.rule == "ISO-2" and err.driver == "testpool" and err.hook == "isolate_page"
    assert f"pfn {page.pfn:#x}" in str(err)


def test_iso2_isolate_must_not_unlock_the_page():
    from mmplug.kernel import unlock_page

    def bad(self, page, mode):
        unlock_page(page)
        return True
    vm, pool = make_vm(_plugin(isolate_page=bad))
    page, _ = one_page(pool)
    with pytest.raises(DriverError, match="unlocked the page") as exc:
        isolate_movable_page(vm, page, 0)
    assert exc.value.rule == "ISO-2"


def test_iso2_a_raising_callback_is_named():
    def bad(self, page, mode):
        raise RuntimeError("boom")
    vm, pool = make_vm(_plugin(isolate_page=bad))
    page, _ = one_page(pool)
    with pytest.raises(DriverError, match="isolate_page raised RuntimeError: boom"):
        isolate_movable_page(vm, page, 0)


def test_iso3_driver_setting_pg_isolated_warns_once():
    def sets_flag(self, page, mode):
        page.flags |= ISOLATED
        return True
    vm, pool = make_vm(_plugin(isolate_page=sets_flag))
    p1, _ = one_page(pool)
    pool.store(b"y")  # same page, fine
    assert isolate_movable_page(vm, p1, 0) == 0
    assert [w.rule for w in vm.warnings] == ["ISO-3"]
    assert p1.flags & ISOLATED


def test_iso4_driver_touching_lru_of_isolated_page_is_caught():
    vm, pool = make_vm()
    page, h = one_page(pool)
    lst = isolate(vm, page)
    page.lru = "driver's own list"       # what a driver must not do while isolated
    with pytest.raises(ContractViolation) as exc:
        migrate(vm, lst)
    assert exc.value.rule == "ISO-4"


def test_iso4_migratepage_touching_lru_is_caught():
    def touches(self, mapping, newpage, page, mode):
        page.lru = None
        return -11
    vm, pool = make_vm(_plugin(migratepage=touches))
    page, _ = one_page(pool)
    lst = isolate(vm, page)
    with pytest.raises(ContractViolation) as exc:
        migrate(vm, lst)
    assert exc.value.rule == "ISO-4" and exc.value.hook == "migratepage"


def test_iso5_compaction_scanner_does_not_offer_isolated_pages():
    from mmplug.compaction import CompactControl, isolate_migratepages_block
    vm, pool = make_vm()
    page, _ = one_page(pool)
    isolate(vm, page)
    attempts = vm.vmstat["isolate_attempt"]
    cc = CompactControl(zone=vm.zone, ignore_skip_hint=True)
    block = page.pfn & ~(vm.zone.pageblock_nr_pages - 1)
    isolate_migratepages_block(vm, cc, block, block + vm.zone.pageblock_nr_pages, 0)
    assert vm.vmstat["isolate_attempt"] == attempts     # skipped before isolate_movable_page
    assert cc.nr_migratepages == 0
