"""One test (or a few) per balloon rule DRV-B1..DRV-B4, and the instance protocol."""

from __future__ import annotations

import random

import pytest

import mmplug
from mmplug.constants import EINVAL, MigrateMode
from mmplug.kernel import (
    has_movable_tag,
    page_count,
    page_isolated,
    page_mapping,
    trylock_page,
    unlock_page,
)
from mmplug.migrate import putback_movable_pages
from mmplug.page import LOCKED
from mmplug_balloon.balloon_compaction import balloon_page_migrate
from mmplug_balloon.host import DEFLATE, INFLATE, Notification
from mmplug_balloon.scenarios import isolate, migrate


def token(handle: int) -> bytes:
    return handle.to_bytes(8, "little")


# --- DRV-B1: enqueue and dequeue -------------------------------------------------------------

def test_drv_b1_inflated_page_is_movable_owned_listed_and_announced(make_balloon):
    vm, balloon = make_balloon()
    handle = balloon.store(b"ignored")
    page = balloon.handles[handle]
    assert has_movable_tag(page) and page_mapping(page) is balloon.mapping
    assert page.private is balloon.vb_dev_info
    assert page in balloon.vb_dev_info.pages and page.lru is balloon.vb_dev_info.pages
    assert page_count(page) == 1 and not page.flags & LOCKED
    assert balloon.host.log == [Notification(INFLATE, (page.pfn,))]
    assert vm.vmstat["balloon_inflate"] == 1
    balloon.verify()


def test_drv_b1_dequeue_skips_isolated_and_locked_pages(make_balloon, isolated):
    vm, balloon = make_balloon()
    pages = [balloon.handles[balloon.store(b"")] for _ in range(4)]
    # The newest page is dequeued first: isolate it and lock the next one.
    pagelist = isolated(vm, pages[3])
    assert trylock_page(pages[2])
    assert balloon.deflate(1) == 1
    unlock_page(pages[2])
    assert {p.pfn for p in balloon.pages()} == {pages[0].pfn, pages[2].pfn, pages[3].pfn}
    assert balloon.host.log[-1] == Notification(DEFLATE, (pages[1].pfn,))
    assert vm.owner_of(pages[1]) == "free" and pages[1].mapping == 0
    assert vm.vmstat["balloon_deflate"] == 1
    balloon.verify()
    putback_movable_pages(vm, pagelist)
    balloon.verify()
    assert not vm.unclaimed_pages()


def test_drv_b1_dequeue_skips_a_listed_page_that_is_pg_isolated(make_balloon):
    from mmplug.page import ISOLATED

    vm, balloon = make_balloon()
    pages = [balloon.handles[balloon.store(b"")] for _ in range(2)]
    # The window of a putback in progress, had the VM dropped the page lock early.
    pages[1].flags |= ISOLATED
    assert balloon.deflate(1) == 1
    pages[1].flags &= ~ISOLATED
    assert balloon.pages() == [pages[1]]
    balloon.verify()


def test_drv_b1_deflate_tells_the_host_before_the_pages_are_freed(make_balloon):
    vm, balloon = make_balloon()
    balloon.inflate(3)
    seen = []

    def at_point(what):
        if what == "tell_host:deflate":
            # dequeued (no longer movable) but not yet given back to the guest
            seen.extend((vm.owner_of(p), page_count(p)) for p in balloon.pages())

    balloon.on_point = at_point
    assert balloon.deflate(3) == 3
    assert seen == [("other", 1)] * 3
    assert not balloon.pages() and not balloon.host.ballooned
    balloon.verify()



def test_fill_and_leak_keep_the_kernels_list_order(make_balloon, monkeypatch):
    """Which page is announced, dequeued and freed first (virtio_balloon.c v4.19).

    fill_balloon() (drivers/virtio/virtio_balloon.c:138-186) parks the pages it
    allocates with balloon_page_push(), a list_add() (balloon_compaction.h:216-219),
    and takes them back with balloon_page_pop(), the head (:228-237): allocated
    a, b, c are enqueued c, b, a, and the inflate message is (c, b, a).  Each
    balloon_page_insert() list_add()s to b_dev_info->pages (:112-119), so from the
    head the balloon list reads a, b, c; balloon_page_dequeue() walks it from
    the head (mm/balloon_compaction.c:79-99), so leak_balloon() (:202-236)
    dequeues a, b, c and tells the host (a, b, c).  It list_add()s each to its
    local list, and release_pages_balloon() (:188-200) walks that from the head:
    the pages go back to the allocator c, b, a.
    """
    import mmplug_balloon.virtio_balloon as vb

    allocated, released = [], []

    def recording_alloc(b_dev_info):
        page = real_alloc(b_dev_info)
        allocated.append(page)
        return page

    def recording_put(page):
        released.append(page)
        real_put(page)

    real_alloc, real_put = vb.balloon_page_alloc, vb.put_page
    monkeypatch.setattr(vb, "balloon_page_alloc", recording_alloc)
    monkeypatch.setattr(vb, "put_page", recording_put)
    vm, balloon = make_balloon()
    assert balloon.inflate(3) == 3
    a, b, c = allocated
    assert balloon.host.log == [Notification(INFLATE, (c.pfn, b.pfn, a.pfn))]
    assert list(balloon.vb_dev_info.pages) == [a, b, c]  # iteration starts at the head
    assert balloon.deflate(3) == 3
    assert balloon.host.log[-1] == Notification(DEFLATE, (a.pfn, b.pfn, c.pfn))
    assert released == [c, b, a]
    balloon.verify()



