"""MIG-1..MIG-10: migrate_pages, unmap_and_move, move_to_new_page (mm/migrate.c, v4.19)."""

from __future__ import annotations

import pytest

from corehelp import PoolPlugin, isolate, make_vm, migrate, simplepool
from mmplug import VM, DriverError, PluginHost, VMConfig, hookimpl
from mmplug.constants import EAGAIN, EBUSY, ENOMEM, MigrateMode
from mmplug.cpus.backend import PF_MEMALLOC
from mmplug.cpus.single import SingleCPU
from mmplug.errors import ContractViolation
from mmplug.kernel import clear_page_movable, lock_page, unlock_page
from mmplug.migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from mmplug.page import ISOLATED, LOCKED, PAGE_MAPPING_MOVABLE, WRITEBACK


def custom(**overrides):
    return type("Custom", (PoolPlugin,), {k: hookimpl(v) for k, v in overrides.items()})()


def stored(pool, data=b"payload" * 10):
    h = pool.store(data)
    return pool.handles[h][0].page, h


def test_success_moves_data_and_handle(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool, b"\x01\x02" * 300)
    lst = isolate(vm, page)
    rc, handed = migrate(vm, lst)
    assert rc == 0 and not lst
    new = handed[0]
    assert pool.handles[h][0].page is new
    assert pool.read(h) == b"\x01\x02" * 300
    assert new.mapping == pool.mapping.handle | PAGE_MAPPING_MOVABLE and new._refcount == 1
    assert page._refcount == 0 and page.mapping == 0            # freed
    assert vm.vmstat["pgmigrate_success"] == 1 and not vm.isolated
    assert vm.unclaimed_pages() == []
    vm.zone.check_free_lists()


