"""Race scenarios, exploration and replay (mmplug.races) on simplepool, racypool and,
when installed, the bundled balloon and zsmalloc drivers."""

from __future__ import annotations

import importlib.util

import pytest

from mmplug import UsageError, races
from mmplug.races import exploration

GENERIC = ["two_compactors", "free_while_isolated", "free_during_putback",
           "free_read_while_copying", "destroy_while_isolated"]


def installed(name):
    return pytest.mark.skipif(importlib.util.find_spec(f"mmplug_{name}") is None,
                              reason=f"the bundled {name} driver is not installed")


# --- the correct drivers pass ---------------------------------------------------------------

def test_generic_scenarios_apply_to_any_driver(simplepool):
    assert [s.name for s in races.scenarios_for(simplepool)] == GENERIC


@pytest.mark.parametrize("scenario", GENERIC)
@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_simplepool_survives_every_generic_scenario(simplepool, scenario, strategy):
    result = races.explore(simplepool, scenario, strategy=strategy, seed=0, runs=150)
    assert result.ok, result.render()
    assert result.runs == 150


def test_simplepool_free_while_isolated_exhaustive_within_two_preemptions(simplepool):
    result = races.explore(simplepool, "free_while_isolated", strategy="dfs", runs=5000)
    assert result.ok, result.render()
    assert result.exhausted and result.runs > 50


def test_the_scenarios_reach_the_interleavings_they_name(simplepool, monkeypatch):
    """Across seeds, free_while_isolated hits released-while-isolated and plain migration."""
    seen = {}
    common = races.check_common

    def spy(env):
        for key, value in env.vm.vmstat.events.items():
            seen[key] = seen.get(key, 0) + value
        common(env)

    monkeypatch.setattr(exploration, "check_common", spy)
    assert races.explore(simplepool, "free_while_isolated", seed=0, runs=60).ok
    assert seen.get("migrate_released", 0) > 0      # MIG-6/REL-2: driver let go while isolated
    assert seen.get("bytes_copied", 0) > 0          # migration ran before the free
    assert seen.get("isolate_fail_refcount", 0) > 0  # the free won before isolation


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_correct_racypool_passes(racypool, strategy):
    for scenario in GENERIC:
        result = races.explore(racypool, scenario, strategy=strategy, seed=0, runs=80)
        assert result.ok, result.render()


def test_a_pfn_freed_and_reused_by_migration_is_not_taken_for_a_double_isolation(racypool):
    """two_compactors: cpu1 migrates page A away and gets A back as the next newpage."""
    result = races.explore(racypool, "two_compactors", strategy="pct", seed=0, runs=60)
    assert result.ok, result.render()


# --- racy drivers are caught, with a schedule that replays ------------------------------------

def test_wrong_release_of_an_isolated_page_is_caught_and_replays(racypool):
    opts = {"bug": "release"}
    assert races.run_once(racypool, "free_while_isolated", options=opts).ok  # not without a race
    result = races.explore(racypool, "free_while_isolated", seed=0, runs=500, options=opts)
    (fail,) = result.failures
    assert fail.kind == "violation" and fail.rule in ("MIG-6", "PUT-1")
    assert fail.seed is not None and fail.schedule != "-"
    assert fail.replayable
    again = races.replay(racypool, "free_while_isolated", fail.schedule, options=opts)
    assert again.signature() == fail.signature()
    assert f"seed {fail.seed}" in fail.render() and fail.schedule in fail.render()
    assert "--replay " + fail.schedule in fail.render()


def test_wrong_release_during_putback_is_put1(racypool):
    result = races.explore(racypool, "free_during_putback", seed=0, runs=500,
                           options={"bug": "release"})
    (fail,) = result.failures
    assert fail.rule == "PUT-1" and "not PG_isolated" in fail.message and fail.replayable


def test_lock_order_inversion_is_reported_without_the_deadlock(racypool):
    run = races.run_once(racypool, "free_read_while_copying", options={"bug": "order"})
    assert run.kind == "inversion" and run.rule == "LCK-3"
    assert "page lock" in run.message and "'racypool.mutex'" in run.message
    assert "racypool.migratepage" in run.message and "racypool.free" in run.message