@pytest.mark.parametrize("compaction, migratetype", [(True, "MOVABLE"), (False, "UNMOVABLE")])
def test_balloon_pages_are_placed_by_balloon_mapping_gfp_mask(make_balloon, compaction,
                                                              migratetype):
    """balloon_page_alloc() (mm/balloon_compaction.c:22-27) allocates with
    balloon_mapping_gfp_mask(): GFP_HIGHUSER_MOVABLE with balloon compaction
    (balloon_compaction.h:151-154), GFP_HIGHUSER without (:202-205), which on
    x86-64 (no highmem) is an unmovable allocation.  The pages land in
    pageblocks of that migratetype."""
    from mmplug.constants import MigrateType

    vm, balloon = make_balloon(compaction=compaction)
    balloon.inflate(8)
    assert {vm.zone.get_pageblock_migratetype(p.pfn) for p in balloon.pages()} == {
        MigrateType[migratetype]}

# --- DRV-B2: isolate and putback ---------------------------------------------------------------

def test_drv_b2_isolation_takes_the_page_off_the_list_and_counts_it(make_balloon, isolated):
    vm, balloon = make_balloon()
    pages = [balloon.handles[balloon.store(b"")] for _ in range(3)]
    pagelist = isolated(vm, *pages)  # balloon isolation never refuses
    dev = balloon.vb_dev_info
    assert dev.isolated_pages == 3 and not dev.pages
    assert all(page_isolated(p) for p in pages)
    assert set(balloon.pages()) == set(pages)
    balloon.verify()
    putback_movable_pages(vm, pagelist)
    assert dev.isolated_pages == 0 and set(dev.pages) == set(pages)
    assert all(p.lru is dev.pages and not page_isolated(p) for p in pages)
    balloon.verify()


# --- DRV-B3: migration --------------------------------------------------------------------------

def test_drv_b3_migration_swaps_the_page_and_tells_the_host_inflate_then_deflate(
        make_balloon, isolated):
    vm, balloon = make_balloon()
    handle = balloon.store(b"")
    old = balloon.handles[handle]
    assert migrate(vm, isolated(vm, old)) == 0
    new = balloon.handles[handle]
    assert new is not old
    assert new in balloon.vb_dev_info.pages and new.private is balloon.vb_dev_info
    assert page_count(new) == 1 and page_mapping(new) is balloon.mapping
    assert balloon.host.log[-2:] == [Notification(INFLATE, (new.pfn,)),
                                    Notification(DEFLATE, (old.pfn,))]
    assert balloon.read(handle) == token(handle)
    assert vm.vmstat["balloon_migrate"] == 1 and vm.vmstat["pgmigrate_success"] == 1
    assert vm.owner_of(old) == "free"
    assert balloon.vb_dev_info.isolated_pages == 0
    balloon.verify()
    assert not vm.unclaimed_pages()


def test_drv_b3_busy_balloon_mutex_makes_migration_retry_then_putback(make_balloon, isolated):
    vm, balloon = make_balloon()
    handle = balloon.store(b"")
    page = balloon.handles[handle]
    balloon.hold()
    assert migrate(vm, isolated(vm, page)) == 1  # still -EAGAIN after every pass
    assert vm.vmstat["migrate_eagain"] == 10 and vm.vmstat["putback_movable"] == 1
    assert balloon.handles[handle] is page and page in balloon.vb_dev_info.pages
    assert vm.vmstat["balloon_migrate"] == 0
    balloon.release()
    balloon.verify()
    assert migrate(vm, isolated(vm, page)) == 0
    balloon.verify()


