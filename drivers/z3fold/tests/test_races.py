"""DRV-3F5 and BUG-13/14/15: the fixed behaviour, and each pre-fix variant caught.

Races are interleaved exactly: a second task starts when the first reaches a
named schedule point and runs until its own next one (conftest.Interleaver).
"""

from __future__ import annotations

import pytest

from mmplug import VM, ContractViolation, VMConfig
from mmplug.kernel import page_count, schedule_point
from mmplug_z3fold.access import read_mapped, z3fold_map, z3fold_unmap
from mmplug_z3fold.migration import MIGRATE_WINDOW

DATA = bytes(range(256)) * 4


def _reader_race(host, interleaver, steps, bugs):
    box = {}

    def reader():
        # zswap_frontswap_load: map, decompress (a while), unmap
        pool = box["pool"]
        addr = z3fold_map(pool, box["handle"])
        schedule_point(pool.vm, "reader: decompress")
        data = read_mapped(pool, addr, len(DATA))
        z3fold_unmap(pool, box["handle"])
        return data

    backend = interleaver(MIGRATE_WINDOW, reader)
    vm = VM(VMConfig(nr_pages=512), plugins=host, cpus=backend)
    pool = vm.create_driver("z3fold", bugs=bugs)
    box.update(pool=pool, handle=pool.store(DATA))
    pool.store(b"x" * 500)
    st = steps(vm)
    assert st.isolate(pool.header_of_handle(box["handle"]).page)
    assert st.migrate() == 0  # the reader starts inside the window and pauses
    return vm, pool, backend


def test_a_reader_never_uses_a_migrated_header_it_retries_until_the_handle_moves(
        host, interleaver, steps):
    vm, pool, backend = _reader_race(host, interleaver, steps, bugs=())
    # inside the window the reader found PAGE_MIGRATED and spun instead of mapping
    assert any(p.endswith("get_z3fold_header: retry") for p in backend.points_in_other)
    assert not any(p.endswith("reader: decompress") for p in backend.points_in_other)
    assert backend.finish_other() == DATA
    assert pool.header_of_handle(next(iter(pool.objects))).mapped_count == 0
    pool.verify()


def test_bug13_without_page_migrated_the_reader_reads_the_freed_old_page(
        host, interleaver, steps):
    vm, pool, backend = _reader_race(host, interleaver, steps, bugs={"BUG-13"})
    # no retry: it mapped the old page at once and paused inside its "decompression"
    assert not any(p.endswith("get_z3fold_header: retry") for p in backend.points_in_other)
    assert backend.points_in_other[-1].endswith("reader: decompress")
    with pytest.raises(ContractViolation) as err:
        backend.finish_other()
    assert err.value.rule == "DRV-3F5" and "BUG-13" in str(err.value)


def _reclaim_setup(make_pool, bugs):
    written: dict[int, bytes] = {}
    vm, pool = make_pool(bugs=bugs)
    pool.evict = pool.writeback_evict(written)
    objects = {pool.store(bytes([i]) * (400 + 300 * i)): bytes([i]) * (400 + 300 * i)
               for i in range(3)}
    return vm, pool, objects, written


def test_reclaim_holds_its_own_reference_while_evict_frees_the_objects(make_pool):
    vm, pool, objects, written = _reclaim_setup(make_pool, ())
    (page,) = pool.pages()
    assert pool.shrink(1) == 1
    assert written == objects and pool.objects == {}
    pool.run_workqueues()
    assert page_count(page) == 0 and pool.pages() == [] and vm.unclaimed_pages() == []
    assert vm.warnings == []


def test_bug14_reclaim_without_a_reference_uses_the_page_free_released(make_pool):
    vm, pool, objects, written = _reclaim_setup(make_pool, {"BUG-14"})
    with pytest.raises(ContractViolation) as err:
        pool.shrink(1)
    assert err.value.rule == "REF-1" and "use after free" in str(err.value)


def test_reclaim_of_a_headless_page_and_without_evict(make_pool):
    vm, pool = make_pool()
    big = pool.store(b"H" * 4000)
    assert pool.shrink(1) == 0  # no evict(): -EINVAL
    written: dict[int, bytes] = {}
    pool.evict = pool.writeback_evict(written)
    assert pool.shrink(1) == 1 and written == {big: b"H" * 4000}
    assert pool.pages() == [] and vm.unclaimed_pages() == []


def _pending_work_at_destroy(make_pool, bugs):
    vm, pool = make_pool(bugs=bugs)
    pool.store(b"a" * 300)
    pool.store(b"b" * 300)
    return vm, pool


def test_destroy_drains_compaction_before_releases(make_pool):
    vm, pool = _pending_work_at_destroy(make_pool, ())
    vm.destroy_driver(pool)  # REL-3 is checked by the VM: no page may point at the mapping
    assert vm.unclaimed_pages() == []
    vm.zone.check_free_lists()
    assert vm.zone.nr_free_pages == vm.zone.nr_pages


def test_bug15_destroying_release_wq_first_loses_the_release_pending_compaction_queues(make_pool):
    vm, pool = _pending_work_at_destroy(make_pool, {"BUG-15"})
    with pytest.raises(ContractViolation) as err:
        vm.destroy_driver(pool)
    assert err.value.rule == "BUG-15" and "release_wq" in str(err.value)


def test_unknown_bug_names_are_refused(make_pool):
    with pytest.raises(Exception, match="BUG-99"):
        make_pool(bugs={"BUG-99"})
