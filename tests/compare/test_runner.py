"""Running workloads: determinism, knobs, integrity, blocking causes, cost, processes."""

from __future__ import annotations

import pytest
from comparehelp import KNOBPOOL, SIMPLEPOOL, host, tiny, without_wall

from mmplug.compare.machine import Machine
from mmplug.compare.metrics import (
    DRIVER,
    FREE,
    HELD,
    LRU,
    SLAB,
    aggregate,
    blocking_pageblocks,
    gorman_cost,
)
from mmplug.compare.probe import EAGAIN_LAST, PERMANENT, REFUSED
from mmplug.compare.runner import _choose_frees, run_all, run_one, run_workload
from mmplug.vm import VM


def test_same_seed_same_result_other_seed_other_result():
    h = host()
    a = run_one(h, KNOBPOOL, tiny(seed=3))
    b = run_one(h, KNOBPOOL, tiny(seed=3))
    c = run_one(h, KNOBPOOL, tiny(seed=4))
    assert without_wall(a) == without_wall(b)
    assert a["seed"] == 3
    assert without_wall(a)["outcome"] != without_wall(c)["outcome"]


def test_mapped_objects_make_isolation_refused_and_block_pageblocks():
    h = host()
    mapped = run_one(h, KNOBPOOL, tiny(map=0.2, pin=0.0))
    clean = run_one(h, KNOBPOOL, tiny(map=0.0, pin=0.0))
    assert mapped["isolation"]["refused_by_driver"] > 0
    assert mapped["driver_callbacks"]["isolate_page_refused"] == \
        mapped["isolation"]["refused_by_driver"]
    assert mapped["blocking"]["blocking_by_cause"]["refused_isolation"] > 0
    assert clean["isolation"]["refused_by_driver"] == 0
    assert clean["blocking"]["blocking_by_cause"]["refused_isolation"] == 0


def test_pinned_objects_give_eagain_retries_and_never_refusals():
    h = host()
    pinned = run_one(h, KNOBPOOL, tiny(pin=0.2, map=0.0))
    assert pinned["driver_callbacks"]["migratepage_eagain"] > 0
    assert pinned["migration"]["eagain_retries"] >= pinned["driver_callbacks"]["migratepage_eagain"]
    assert pinned["isolation"]["refused_by_driver"] == 0
    assert pinned["blocking"]["blocking_by_cause"]["eagain_until_end"] > 0


def test_a_knob_the_driver_lacks_is_not_used():
    r = run_one(host(), SIMPLEPOOL, tiny(map=0.5))
    assert r["workload_stats"]["maps"] == 0 and r["isolation"]["refused_by_driver"] == 0
    assert "map" not in r["capabilities"]["knobs"]


def test_busy_lock_makes_every_migration_wait():
    r = run_one(host(), KNOBPOOL, tiny(pin=0.0, map=0.0, busy=1.0))
    assert r["workload_stats"]["holds"] == 3           # one per trigger run
    assert r["driver_callbacks"]["migratepage_success"] == 0
    assert r["driver_callbacks"]["migratepage_eagain"] > 0


def test_integrity_is_clean_and_corruption_is_caught():
    h = host()
    r = run_one(h, KNOBPOOL, tiny())
    integ = r["integrity"]
    assert integ["objects_verified"] > 0
    assert (integ["objects_lost"], integ["objects_corrupted"], integ["leaked_pages"]) == (0, 0, 0)
    m = Machine(h.get(KNOBPOOL), h, 2048, 4096)
    run_workload(m, tiny())
    key, handle = next(iter(m.objects.items()))
    st, slot, _ = m.instance.objects[handle]
    view = m.vm.zone.page_address(st.page)
    view[slot * m.instance.size] ^= 0xFF
    got = m.verify()
    assert got["objects_corrupted"] == 1 and f"object {key}" in got["first_problem"]


def test_two_cpus_free_objects_while_compaction_runs_deterministically():
    h = host()
    w = tiny(cpus=2, free_during=0.2, pin=0.0, map=0.0)
    a = run_one(h, KNOBPOOL, w)
    b = run_one(h, KNOBPOOL, w)
    assert a["status"] == "ok", a["error"]
    assert a["cpus"] == 2 and a["workload_stats"]["concurrent_runs"] == 3
    assert without_wall(a) == without_wall(b)
    one = run_one(h, KNOBPOOL, tiny(free_during=0.2, pin=0.0, map=0.0))
    assert one["workload_stats"]["concurrent_runs"] == 0
    # the same objects are freed either way; only the interleaving differs
    assert one["workload_stats"]["frees"] == a["workload_stats"]["frees"]
    assert (a["integrity"]["objects_lost"], a["integrity"]["objects_corrupted"]) == (0, 0)