def test_lock_order_deadlock_is_found_by_dfs_with_holds_and_waits(racypool):
    result = races.explore(racypool, "free_while_isolated", strategy="dfs", runs=2000,
                           max_failures=2, options={"bug": "order"})
    kinds = {f.kind: f for f in result.failures}
    assert set(kinds) == {"inversion", "deadlock"}
    dead = kinds["deadlock"]
    text = dead.render()
    assert "cpu0 [blocked, in racypool.migratepage] holds page lock" in text
    assert "waits for 'racypool.mutex' held by cpu1" in text
    assert "cpu1 [blocked, in racypool.free] holds 'racypool.mutex'" in text
    assert dead.replayable
    again = races.replay(racypool, "free_while_isolated", dead.schedule,
                         options={"bug": "order"})
    assert again.kind == "deadlock" and again.cpus == dead.cpus


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_same_results(racypool):
    opts = {"bug": "release"}
    a = races.explore(racypool, "free_while_isolated", seed=5, runs=300, options=opts)
    b = races.explore(racypool, "free_while_isolated", seed=5, runs=300, options=opts)
    assert a == b
    (fail,) = a.failures
    # run i of an exploration is the run of seed + i alone
    alone = races.explore(racypool, "free_while_isolated", seed=fail.seed, runs=1, options=opts)
    assert alone.failures[0].schedule == fail.schedule


def test_nondeterministic_driver_is_caught_by_the_check(racypool, simplepool):
    ok = races.check_determinism(simplepool, "free_while_isolated", "0x2-1-0-1x4")
    assert ok.kind == "ok"
    flaky = races.check_determinism(racypool, "free_while_isolated", "0x2-1-0-1x4",
                                    options={"bug": "flaky"})
    assert flaky.kind == "nondeterminism"
    assert "runnable CPUs" in flaky.message


# --- errors a user can make -------------------------------------------------------------------

def test_unknown_scenario_and_strategy_and_bad_schedule_are_usage_errors(simplepool):
    with pytest.raises(UsageError, match="no race scenario 'nope'; scenarios are two_comp"):
        races.explore(simplepool, "nope")
    with pytest.raises(UsageError, match="unknown strategy"):
        races.explore(simplepool, "two_compactors", strategy="bfs")
    with pytest.raises(UsageError, match="schedule"):
        races.replay(simplepool, "two_compactors", "0xq")


# --- the bundled drivers -----------------------------------------------------------------------

@installed("zsmalloc")
def test_zsmalloc_scenarios_pass_when_fixed():
    names = [s.name for s in races.scenarios_for("zsmalloc")]
    assert names == GENERIC + ["zspage_emptied_while_isolated", "zspage_freed_while_migrating"]
    for name in names:
        result = races.explore("zsmalloc", name, seed=0, runs=40)
        assert result.ok, result.render()


@installed("zsmalloc")
@pytest.mark.parametrize("bug,scenario,rule", [
    ("BUG-5", "destroy_while_isolated", "REL-3"),
    ("BUG-6", "zspage_freed_while_migrating", "DRV-Z4"),
])
def test_zsmalloc_bugs_are_caught(bug, scenario, rule):
    result = races.explore("zsmalloc", scenario, seed=0, runs=300, options={"bugs": {bug}})
    (fail,) = result.failures
    assert fail.rule == rule and fail.replayable, fail.render()


@installed("balloon")
def test_balloon_scenarios_select_the_deflate_race():
    names = [s.name for s in races.scenarios_for("balloon")]
    assert "balloon_deflate_vs_migrate" in names and "zspage_emptied_while_isolated" not in names
    result = races.explore("balloon", "balloon_deflate_vs_migrate", seed=0, runs=100)
    assert result.ok, result.render()


@installed("balloon")
@pytest.mark.parametrize("bug,rule", [("BUG-9", "DRV-B3"), ("BUG-12", "BUG-12")])
def test_balloon_bugs_are_caught(bug, rule):
    result = races.explore("balloon", "balloon_deflate_vs_migrate", seed=0, runs=300,
                           options={"bugs": {bug}})
    (fail,) = result.failures
    assert fail.rule == rule and fail.replayable, fail.render()
    if bug == "BUG-9":
        assert "DRV-B3" in fail.message


@installed("z3fold")
@pytest.mark.parametrize("bug,scenario,rule", [
    ("BUG-13", "free_read_while_copying", "API-1"),
    ("BUG-15", "destroy_while_isolated", "BUG-15"),
])
def test_z3fold_bugs_are_caught_by_the_generic_scenarios(bug, scenario, rule):
    assert races.explore("z3fold", scenario, seed=0, runs=60).ok
    result = races.explore("z3fold", scenario, seed=0, runs=500, options={"bugs": {bug}})
    (fail,) = result.failures
    assert fail.rule == rule and fail.replayable, fail.render()
