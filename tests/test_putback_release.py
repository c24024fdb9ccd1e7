"""PUT-1..PUT-3 (putback_movable_pages) and REL-1..REL-3 (a driver releasing its pages)."""

from __future__ import annotations

import pytest

from corehelp import PoolPlugin, isolate, make_vm, migrate, simplepool
from mmplug import ContractViolation, DriverError, hookimpl
from mmplug.kernel import clear_page_movable, lock_page, unlock_page
from mmplug.migrate import PageList, isolate_movable_page, putback_movable_pages
from mmplug.page import ISOLATED, LOCKED


def custom(**overrides):
    return type("Custom", (PoolPlugin,), {k: hookimpl(v) for k, v in overrides.items()})()


def stored(pool, data=b"abc" * 20):
    h = pool.store(data)
    return pool.handles[h][0].page, h


def test_put1_putback_calls_driver_under_lock_and_clears_isolated():
    seen = []

    def putback(self, page):
        seen.append((bool(page.flags & LOCKED), bool(page.flags & ISOLATED), page.lru))
        simplepool.putback_page(page)
    vm, pool = make_vm(custom(putback_page=putback))
    page, h = stored(pool)
    refs = page._refcount
    lst = isolate(vm, page)
    putback_movable_pages(vm, lst)
    assert seen == [(True, True, None)]                 # locked, still isolated, off the list
    assert not page.flags & (ISOLATED | LOCKED) and page._refcount == refs
    assert not lst and not vm.isolated and pool.mapping.nr_isolated == 0


def test_put1_released_page_is_not_handed_back():
    seen = []
    vm, pool = make_vm(custom(putback_page=lambda self, page: seen.append(page)))
    page, h = stored(pool)
    lst = isolate(vm, page)
    pool.free(h)                                         # REL-2: released while isolated
    putback_movable_pages(vm, lst)
    assert seen == [] and page._refcount == 0 and not page.flags & ISOLATED
    vm.zone.check_free_lists()


@pytest.mark.parametrize("then", ["putback", "migrate"])
def test_rel2_a_release_that_also_unlinks_the_isolated_page_is_rel2_not_iso4(then):
    """The driver releases a page compaction holds isolated and takes it off the list the
    VM linked it to: REL-2 (a release leaves lru to the VM), where a page still the
    driver's is ISO-4 (tests/test_isolate.py)."""
    vm, pool = make_vm()
    page, h = stored(pool)
    lst = isolate(vm, page)
    pool.free(h)                                         # released while isolated
    page.lru = None                                      # the mistake: list_del too
    with pytest.raises(ContractViolation) as exc:
        putback_movable_pages(vm, lst) if then == "putback" else migrate(vm, lst)
    assert exc.value.rule == "REL-2" and exc.value.page is page
    assert "released while isolated" in str(exc.value)


