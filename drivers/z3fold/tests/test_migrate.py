"""DRV-3F3: z3fold_page_migrate: -EAGAIN when the header lock is taken or compaction work is
pending, -EBUSY (claim dropped) for mapped objects, else the full move to the new page."""

from __future__ import annotations

import mmplug_z3fold
from mmplug import VM, VMConfig
from mmplug.constants import EAGAIN, EBUSY, MigrateMode
from mmplug.kernel import page_count, page_mapping, trylock_page, unlock_page
from mmplug.page import BUDDY
from mmplug_z3fold import flags as zf
from mmplug_z3fold.header import kref_get
from mmplug_z3fold.migration import MIGRATE_WINDOW


def _two_objects(pool):
    a = pool.store(b"A" * 1000)
    b = pool.store(b"B" * 1500)
    return a, b, pool.header_of_handle(a)


def test_header_lock_held_elsewhere_gives_eagain_and_changes_nothing(make_pool, steps, snapshot):
    vm, pool = make_pool()
    a, b, zhdr = _two_objects(pool)
    page = zhdr.page
    st = steps(vm)
    assert st.isolate(page)
    newpage = vm.alloc_page()
    assert trylock_page(page) and trylock_page(newpage)
    before = snapshot(pool, page)
    zhdr.page_lock.lock()  # another CPU inside z3fold_map/z3fold_free holds it
    rc = mmplug_z3fold.migratepage(page_mapping(page), newpage, page, MigrateMode.SYNC)
    zhdr.page_lock.unlock()
    assert rc == -EAGAIN
    assert snapshot(pool, page) == before
    unlock_page(page)
    unlock_page(newpage)
    vm.cpus.put_page(newpage)
    assert st.migrate() == 0
    assert pool.read(a) == b"A" * 1000 and pool.read(b) == b"B" * 1500


def test_mapped_object_after_isolation_is_ebusy_and_the_claim_is_dropped(make_pool, steps):
    vm, pool = make_pool()
    a, b, zhdr = _two_objects(pool)
    page = zhdr.page
    st = steps(vm)
    assert st.isolate(page)
    pool.map(b)
    newpage = vm.alloc_page()
    assert trylock_page(page) and trylock_page(newpage)
    rc = mmplug_z3fold.migratepage(page_mapping(page), newpage, page, MigrateMode.SYNC)
    assert rc == -EBUSY and not zf.test_bit(zf.PAGE_CLAIMED, page)  # dropped at once
    zf.set_bit(zf.PAGE_CLAIMED, page)  # as isolation left it, for the VM's own run below
    unlock_page(page)
    unlock_page(newpage)
    vm.cpus.put_page(newpage)
    assert st.migrate() == 1
    ev = vm.vmstat.events
    assert ev["migrate_permanent"] == 1 and ev["pgmigrate_fail"] == 1 and ev["migrate_eagain"] == 0
    # put back at once: claim dropped, back on the LRU and an unbuddied list
    assert not zf.test_bit(zf.PAGE_CLAIMED, page) and pool.lru.holds(page)
    assert zhdr.buddy is not None and zhdr.refcount == 2
    pool.verify()
    pool.unmap(b)
    assert pool.read(b) == b"B" * 1500


def test_pending_compaction_work_gives_eagain_on_every_pass(make_pool, steps):
    vm, pool = make_pool()
    a, b, zhdr = _two_objects(pool)
    page = zhdr.page
    st = steps(vm)
    assert st.isolate(page)
    # The kernel's own paths never queue work on a claimed page; another CPU's
    # z3fold_free racing isolation is what this stands for: it marks the page,
    # takes the work's reference and queues it, exactly as z3fold_free does.
    zf.set_bit(zf.NEEDS_COMPACTING, page)
    kref_get(zhdr)
    pool.compact_wq.queue_work(zhdr.work)
    assert st.migrate(MigrateMode.SYNC) == 1
    assert vm.vmstat.events["migrate_eagain"] == 10  # every pass of migrate_pages
    assert pool.header_of_handle(a) is zhdr and pool.lru.holds(page)
    pool.run_workqueues()
    pool.verify()
    assert pool.read(a) == b"A" * 1000


