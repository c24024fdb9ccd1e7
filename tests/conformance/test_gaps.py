"""Mistakes check-driver used to miss or see only through their consequences: each has its
check, and the broken driver of the mistake table that proves the check fails it while
correct drivers pass."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conformance.broken.mistakes import SIMPLEPOOL, Edit, Mistake, import_line, map_knob
from mmplug import VM, PluginHost, VMConfig
from mmplug.conformance import FAIL, OK, run_suite
from mmplug.conformance.registry import Context
from mmplug.conformance.runner import load_driver
from mmplug.constants import MigrateMode
from mmplug.errors import DriverError
from mmplug.migrate import (
    PageList,
    isolate_movable_page,
    migrate_pages,
    putback_movable_pages,
)

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
QUICK = pytest.mark.parametrize("quick", [True, False], ids=["quick", "default"])


def one(driver: Path | str, check: str, quick: bool = False):
    (result,) = run_suite(str(driver), select=[check], quick=quick).results
    return result


# --- (f) a failed migratepage leaves newpage untouched: the VM checks it ------------------

def test_the_vm_rejects_a_failed_migratepage_that_kept_newpage(tmp_path: Path) -> None:
    host = PluginHost()
    loaded = host.load(str(BROKEN / "newpage_movable_on_failure.py"))
    vm = VM(VMConfig(nr_pages=256, pageblock_order=5, max_order=7), plugins=host)
    pool = vm.create_from(loaded)
    handle = pool.store(b"x" * 64)
    pool.pin(handle)
    page = pool.pages()[0]
    assert isolate_movable_page(vm, page, 0) == 0
    plist = PageList()
    plist.add(page)
    with pytest.raises(DriverError) as err:
        migrate_pages(vm, plist, lambda p, private: vm.alloc_page(), None, None,
                      MigrateMode.SYNC)
    assert err.value.rule == "MIG-8" and err.value.hook == "migratepage"
    assert "failed (-EAGAIN) but left newpage's mapping word" in err.value.message


@QUICK
def test_newpage_made_movable_before_a_failure_is_mig8(quick: bool) -> None:
    result = one(BROKEN / "newpage_movable_on_failure.py", "MIG-8/eagain-retried", quick)
    assert result.verdict == FAIL and result.rule == "MIG-8" and "(made movable)" in \
        result.message


# --- (a) re-listing before putback: store() in the window after a permanent failure -------

def _withmap_knob(tmp_path: Path, relists: bool) -> str:
    """simplepool whose mapped objects make migration fail for good (-EBUSY); with
    `relists`, migratepage also puts the page back on its list itself."""
    back = ("            st.isolated = False  # the mistake\n"
            "            pool.partial[st] = None\n") if relists else ""
    variant = Mistake(
        "mapfail", "MIG-8", "A variant.",
        (*map_knob("mapped objects fail migration"),
         Edit('knobs={"pin", "busy"}))\n', 'knobs={"pin", "busy", "map"}))  # for the mistake\n',
              within="mmplug_driver"),
         import_line("mmplug.kernel", "EBUSY"),
         Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if st.mapped:  # for the mistake\n" + back + "            return -EBUSY\n",
              within="migratepage")))
    path = tmp_path / f"mapfail_{relists}.py"
    path.write_text(variant.render(SIMPLEPOOL.read_text()))
    return str(path)


@QUICK
def test_relisting_a_page_before_putback_is_seen_in_the_window(tmp_path: Path,
                                                                quick: bool) -> None:
    assert one(_withmap_knob(tmp_path, False), "PUT-3/driver-failure", quick).verdict == OK
    result = one(BROKEN / "relists_on_failure.py", "PUT-3/driver-failure", quick)
    assert result.verdict == FAIL and result.rule == "MIG-8"
    assert "before the VM put the page back" in result.message
    assert result.page and "isolated" in result.page


def test_relisting_is_invisible_without_the_window(tmp_path: Path) -> None:
    """Nothing else in the suite sees it: the VM's putback_page re-lists it again anyway."""
    report = run_suite(str(BROKEN / "relists_on_failure.py"), quick=True)
    assert [r.check for r in report.results if r.failed] == ["PUT-3/driver-failure"]