def test_put1_list_page_not_isolated_is_a_bug(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    lst = isolate(vm, page)
    page.flags &= ~ISOLATED                              # someone cleared PG_isolated
    with pytest.raises(ContractViolation) as exc:
        putback_movable_pages(vm, lst)
    assert exc.value.rule == "PUT-1"


def test_put1_putback_must_return_none():
    vm, pool = make_vm(custom(putback_page=lambda self, page: 0))
    page, h = stored(pool)
    lst = isolate(vm, page)
    with pytest.raises(DriverError) as exc:
        putback_movable_pages(vm, lst)
    assert exc.value.rule == "PUT-2" and exc.value.hook == "putback_page"


def test_put2_page_is_usable_as_before_after_putback(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool, b"first")
    lst = isolate(vm, page)
    putback_movable_pages(vm, lst)
    h2 = pool.store(b"second")                           # lands on the same page again
    assert pool.handles[h2][0].page is page
    assert pool.read(h) == b"first" and pool.read(h2) == b"second"
    lst = isolate(vm, page)                              # and it can be isolated again
    rc, _ = migrate(vm, lst)
    assert rc == 0 and pool.read(h2) == b"second"


def test_put3_every_isolated_page_ends_exactly_once(pool_vm):
    vm, pool = pool_vm
    handles = [pool.store(bytes([i]) * 50) for i in range(12)]
    pages = {pool.handles[h][0].page for h in handles}
    lst = PageList()
    for p in pages:
        assert isolate_movable_page(vm, p, 0) == 0
        lst.add(p)
    victim = pool.handles[handles[0]][0]
    for h in list(handles):
        if pool.handles[h][0] is victim:
            pool.free(h)                                 # released while isolated
            handles.remove(h)
    pool.pin(handles[-1])                                # one page -EAGAIN to the end
    rc, _ = migrate(vm, lst)
    putback_movable_pages(vm, lst)
    ev = vm.vmstat
    assert ev["pgmigrate_success"] + ev["putback_movable"] == len(pages)
    assert ev["migrate_released"] == 1 and ev["putback_movable"] == 1
    assert not vm.isolated and all(not p.flags & ISOLATED for p in pages)
    assert all(pool.read(h) for h in handles)
    assert vm.unclaimed_pages() == []


def test_rel1_release_needs_the_page_lock(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    with pytest.raises(ContractViolation) as exc:
        clear_page_movable(page)
    assert exc.value.rule == "FLG-5"


def test_rel2_driver_dropping_the_vms_reference_is_caught(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    isolate(vm, page)
    lock_page(page)
    clear_page_movable(page)
    unlock_page(page)
    vm.cpus.put_page(page)                               # the driver's own reference
    with pytest.raises(ContractViolation) as exc:
        vm.cpus.put_page(page)                           # ... and the VM's: freed isolated
    assert exc.value.rule == "REL-2"


def test_rel3_destroy_with_isolated_pages_is_caught(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    isolate(vm, page)
    pool.destroy = lambda: None                          # a destroy that does not wait
    with pytest.raises(ContractViolation) as exc:
        vm.destroy_driver(pool)
    assert exc.value.rule == "REL-3"


def test_rel3_destroy_must_release_every_page(pool_vm):
    vm, pool = pool_vm
    stored(pool)
    pool.destroy = lambda: None
    with pytest.raises(ContractViolation, match="still point at the mapping"):
        vm.destroy_driver(pool)


def test_rel3_clean_destroy(pool_vm):
    vm, pool = pool_vm
    for i in range(9):
        pool.store(b"x" * i)
    vm.destroy_driver(pool)
    assert vm.zone.nr_free_pages == vm.zone.nr_pages and pool.mapping.a_ops is None


def test_bug3_movable_pages_are_not_counted_as_isolated_lru(pool_vm):
    vm, pool = pool_vm
    page, h = stored(pool)
    isolate(vm, page)
    assert vm.zone.nr_isolated_lru == 0


@pytest.mark.parametrize("tag", [0, 1, 3])
@pytest.mark.parametrize("then", ["putback", "migrate"])
def test_flg1_an_isolated_page_whose_tag_the_driver_rewrote_is_the_drivers_violation(tag, then):
    """A page isolated as non-LRU movable keeps PAGE_MAPPING_MOVABLE until the VM is done
    (a release keeps the tag too).  A driver that rewrites the word makes it look like an
    LRU page to __PageMovable: putback and migration name the driver and the page (FLG-1)
    instead of handling the driver's page as the LRU's."""
    def isolate_page(self, page, mode):
        ok = simplepool.isolate_page(page, mode)
        page.mapping = page.mapping & ~3 | tag
        return ok
    vm, pool = make_vm(custom(isolate_page=isolate_page))
    page, _ = stored(pool)
    lst = isolate(vm, page)
    with pytest.raises(ContractViolation) as ei:
        if then == "putback":
            putback_movable_pages(vm, lst)
        else:
            migrate(vm, lst)
    exc = ei.value
    assert exc.rule == "FLG-1" and exc.page is page
    assert exc.driver == pool.mapping.driver
    assert "lost PAGE_MAPPING_MOVABLE" in str(exc)