def test_successful_migration_moves_everything_to_the_new_page(host, interleaver, steps):
    seen = {}

    def at_window():
        # another CPU looking at the old page between unlock and re-encoding
        seen["migrated"] = zf.test_bit(zf.PAGE_MIGRATED, old_page)
        seen["handle_still_old"] = pool.header_of_handle(a).page is old_page
        seen["old_unlocked"] = not zhdr.page_lock.is_locked()

    vm = VM(VMConfig(nr_pages=512), plugins=host, cpus=interleaver(MIGRATE_WINDOW, at_window))
    pool = vm.create_driver("z3fold")
    a, b, zhdr = _two_objects(pool)
    old_page = zhdr.page
    mapping = page_mapping(old_page)
    st = steps(vm)
    assert st.isolate(old_page)
    assert st.migrate() == 0
    assert seen == {"migrated": True, "handle_still_old": True, "old_unlocked": True}
    new_zhdr = pool.header_of_handle(a)
    newpage = new_zhdr.page
    assert newpage is not old_page and pool.header_of_handle(b) is new_zhdr
    assert pool.read(a) == b"A" * 1000 and pool.read(b) == b"B" * 1500
    # the new page: movable with the pool's mapping, on the LRU, compaction queued
    assert newpage.mapping == mapping.handle | 2 and pool.lru.holds(newpage)
    assert zf.test_bit(zf.NEEDS_COMPACTING, newpage) and new_zhdr.work.pending
    assert not zf.test_bit(zf.PAGE_CLAIMED, newpage) and new_zhdr.buddy is None
    assert new_zhdr.refcount == 3  # two objects + the isolation reference the work drops
    assert page_count(newpage) == 1  # the pool's, after the VM dropped the allocation's
    # the old page: released, its private word cleared, gone from the pool
    assert page_count(old_page) == 0 and old_page.flags & BUDDY and old_page.private == 0
    assert old_page not in pool.pages() and newpage in pool.pages()
    assert zhdr.freed and vm.warnings == []
    pool.verify()
    pool.run_workqueues()
    assert not zf.test_bit(zf.NEEDS_COMPACTING, newpage) and new_zhdr.refcount == 2
    # compaction put the new page on an unbuddied list: it is used as the old one was
    assert new_zhdr.buddy is not None
    c = pool.store(b"C" * 500)
    assert pool.header_of_handle(c) is new_zhdr
    pool.verify()
    assert vm.unclaimed_pages() == []
    assert steps(vm).isolate(newpage)


def test_objects_freed_while_isolated_leave_the_migrated_page_to_its_work(make_pool, steps):
    vm, pool = make_pool()
    a, b, zhdr = _two_objects(pool)
    st = steps(vm)
    assert st.isolate(zhdr.page)
    pool.free(a)  # REL-2: the page is claimed, the chunks go, the page stays
    pool.free(b)
    assert zhdr.refcount == 1 and st.pagelist
    assert st.migrate() == 0
    (newpage,) = pool.pages()
    pool.run_workqueues()  # the work drops the isolation reference: release, then free
    assert pool.pages() == [] and page_count(newpage) == 0
    assert vm.unclaimed_pages() == [] and vm.warnings == []


def test_a_foreign_handle_on_an_isolated_page_is_ebusy(make_pool, steps):
    vm, pool = make_pool()
    a, b, zhdr = _two_objects(pool)
    page = zhdr.page
    st = steps(vm)
    assert st.isolate(page)
    # Isolation refuses such pages; this is the state another CPU's compact_single_buddy
    # would leave if it moved an object in after isolation: the count is what matters.
    zhdr.foreign_handles += 1
    newpage = vm.alloc_page()
    assert trylock_page(page) and trylock_page(newpage)
    rc = mmplug_z3fold.migratepage(page_mapping(page), newpage, page, MigrateMode.SYNC)
    assert rc == -EBUSY and not zf.test_bit(zf.PAGE_CLAIMED, page)
    assert pool.header_of_handle(a) is zhdr and not zhdr.page_lock.is_locked()
    zhdr.foreign_handles -= 1
    unlock_page(page)
    unlock_page(newpage)
    vm.cpus.put_page(newpage)
    st.putback()
    pool.verify()