# --- (b) the raw mapping word (FLG-7), seen where it is read -----------------------------------

@QUICK
def test_reading_the_raw_mapping_word_is_flg7_naming_the_line(quick: bool) -> None:
    result = one(BROKEN / "raw_mapping_word.py", "FLG-7/mapping-masked", quick)
    assert result.verdict == FAIL and result.rule == "FLG-7"
    assert result.site.startswith("putback_page (raw_mapping_word.py:")
    assert "page_mapping(page)" in result.message


@pytest.mark.parametrize("driver", ["zsmalloc", "balloon", "z3fold", str(SIMPLEPOOL)])
def test_correct_drivers_never_read_the_raw_word(driver: str) -> None:
    assert one(driver, "FLG-7/mapping-masked", quick=True).verdict == OK


# --- (c) several objects on a page ---------------------------------------------------------------

@pytest.mark.parametrize("driver, least", [("zsmalloc", 2), ("z3fold", 2),
                                           (str(SIMPLEPOOL), 2)])
@QUICK
def test_populations_put_several_objects_on_a_page(driver: str, least: int, quick: bool) -> None:
    host, loaded = load_driver(driver)
    ctx = Context(loaded=loaded, host=host, seed=0, check_id="MIG-7/success", quick=quick)
    bench = ctx.bench()
    bench.populate(ctx.size(6, 3))
    per_page = Counter(bench.pages_of(h)[0].pfn for h in bench.objects
                       if len(bench.pages_of(h)) == 1)
    shared = [n for n in per_page.values() if n >= least]
    assert len(shared) >= max(1, len(per_page) // 2), per_page


@QUICK
def test_a_migration_that_moves_one_object_of_a_page_fails_mig7(quick: bool) -> None:
    result = one(BROKEN / "one_object_moved.py", "MIG-7/success", quick)
    assert result.verdict == FAIL and result.rule == "MIG-7"
    assert "reads back different bytes" in result.message


# --- (d) races in --quick: the isolation windows -------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name, rule", [("free_no_recheck", "FLG-5"),
                                        ("destroy_skips_isolated", "REL-3"),
                                        ("relists_emptied_page", "MIG-7"),
                                        ("lock_inversion", "LCK-3"),
                                        ("copy_after_switch", "MIG-7")])
def test_race_only_mistakes_pass_without_races_and_fail_in_quick(name: str, rule: str) -> None:
    path = str(BROKEN / f"{name}.py")
    report = run_suite(path, races=False)
    if name == "lock_inversion":
        # its mutex, taken in ASYNC migratepage too, is contended without any race
        assert {r.check for r in report.failures()} == {"MIG-10/async-never-blocks"}
    else:
        assert report.passed
    (race,) = run_suite(path, select=["RACE"], quick=True).results
    assert race.verdict == FAIL and race.rule == rule
    assert "(window, schedule " in race.message


# --- a free() that re-lists an isolated page; a putback_page that drops a reference ----------

@QUICK
def test_a_free_that_relists_an_isolated_page_is_iso2_naming_free(quick: bool) -> None:
    result = one(BROKEN / "free_relists_isolated.py", "ISO-2/taken-out", quick)
    assert result.verdict == FAIL and result.rule == "ISO-2" and result.hook == "free"
    assert "after free() of one of its objects while it was isolated" in result.message
    kept = one(BROKEN / "isolate_keeps_page.py", "ISO-2/taken-out", quick)
    assert kept.verdict == FAIL and kept.rule == "ISO-2" and kept.hook == "store"


def _putback_one(driver: Path | str) -> None:
    host = PluginHost()
    vm = VM(VMConfig(nr_pages=256, pageblock_order=5, max_order=7), plugins=host)
    pool = vm.create_from(host.load(str(driver)))
    pool.store(b"x" * 64)
    page = pool.pages()[0]
    assert isolate_movable_page(vm, page, 0) == 0
    plist = PageList()
    plist.add(page)
    putback_movable_pages(vm, plist)


def test_the_vm_rejects_a_putback_page_that_drops_a_reference() -> None:
    """Caught in putback_page itself, before the VM's put_page frees a page in use."""
    _putback_one(SIMPLEPOOL)
    with pytest.raises(DriverError) as err:
        _putback_one(BROKEN / "putback_drops_ref.py")
    assert err.value.rule == "PUT-1" and err.value.hook == "putback_page"
    assert "dropped a reference it does not own" in err.value.message