def test_mig1_ten_passes_then_give_up_with_page_still_listed(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    pool.hold()                                    # every migratepage returns -EAGAIN
    calls = []

    def counting(call, *args):
        calls.append(args[3])
        return call(*args)
    pool.mapping.interpose(migratepage=counting)
    lst = isolate(vm, page)
    rc, handed = migrate(vm, lst)
    assert rc == 1 and len(calls) == 10
    assert list(lst) == [page] and page.flags & ISOLATED
    assert vm.vmstat["pgmigrate_fail"] == 1 and vm.vmstat["migrate_eagain"] == 10
    assert all(p._refcount == 0 for p in handed)   # every unused newpage went back
    putback_movable_pages(vm, lst)
    assert not page.flags & ISOLATED and pool.read(h)


class WaitingCPU(SingleCPU):
    """lock_page() on a locked page waits until the (simulated) holder lets go; trylock_page()
    of `tries["page"]` fails `tries["left"]` times (see _relock_until), counted in tries["n"]."""

    def __init__(self):
        super().__init__()
        self.waits = 0
        self.tries = {"n": 0, "page": None, "left": 0}

    def trylock_page(self, page):
        tries = self.tries
        if page is tries["page"] and tries["n"] < tries["left"]:
            tries["n"] += 1
            return False
        return super().trylock_page(page)

    def lock_page(self, page):
        if page.flags & LOCKED:
            self.waits += 1
            page.flags &= ~LOCKED       # the holder unlocks
        super().lock_page(page)


def locked_page_vm():
    host = PluginHost()
    loaded = host.register(PoolPlugin())
    cpus = WaitingCPU()
    vm = VM(VMConfig(nr_pages=1024, pageblock_order=6, max_order=8, min_free_pages=0),
            plugins=host, cpus=cpus)
    pool = vm.create_from(loaded)
    page, h = stored(pool)
    lst = isolate(vm, page)
    return vm, pool, page, h, lst, cpus


def _relock_until(vm, page, n):
    """Keep the page locked by 'someone else' for the first n trylock attempts."""
    tries = vm.cpus.tries
    tries.update(page=page, left=n)
    return tries


def test_mig1_mig4_force_after_pass_two_in_sync_mode():
    vm, pool, page, h, lst, cpus = locked_page_vm()
    page.flags |= LOCKED
    tries = _relock_until(vm, page, 4)
    rc, _ = migrate(vm, lst, MigrateMode.SYNC)
    assert rc == 0
    assert tries["n"] == 4 and cpus.waits == 1     # passes 0, 1, 2 gave up; pass 3 waited


def test_mig4_async_never_blocks():
    vm, pool, page, h, lst, cpus = locked_page_vm()
    page.flags |= LOCKED
    tries = _relock_until(vm, page, 100)
    rc, _ = migrate(vm, lst, MigrateMode.ASYNC)
    assert rc == 1 and cpus.waits == 0 and tries["n"] == 10


def test_mig4_direct_compaction_context_never_blocks():
    vm, pool, page, h, lst, cpus = locked_page_vm()
    page.flags |= LOCKED
    _relock_until(vm, page, 100)
    cpus.current().flags |= PF_MEMALLOC
    rc, _ = migrate(vm, lst, MigrateMode.SYNC)
    assert rc == 1 and cpus.waits == 0


def test_mig2_enomem_stops_at_once(pool_vm):
    vm, pool = pool_vm
    p1, _ = stored(pool)
    for _ in range(4):
        pool.store(b"z")
    lst = isolate(vm, p1)
    rc = migrate_pages(vm, lst, lambda page, private: None, None, None, MigrateMode.SYNC)
    assert rc == -ENOMEM and list(lst) == [p1]
    assert vm.vmstat["pgmigrate_fail"] == 1 and vm.vmstat["migrate_enomem"] == 1
    putback_movable_pages(vm, lst)


def test_mig3_freed_from_under_us_counts_as_success(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    lst = isolate(vm, page)
    calls = []
    pool.mapping.interpose(migratepage=lambda call, *a: calls.append(a) or 0)
    pool.free(h)                                   # driver releases: clear movable + put
    assert page._refcount == 1
    rc, handed = migrate(vm, lst)
    assert rc == 0 and calls == [] and not lst
    assert page._refcount == 0 and not page.flags & ISOLATED
    assert handed[0]._refcount == 0                # the unused newpage was released (BUG-4)
    assert vm.vmstat["pgmigrate_success"] == 1 and vm.vmstat["migrate_released"] == 1
    vm.zone.check_free_lists()


def test_mig3_last_reference_dropped_without_clear_is_caught(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    lst = isolate(vm, page)
    vm.cpus.put_page(page)                         # the driver's ref, but still PageMovable
    with pytest.raises(ContractViolation) as exc:
        migrate(vm, lst)
    assert exc.value.rule == "REL-1"


def test_mig5_newpage_lock_failure_is_eagain(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    lst = isolate(vm, page)
    locked_new = vm.zone.alloc_pages(0, 0x08)
    locked_new.flags |= LOCKED
    rc = migrate_pages(vm, lst, lambda p, _: locked_new, lambda p, _: None, None,
                       MigrateMode.SYNC)
    assert rc == 1 and vm.vmstat["migrate_eagain"] == 10 and list(lst) == [page]


def test_mig6_released_after_isolation_skips_migratepage(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    lst = isolate(vm, page)
    calls = []
    pool.mapping.interpose(migratepage=lambda call, *a: calls.append(a) or 0)
    lock_page(page)
    clear_page_movable(page)                       # released, but the driver still holds a ref
    unlock_page(page)
    rc, handed = migrate(vm, lst)
    assert rc == 0 and calls == []
    assert not page.flags & ISOLATED and page._refcount == 1
    assert handed[0]._refcount == 0                # success path drops the untouched newpage
    vm.cpus.put_page(page)
    vm.zone.check_free_lists()


@pytest.mark.parametrize("mistake,needle", [
    ("no_clear", "__ClearPageMovable(page) was not called"),
    ("no_set", "__SetPageMovable(newpage, mapping) was not called"),
    ("no_get", "without taking its own reference on newpage"),
    ("no_put", "did not drop its own"),
])
def test_mig7_success_must_leave_both_pages_right(mistake, needle):
    from mmplug.kernel import copy_highpage, get_page, put_page, set_page_movable

    def migratepage(self, mapping, newpage, page, mode):
        copy_highpage(newpage, page)
        if mistake != "no_set":
            set_page_movable(newpage, mapping)
        if mistake != "no_get":
            get_page(newpage)
        if mistake != "no_clear":
            clear_page_movable(page)
        if mistake != "no_put":
            put_page(page)
        return 0
    vm, pool = make_vm(custom(migratepage=migratepage))
    page, h = stored(pool)
    lst = isolate(vm, page)
    with pytest.raises(DriverError) as exc:
        migrate(vm, lst)
    assert exc.value.rule == "MIG-7" and needle in str(exc.value)
    assert exc.value.driver == "testpool" and exc.value.hook == "migratepage"


@pytest.mark.parametrize("ret", [None, True, False, 1, "0", 0.0])
def test_mig8_return_type_is_checked(ret):
    vm, pool = make_vm(custom(migratepage=lambda self, mapping, newpage, page, mode: ret))
    page, h = stored(pool)
    lst = isolate(vm, page)
    with pytest.raises(DriverError) as exc:
        migrate(vm, lst)
    assert exc.value.rule == "MIG-8"


def test_mig8_permanent_error_puts_back_at_once():
    putbacks = []

    def putback(self, page):
        putbacks.append(page)
        simplepool.putback_page(page)
    vm, pool = make_vm(custom(migratepage=lambda self, mapping, newpage, page, mode: -EBUSY,
                              putback_page=putback))
    page, h = stored(pool)
    lst = isolate(vm, page)
    rc, handed = migrate(vm, lst)
    assert rc == 1 and putbacks == [page] and not lst
    assert not page.flags & ISOLATED and vm.vmstat["migrate_permanent"] == 1
    assert handed[0]._refcount == 0 and vm.vmstat["pgmigrate_fail"] == 1


def test_mig9_result_counts_failed_and_retrying(pool_vm):
    vm, pool = pool_vm
    pages = []
    for i in range(3):
        for _ in range(4):
            h = pool.store(bytes([i]) * 8)
        pages.append(pool.handles[h][0].page)
    lst = PageList()
    for p in pages:
        assert isolate_movable_page(vm, p, 0) == 0
        lst.add(p)
    pool.pin(pool.handles[h][0].slots[0])          # last page's objects pinned: -EAGAIN
    rc, _ = migrate(vm, lst)
    assert rc == 1 and vm.vmstat["pgmigrate_success"] == 2 and vm.vmstat["pgmigrate_fail"] == 1
    putback_movable_pages(vm, lst)


def test_mig10_writeback_fails_permanently_unless_sync(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    lst = isolate(vm, page)
    page.flags |= WRITEBACK
    rc, _ = migrate(vm, lst, MigrateMode.SYNC_LIGHT)
    assert rc == 1 and vm.vmstat["migrate_permanent"] == 1 and not lst
    assert not page.flags & ISOLATED                # put back at once
    lst = isolate(vm, page)
    rc, handed = migrate(vm, lst, MigrateMode.SYNC)  # waits for writeback once forced
    assert rc == 0 and vm.vmstat["migrate_eagain"] == 3
    assert pool.handles[h][0].page is handed[-1]


def test_mig10_mode_reaches_the_driver():
    seen = []

    def migratepage(self, mapping, newpage, page, mode):
        seen.append(mode)
        return -EAGAIN if mode == MigrateMode.SYNC_NO_COPY else \
            simplepool.migratepage(mapping, newpage, page, mode)
    vm, pool = make_vm(custom(migratepage=migratepage))
    page, h = stored(pool)
    lst = isolate(vm, page)
    migrate(vm, lst, MigrateMode.SYNC_NO_COPY)
    assert set(seen) == {MigrateMode.SYNC_NO_COPY}
    putback_movable_pages(vm, lst)


def test_hung_callback_is_stopped_by_the_watchdog():
    def hangs(self, page, mode):
        while True:
            pass
    vm, pool = make_vm(custom(isolate_page=hangs), callback_timeout=0.2)
    page, h = stored(pool)
    with pytest.raises(DriverError, match="hung") as exc:
        isolate_movable_page(vm, page, 0)
    assert exc.value.hook == "isolate_page"