def test_free_patterns():
    ids = list(range(10))
    assert _choose_frees(ids, 0.5, "alternate", None) == [1, 3, 5, 7, 9]
    assert _choose_frees(ids, 0.3, "oldest", None) == [0, 1, 2]
    assert _choose_frees(ids, 0.3, "newest", None) == [7, 8, 9]
    import random
    picked = _choose_frees(ids, 0.4, "random", random.Random(1))
    assert len(set(picked)) == 4 and picked == _choose_frees(ids, 0.4, "random", random.Random(1))


def test_blocking_causes_in_order_and_the_ceiling():
    vm = VM(nr_pages=3072)
    pb = 512
    owners = bytearray([FREE]) * (6 * pb)
    owners[0:pb] = bytes([DRIVER]) * pb                  # block 0: a refused page
    owners[pb:2 * pb] = bytes([DRIVER]) * pb             # block 1: -EAGAIN and permanent
    owners[2 * pb] = SLAB                                 # block 2: slab wins over anything
    owners[2 * pb + 1] = DRIVER
    owners[3 * pb:4 * pb] = bytes([HELD]) * pb           # block 3: a held order-9 block
    owners[4 * pb + 7] = LRU                              # block 4: not reached
    for p in vm.zone.pages[:2 * pb]:
        p.mapping = 0x1002                                # tagged movable
    vm.zone.pages[2 * pb + 1].mapping = 0x1002
    last = {5: REFUSED, 6: EAGAIN_LAST, pb + 1: EAGAIN_LAST, pb + 2: PERMANENT, 2 * pb + 1: REFUSED}
    got = blocking_pageblocks(vm, bytes(owners), last, [(3 * pb, 9)])
    assert got["blocking_by_cause"] == {
        "unmovable": 1, "driver_not_movable": 0, "refused_isolation": 1,
        "permanent_failure": 1, "eagain_until_end": 0, "target_or_not_reached": 1}
    assert (got["free_pageblocks"], got["held_pageblocks"], got["obtained"]) == (1, 1, 2)
    # 6 blocks, 1 unmovable with 510 free pages; the 1025 movable pages elsewhere fill
    # those 510 and need 2 more blocks: at best 3 (empty block 4 into block 2's holes)
    assert got["ceiling"] == 3 and got["efficiency"] == round(2 / 3, 4)


def test_driver_page_without_movable_tag_is_its_own_cause():
    vm = VM(nr_pages=512)
    owners = bytes([DRIVER]) + bytes(511)
    got = blocking_pageblocks(vm, owners, {}, [])
    assert got["blocking_by_cause"]["driver_not_movable"] == 1


def test_gorman_cost_model():
    ev = {"compact_migrate_scanned": 10, "compact_free_scanned": 20, "compact_isolated": 3,
          "pgmigrate_success": 2, "pgmigrate_fail": 1}
    c = gorman_cost(ev, 4096)
    # Ca = 64/8 = 8; Cmc = (8 + 512) * 2; Cmf = 16; Ci = 8 + 16
    assert c["total"] == 8 * 10 + 8 * 20 + 24 * 3 + 1040 * 2 + 16 * 1


def test_aggregate_mean_and_spread():
    agg = aggregate([{"a": {"b": 1}, "s": "0.500"}, {"a": {"b": 3}, "s": "0.700"}])
    assert agg["a.b"] == {"mean": 2.0, "stdev": 1.4142, "min": 1.0, "max": 3.0, "n": 2}
    assert agg["s"]["mean"] == 0.6


@pytest.mark.slow
def test_processes_give_the_same_results_as_one():
    h = host()
    seeds = [1, 2]
    one = run_all(h, [KNOBPOOL], tiny(), seeds, jobs=1)
    two = run_all(h, [KNOBPOOL], tiny(), seeds, jobs=2)
    assert [without_wall(r) for r in one[0]] == [without_wall(r) for r in two[0]]
    assert [r["seed"] for r in two[0]] == seeds


def test_a_driver_that_breaks_the_contract_is_reported_not_fatal(tmp_path):
    bad = tmp_path / "leaky.py"
    bad.write_text(open(KNOBPOOL).read().replace(
        "    clear_page_movable(page)\n    page.private = 0\n    put_page(page)\n"
        "    return MIGRATEPAGE_SUCCESS",
        "    return MIGRATEPAGE_SUCCESS").replace('name="knobpool"', 'name="leaky"'))
    r = run_one(host(), str(bad), tiny(pin=0.0, map=0.0))
    assert r["status"] == "failed"
    assert "MIG-7" in r["error"] and "leaky" in r["error"] and "migratepage" in r["error"]