# --- a write through a pointer to a page a migration freed ----------------------------------

@QUICK
def test_a_store_into_the_old_page_of_a_migration_is_mig7_naming_store(quick: bool) -> None:
    """The old page is poisoned when the migration frees it; a store that overwrites the
    poison wrote through a pointer the driver kept (the read back goes through st.page and
    sees nothing)."""
    result = one(BROKEN / "stale_page_pointer.py", "MIG-7/success", quick)
    assert result.verdict == FAIL and result.rule == "MIG-7" and result.hook == "store"
    assert "which is free: a migration freed it" in result.message


def test_a_page_allocated_again_is_no_longer_watched() -> None:
    """Poison is watched only while the page stays free: whoever allocates it may write."""
    host, loaded = load_driver(str(SIMPLEPOOL))
    bench = Context(loaded=loaded, host=host, seed=0, check_id="t").bench()
    bench.populate(2)
    done, _ = bench.isolate_all()
    assert bench.migrate(bench.to_list(done)) == 0
    freed = [p for p in done if p._refcount == 0]
    assert freed and bench.poison.armed() == freed
    page = bench.vm.zone.pages[freed[0].pfn - bench.vm.zone.start_pfn]
    while (got := bench.vm.alloc_page()) is not None and got is not page:
        pass
    assert got is page
    bench.vm.zone.page_address(page)[:4] = b"used"
    assert page not in bench.poison.armed()
    bench.store()                               # nothing to blame


# --- putback after each way a migration fails ------------------------------------------------

@QUICK
def test_a_putback_after_eagain_that_loses_the_free_space_is_put2(quick: bool) -> None:
    """A plain isolate/putback round trip is fine; only the -EAGAIN path forgets the page."""
    result = one(BROKEN / "eagain_forgets_page.py", "PUT-2/usable-again", quick)
    assert result.verdict == FAIL and result.rule == "PUT-2"
    assert result.message.startswith("after -EAGAIN and putback the driver stored only 0")


# --- an object in use (pinned, mapped) keeps its page where it is ----------------------------

@QUICK
def test_a_page_moved_while_an_object_on_it_is_mapped_is_mig8(quick: bool) -> None:
    result = one(BROKEN / "migrates_mapped.py", "PUT-3/driver-failure", quick)
    assert result.verdict == FAIL and result.rule == "MIG-8" and result.hook == "migratepage"
    assert "was mapped" in result.message
    assert one("z3fold", "PUT-3/driver-failure", quick).verdict == OK


# --- a permanent errno with nothing in the way ----------------------------------------------

@QUICK
def test_a_page_migratepage_fails_every_time_is_mig8(quick: bool) -> None:
    """A permanent errno is the driver's to give, for a cause that passes: a page it fails
    each time, with nothing pinned, mapped or busy, is a page compaction never moves."""
    report = run_suite(str(BROKEN / "refuses_full_pages.py"), quick=quick, races=False)
    (failure,) = report.failures()
    assert failure.rule == "MIG-8" and failure.hook == "migratepage"
    assert "(-EBUSY) each time it was tried in SYNC mode with nothing in its way" in \
        failure.message


# --- sleeping under a spinlock: an allocation that may reclaim ------------------------------

def test_an_allocation_that_may_sleep_under_a_spinlock_is_lck1() -> None:
    from mmplug.errors import ContractViolation
    from mmplug.kernel import GFP_ATOMIC, GFP_KERNEL, alloc_page, spinlock
    vm = VM(VMConfig(nr_pages=256, pageblock_order=5, max_order=7))
    lock = spinlock(vm, "pool.lock")
    with lock:
        assert alloc_page(vm, GFP_ATOMIC) is not None
        with pytest.raises(ContractViolation) as err:
            alloc_page(vm, GFP_KERNEL)
        assert err.value.rule == "LCK-1"
        with pytest.raises(ContractViolation):
            alloc_page(vm)                      # GFP_HIGHUSER_MOVABLE may reclaim too
    assert alloc_page(vm, GFP_KERNEL) is not None
    result = one(BROKEN / "alloc_under_lock.py", "API-1/store-read")
    assert result.verdict == FAIL and result.rule == "LCK-1" and result.hook == "store"


