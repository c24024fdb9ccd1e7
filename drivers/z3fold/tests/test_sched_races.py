"""The project's race explorer (mmplug.races) on z3fold: the generic scenarios find nothing
in the fixed driver, and they catch the pre-fix variants of BUG-13 and BUG-15 with a
replayable schedule."""

from __future__ import annotations

import pytest

races = pytest.importorskip("mmplug.races")


@pytest.mark.parametrize("strategy", ["random", "pct", "dfs"])
def test_generic_scenarios_find_no_failure_in_the_fixed_driver(strategy):
    loaded = races.load_driver("z3fold")
    scenarios = races.scenarios_for(loaded)
    assert {s.name for s in scenarios} >= {"free_read_while_copying", "destroy_while_isolated"}
    for scenario in scenarios:
        result = races.explore(loaded, scenario, strategy=strategy, seed=11, runs=120)
        assert not result.failures, result.failures[0]


@pytest.mark.parametrize("bug, scenario, rules", [
    ("BUG-13", "free_read_while_copying", {"API-1", "DRV-3F5", "REF-1"}),
    ("BUG-15", "destroy_while_isolated", {"BUG-15"}),
])
def test_the_pre_fix_variants_are_caught_and_replay(bug, scenario, rules):
    result = races.explore("z3fold", scenario, strategy="random", seed=0, runs=400,
                           options={"bugs": {bug}})
    assert result.failures, f"{bug} not found in {result.runs} runs"
    failure = result.failures[0]
    assert failure.rule in rules, failure
    again = races.replay("z3fold", scenario, failure.schedule, options={"bugs": {bug}})
    assert (again.kind, again.rule) == (failure.kind, failure.rule)


def _reclaim_setup(env):
    pool = env.instance
    env.notes["written"] = written = {}
    pool.evict = pool.writeback_evict(written)
    for i in range(3):
        env.store(env.payload(i, size=600))
    env.targets = env.pages()
    env.notes["handles"] = sorted(env.objects)


def _shrink(env):
    env.instance.shrink(1)


def _user_frees(env):
    for handle in env.notes["handles"][:2]:
        try:
            env.instance.free(handle)  # zswap's invalidate: a missing entry is no error
        except KeyError:
            pass
        env.objects.pop(handle, None)


def _reclaim_check(env):
    for handle, data in env.notes["written"].items():
        assert env.objects.pop(handle, None) in (None, data)
    env.instance.run_workqueues()


def _reclaim_scenario():
    return races.Scenario(
        "z3fold_reclaim_vs_free", ("BUG-14", "REF-1"),
        "reclaim evicts a page's objects while the user frees some of them",
        _reclaim_setup, (_shrink, _user_frees), _reclaim_check)


@pytest.mark.slow
def test_reclaim_racing_free_holds_in_every_schedule_tried():
    for strategy in ("random", "pct", "dfs"):
        result = races.explore("z3fold", _reclaim_scenario(), strategy=strategy, seed=5, runs=300)
        assert not result.failures, result.failures[0]


def test_bug14_reclaim_racing_free_is_caught():
    result = races.explore("z3fold", _reclaim_scenario(), strategy="random", seed=5, runs=300,
                           options={"bugs": {"BUG-14"}})
    assert result.failures and result.failures[0].rule == "REF-1", result.failures