def test_drv_b3_sync_no_copy_is_refused_with_einval(make_balloon, isolated):
    vm, balloon = make_balloon()
    page = balloon.handles[balloon.store(b"")]
    newpage = vm.alloc_page()
    trylock_page(page)
    trylock_page(newpage)
    assert balloon_page_migrate(balloon.mapping, newpage, page, MigrateMode.SYNC_NO_COPY) == -EINVAL
    unlock_page(page)
    unlock_page(newpage)
    vm.cpus.put_page(newpage)
    # Through the VM: a permanent failure, the page goes straight back.
    assert migrate(vm, isolated(vm, page), MigrateMode.SYNC_NO_COPY) == 1
    assert vm.vmstat["migrate_permanent"] == 1 and vm.vmstat["migrate_eagain"] == 0
    assert page in balloon.vb_dev_info.pages
    balloon.verify()
    assert not vm.unclaimed_pages()


def test_drv_b3_host_set_equals_balloon_after_every_operation(make_balloon):
    vm, balloon = make_balloon()
    rng = random.Random(7)
    pending = []  # isolated page lists not yet migrated or put back
    for _ in range(300):
        op = rng.choice(("store", "inflate", "deflate", "free", "isolate", "migrate", "putback"))
        handles = list(balloon.handles)
        if op == "store":
            balloon.store(b"")
        elif op == "inflate":
            balloon.inflate(rng.randint(1, 5))
        elif op == "deflate":
            balloon.deflate(rng.randint(1, 5))
        elif op == "free" and handles:
            balloon.free(rng.choice(handles))
        elif op == "isolate" and handles:
            from mmplug.migrate import PageList
            pagelist = PageList()
            for h in rng.sample(handles, min(3, len(handles))):
                page = balloon.handles[h]
                if not page_isolated(page):
                    isolate(vm, page, pagelist)
            pending.append(pagelist)
        elif op in ("migrate", "putback") and pending:
            pagelist = pending.pop(rng.randrange(len(pending)))
            if op == "migrate":
                migrate(vm, pagelist, rng.choice((MigrateMode.SYNC, MigrateMode.SYNC_LIGHT,
                                                  MigrateMode.ASYNC)))
            else:
                putback_movable_pages(vm, pagelist)
        balloon.verify()
    for pagelist in pending:
        putback_movable_pages(vm, pagelist)
    balloon.verify()
    assert vm.vmstat["balloon_migrate"] > 0 and vm.vmstat["balloon_deflate"] > 0
    assert not vm.unclaimed_pages()
    vm.destroy_driver(balloon)
    assert not balloon.host.ballooned
    vm.zone.check_free_lists()
    assert vm.zone.nr_free_pages == vm.config.nr_pages


# --- DRV-B4: lost pages ---------------------------------------------------------------------------

def test_drv_b4_lost_pages_are_the_kernels_bug(make_balloon):
    vm, balloon = make_balloon()
    balloon.inflate(2)
    # Pages vanish from the list behind the device's back.
    for page in list(balloon.vb_dev_info.pages):
        balloon.vb_dev_info.pages.delete(page)
    with pytest.raises(mmplug.ContractViolation) as info:
        balloon.deflate(1)
    assert info.value.rule == "DRV-B4" and "lost" in str(info.value)


def test_drv_b4_not_raised_while_pages_are_only_isolated(make_balloon, isolated):
    vm, balloon = make_balloon()
    pages = [balloon.handles[balloon.store(b"")] for _ in range(2)]
    pagelist = isolated(vm, *pages)
    assert balloon.deflate(2) == 0  # "temporarily empty": try again later
    putback_movable_pages(vm, pagelist)
    assert balloon.deflate(2) == 2
    balloon.verify()


# --- free() of one object, isolated or not (REL-1, REL-2) ------------------------------------

def test_free_of_an_isolated_page_is_finished_by_migration_without_the_driver(
        make_balloon, isolated):
    vm, balloon = make_balloon()
    handles = [balloon.store(b"") for _ in range(2)]
    page = balloon.handles[handles[0]]
    pagelist = isolated(vm, page)
    balloon.free(handles[0])
    assert balloon.vb_dev_info.isolated_pages == 0
    assert page.lru is pagelist and page_isolated(page)  # the VM's to finish
    assert balloon.host.log[-1] == Notification(DEFLATE, (page.pfn,))
    balloon.verify()
    assert migrate(vm, pagelist) == 0
    assert vm.vmstat["balloon_migrate"] == 0 and vm.vmstat["migrate_released"] == 1
    assert vm.owner_of(page) == "free"
    balloon.verify()
    assert not vm.unclaimed_pages()
    vm.zone.check_free_lists()