# --- what a mistake makes the VM do next is the mistake's -----------------------------------

@QUICK
def test_a_callback_failing_only_on_a_migrated_page_is_mig7(quick: bool) -> None:
    """isolate_page fails on the new page of a migration only: migratepage did not set it
    up as the driver's other pages (its private field), so the blame is migratepage's."""
    report = run_suite(str(BROKEN / "no_newpage_private.py"), quick=quick, races=False)
    (failure,) = report.failures()
    assert failure.rule == "MIG-7" and failure.hook == "isolate_page"
    assert "failed on the new page of a migration" in failure.message
    assert all(r.rule == "MIG-7" for r in report.results if r.failed)


def test_a_callback_that_locks_the_page_the_vm_holds_is_lck3() -> None:
    result = one(BROKEN / "putback_locks_page.py", "PUT-1/putback-restores", quick=True)
    assert result.verdict == FAIL and result.rule == "LCK-3" and result.hook == "putback_page"
    assert result.message.startswith("deadlock: putback_page raised Deadlock")


def test_a_page_released_but_left_movable_is_rel1_whatever_putback_then_does() -> None:
    """The VM still calls putback_page for it; the driver's own state is gone and putback
    raises: that is the release's mistake, reported once."""
    report = run_suite(str(BROKEN / "releases_isolated_movable.py"), races=False)
    (failure,) = report.failures()
    assert failure.rule == "REL-1"
    assert all(r.rule == "REL-1" for r in report.results if r.failed)


# --- ASYNC never waits: the check makes the driver's sleeping locks contended ---------------

@pytest.mark.parametrize("name, lock", [("async_mutex", "mutex_lock('simplepool.mutex')"),
                                        ("async_lock_page", "lock_page()")])
def test_an_async_callback_that_waits_for_a_held_lock_is_lck1(name: str, lock: str) -> None:
    result = one(BROKEN / f"{name}.py", "MIG-10/async-never-blocks", quick=True)
    assert result.verdict == FAIL and result.rule == "LCK-1" and result.hook == "migratepage"
    assert f"contended {lock} in an ASYNC migration callback" in result.message
    assert result.page and result.page.startswith("pfn ")


@pytest.mark.parametrize("driver", ["balloon", "zsmalloc", "z3fold", str(SIMPLEPOOL),
                                    str(HERE / "bases" / "oneballoon.py")])
def test_drivers_that_only_try_their_locks_pass_async_never_blocks(driver: str) -> None:
    assert one(driver, "MIG-10/async-never-blocks", quick=True).verdict == OK


def test_a_mutex_taken_in_sync_modes_and_only_tried_in_async_mode_passes(tmp_path: Path) -> None:
    """mutex_lock is fine where the mode may block; ASYNC tries it and gives -EAGAIN."""
    variant = Mistake(
        "synclock", "LCK-1", "A variant.",
        (import_line("mmplug.kernel", "MigrateMode, mutex"),
         Edit("        self.next_handle = 1\n",
              "        self.next_handle = 1\n"
              '        self.mutex = mutex(vm, "simplepool.mutex")  # for the mistake\n',
              within="Pool.__init__"),
         Edit("    pool = mapping.private_data\n    with pool.lock:\n",
              "    pool = mapping.private_data\n"
              "    if mode != MigrateMode.ASYNC:  # for the mistake (which is none)\n"
              "        pool.mutex.lock()\n"
              "    elif not pool.mutex.trylock():\n"
              "        return -EAGAIN\n"
              "    pool.mutex.unlock()\n"
              "    with pool.lock:\n",
              within="migratepage")))
    path = tmp_path / "synclock.py"
    path.write_text(variant.render(SIMPLEPOOL.read_text()))
    assert one(path, "MIG-10/async-never-blocks", quick=True).verdict == OK


def test_async_never_blocks_holds_the_balloon_mutex_while_it_migrates() -> None:
    """The contention is real: the balloon's mutex_trylock fails and it gives -EAGAIN."""
    from mmplug.conformance.checks.mig import async_never_blocks
    from mmplug.constants import EAGAIN
    host, loaded = load_driver("balloon")
    ctx = Context(loaded=loaded, host=host, seed=0, check_id="MIG-10/async-never-blocks",
                  quick=True)
    async_never_blocks.fn(ctx)
    (bench,) = ctx.benches
    rcs = [rc for hook, _, rc in bench.spy.results if hook == "migratepage"]
    assert rcs and set(rcs) == {-EAGAIN}


# --- a failure for ever for some pages, in --quick too ------------------------------------------

@pytest.mark.parametrize("name", ["eagain_moved", "eagain_two_objects"])
def test_a_page_failed_for_ever_in_a_state_after_use_is_mig8_in_quick(name: str) -> None:
    result = one(BROKEN / f"{name}.py", "MIG-10/all-modes", quick=True)
    assert result.verdict == FAIL and result.rule == "MIG-8" and result.hook == "migratepage"
    assert "(-EAGAIN) each time it was tried in SYNC mode with nothing in its way" in \
        result.message


def test_what_is_in_the_way_in_sync_mode_is_in_the_way_in_async_mode() -> None:
    result = one(BROKEN / "busy_ignored_async.py", "MIG-8/eagain-retried", quick=True)
    assert result.verdict == FAIL and result.rule == "MIG-8"
    assert "a migration in ASYNC mode moved" in result.message


# --- a balloon releasing a page compaction holds isolated -----------------------------------

def test_a_balloon_unlisting_a_page_it_released_while_isolated_is_rel2() -> None:
    result = one(BROKEN / "balloon_unlists_isolated.py", "REL-2/free-while-isolated", True)
    assert result.verdict == FAIL and result.rule == "REL-2" and result.hook == "free"
    assert "free released an isolated page and changed its lru" in result.message


def test_a_balloon_still_counting_a_page_it_released_while_isolated_is_drv_b2() -> None:
    result = one(BROKEN / "balloon_counts_released.py", "REL-2/free-while-isolated", True)
    assert result.verdict == FAIL and result.rule == "DRV-B2" and result.hook == "verify"
    assert "isolated_pages is 1" in result.message


# --- one mistake, its own rule, wherever it shows --------------------------------------------

@pytest.mark.parametrize("name, rule, hook, says, races", [
    ("isolate_refuses_all", "ISO-6", "isolate_page", "declares may_refuse_isolation=False",
     True),
    ("newpage_pg_isolated", "FLG-6", "migratepage", "left PG_isolated (PG_reclaim) set on the new",
     True),
    ("store_reuses_handle", "API-1", "store", "which is still in use", True),
    # on several CPUs the extra reference shows only as a leak (REL-1, expected too)
    ("putback_takes_ref", "PUT-1", "putback_page", "took 1 reference(s) on the page and kept",
     False),
])
def test_a_mistake_is_one_violation_of_its_rule(name: str, rule: str, hook: str, says: str,
                                                races: bool) -> None:
    """Before, these were also blamed on the steps they upset later (no page migrated:
    MIG-8 and CMP-3; a PG_isolated page freed: REL-2; a duplicate handle: REL-3; a
    reference putback took: MIG-7 when the page migrated later)."""
    report = run_suite(str(BROKEN / f"{name}.py"), quick=True, races=races)
    (failure,) = report.failures()
    assert failure.rule == rule and failure.hook == hook and says in failure.message


def test_a_page_compact_memory_fails_with_nothing_in_its_way_is_tried_again(
        tmp_path: Path) -> None:
    """Pages far up the zone are only met by compaction's free scanner targets: a driver
    that fails them for ever is caught there, in --quick too."""
    variant = Mistake(
        "highfail", "MIG-8", "A variant.",
        (Edit("            return -EAGAIN\n",
              "            return -EAGAIN\n"
              "        if page.pfn >= 8:\n"
              "            return -EAGAIN  # the mistake: nothing is in its way\n",
              within="migratepage"),))
    path = tmp_path / "highfail.py"
    path.write_text(variant.render(SIMPLEPOOL.read_text()))
    result = one(path, "MIG-7/compaction", quick=True)
    assert result.verdict == FAIL and result.rule == "MIG-8" and result.hook == "migratepage"
    assert "each time it was tried in SYNC mode with nothing in its way" in result.message