def test_free_of_an_isolated_page_is_finished_by_putback_without_the_driver(
        make_balloon, isolated):
    vm, balloon = make_balloon()
    handle = balloon.store(b"")
    page = balloon.handles[handle]
    pagelist = isolated(vm, page)
    balloon.free(handle)
    putback_movable_pages(vm, pagelist)
    assert vm.vmstat["putback_movable"] == 0 and vm.vmstat["migrate_released"] == 1
    assert vm.owner_of(page) == "free" and page not in balloon.vb_dev_info.pages
    balloon.verify()
    assert not vm.unclaimed_pages()


# --- the instance protocol ------------------------------------------------------------------------

def test_read_gives_a_stable_token_and_keyerror_for_unknown_handles(make_balloon, isolated):
    vm, balloon = make_balloon()
    handle = balloon.store(b"abc")
    assert balloon.read(handle) == token(handle)
    for _ in range(3):
        assert migrate(vm, isolated(vm, balloon.handles[handle])) == 0
        assert balloon.read(handle) == token(handle)
    with pytest.raises(KeyError):
        balloon.read(handle + 1)
    balloon.free(handle)
    with pytest.raises(KeyError):
        balloon.read(handle)
    with pytest.raises(KeyError):
        balloon.free(handle)


def test_store_refuses_objects_larger_than_a_page(make_balloon):
    vm, balloon = make_balloon()
    with pytest.raises(ValueError, match="exceeds the page size"):
        balloon.store(bytes(vm.zone.page_size + 1))
    assert not balloon.pages() and not balloon.host.log


def test_store_raises_nomemory_when_the_zone_is_exhausted(make_balloon):
    vm, balloon = make_balloon(nr_pages=512)
    got = balloon.inflate(10_000)
    assert 0 < got < 512
    with pytest.raises(mmplug.NoMemory):
        balloon.store(b"")
    assert balloon.inflate(5) == 0
    balloon.verify()
    vm.destroy_driver(balloon)
    assert vm.zone.nr_free_pages == 512


def test_inflate_and_deflate_cross_the_message_size(make_balloon):
    vm, balloon = make_balloon()
    assert balloon.inflate(600) == 600
    assert [len(n.pfns) for n in balloon.host.log] == [256, 256, 88]
    assert balloon.deflate(700) == 600
    assert len(balloon.host.log) == 6
    balloon.verify()


def test_destroy_deflates_everything(make_balloon):
    vm, balloon = make_balloon()
    balloon.inflate(50)
    vm.destroy_driver(balloon)
    assert not balloon.host.ballooned and balloon.num_pages == 0
    assert vm.zone.nr_free_pages == vm.config.nr_pages
    vm.zone.check_free_lists()


def test_destroy_with_an_isolated_page_is_rel3_until_it_comes_back(make_balloon, isolated):
    vm, balloon = make_balloon()
    balloon.inflate(3)
    page = balloon.pages()[0]
    pagelist = isolated(vm, page)
    with pytest.raises(mmplug.ContractViolation) as info:
        balloon.destroy()
    assert info.value.rule == "REL-3" and "1 balloon page(s) are still isolated" in str(info.value)
    assert balloon.pages() == [page]
    putback_movable_pages(vm, pagelist)
    vm.destroy_driver(balloon)
    assert vm.zone.nr_free_pages == vm.config.nr_pages


def test_unknown_options_and_bugs_are_rejected(make_balloon):
    with pytest.raises(mmplug.UsageError, match="bad options"):
        make_balloon(colour="red")
    with pytest.raises(mmplug.DriverError, match="unknown balloon bug"):
        make_balloon(bugs={"BUG-99"})


def test_without_compaction_pages_are_unmovable_and_left_alone(make_balloon):
    from mmplug.compaction import compact_memory

    vm, balloon = make_balloon(compaction=False)
    balloon.inflate(20)
    pages = balloon.pages()
    assert not any(has_movable_tag(p) for p in pages)
    # !CONFIG_BALLOON_COMPACTION balloon_page_insert() (balloon_compaction.h:158-163)
    # only lists the page: page->private stays as the allocator left it.
    assert all(p.private == 0 for p in pages)
    compact_memory(vm)
    assert balloon.pages() == pages and vm.vmstat["balloon_migrate"] == 0
    balloon.verify()
    assert balloon.deflate(20) == 20
    balloon.verify()
    assert not vm.unclaimed_pages()


def test_drv_b1_enqueue_of_a_page_someone_else_locked_is_the_kernels_bug_on(make_balloon):
    from mmplug_balloon.balloon_compaction import balloon_page_alloc, balloon_page_enqueue

    vm, balloon = make_balloon()
    page = balloon_page_alloc(balloon.vb_dev_info)
    assert trylock_page(page)
    with pytest.raises(mmplug.ContractViolation) as info:
        balloon_page_enqueue(balloon.vb_dev_info, page)
    assert info.value.rule == "DRV-B1" and page not in balloon.vb_dev_info.pages
