"""Race failures a person can debug: the interleaving step by step, the shortest failing
schedule, and schedules aimed at the isolation windows."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from mmplug import races
from mmplug.cpus.schedule import PartialReplay, ReplayStrategy
from mmplug.races.interleaving import render_steps

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
BROKEN = ROOT / "tests" / "conformance" / "broken"
FREE_NO_RECHECK = str(BROKEN / "free_no_recheck.py")
GENERIC = ["two_compactors", "free_while_isolated", "free_during_putback",
           "free_read_while_copying", "destroy_while_isolated"]


def check_driver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mmplug", "check-driver", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)


# --- the trace ---------------------------------------------------------------------------------

def test_a_traced_run_names_cpu_driver_function_line_and_operation():
    run = races.replay(FREE_NO_RECHECK, "free_while_isolated", "0x9-1", trace=True)
    assert run.kind == "violation" and run.rule == "FLG-5"
    steps = run.steps_trace
    assert [s.index for s in steps] == list(range(1, len(steps) + 1))
    assert {s.cpu for s in steps} == {0, 1}
    driver = [s for s in steps if s.site is not None]
    assert driver and all(s.site.filename == FREE_NO_RECHECK for s in driver)
    free = [s for s in driver if s.site.function == "Pool.free"]
    assert free and {s.cpu for s in free} == {1}
    assert any(s.what == "lock_page" and s.on.startswith("pfn 0x") for s in free)
    assert any(s.what == "blocked on page lock of pfn 0xc0" for s in steps)
    # the VM's own steps name the VM function that asked for them
    assert any(s.site is None and s.vm == "isolate_movable_page" for s in steps)
    # the run ended in Pool.free, where the violation was raised
    assert run.site is not None and run.site.function == "Pool.free"


def test_the_table_folds_vm_steps_and_marks_cpu_switches():
    run = races.replay(FREE_NO_RECHECK, "free_while_isolated", "0x9-1", trace=True)
    lines = render_steps(run.steps_trace, run.cpu)
    assert lines[0].startswith("interleaving (") and "step cpu  code" in lines[1]
    rows = lines[2:-1]
    assert len(rows) < len(run.steps_trace)                 # VM runs folded
    assert any(r.startswith(" >") for r in rows)            # another CPU took over
    assert any(re.search(r"Pool\.free \(free_no_recheck\.py:\d+\)\s+lock_page pfn 0x", r)
               for r in rows)
    assert any("enter migratepage pfn 0x" in r for r in rows)
    assert lines[-1] == f"   found on cpu{run.cpu} after step {len(run.steps_trace)}"


def test_a_race_failure_prints_the_interleaving_and_replay_prints_it_again():
    first = check_driver(FREE_NO_RECHECK, "-k", "RACE", "--quick")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "FLG-5: race free_while_isolated (window, schedule " in first.stdout
    table = [ln for ln in first.stdout.splitlines() if re.match(r"\s+>?\s*\d+\s+\d\s\s", ln)]
    driver_rows = [ln for ln in table if "(free_no_recheck.py:" in ln]
    assert driver_rows and any("Pool.free" in ln for ln in driver_rows)
    repro = re.search(r"reproduce: mmplug check-driver (.*)", first.stdout).group(1)
    again = check_driver(*shlex.split(repro))
    assert again.returncode == 1
    replayed = [ln for ln in again.stdout.splitlines() if re.match(r"\s+>?\s*\d+\s+\d\s\s", ln)]
    assert replayed == table


# --- the shortest failing schedule ---------------------------------------------------------------

def test_shrinking_keeps_the_failure_and_drops_preemptions():
    found = races.explore(FREE_NO_RECHECK, "free_while_isolated", strategy="random", seed=0,
                          runs=50).failures[0]
    short = races.shrink(FREE_NO_RECHECK, "free_while_isolated", found)
    assert short.signature() == found.signature()
    assert (short.departures, short.steps) < (found.departures, found.steps)
    assert short.strategy == found.strategy and short.seed == found.seed
    again = races.run_once(FREE_NO_RECHECK, "free_while_isolated",
                           ReplayStrategy(short.schedule, expect=short.trace))
    assert again.signature() == found.signature()


def test_shrinking_a_run_that_does_not_fail_gives_it_back(simplepool):
    ok = races.run_once(simplepool, "free_while_isolated")
    assert races.shrink(simplepool, "free_while_isolated", ok) is ok


def test_a_partial_replay_follows_what_it_can_and_defaults_elsewhere(simplepool):
    full = races.run_once(simplepool, "free_while_isolated", PartialReplay([0, 0, 1]))
    same = races.run_once(simplepool, "free_while_isolated", PartialReplay([0, None, 1, 7]))
    assert full.schedule == same.schedule and full.ok


# --- the window strategy ----------------------------------------------------------------------

@pytest.mark.parametrize("scenario", GENERIC)
def test_the_window_schedules_pass_a_correct_driver(simplepool, scenario):
    result = races.explore(simplepool, scenario, strategy="window", runs=60)
    assert result.ok, result.render()
    assert result.runs > 0


@pytest.mark.parametrize("driver, scenario", [
    (FREE_NO_RECHECK, "free_while_isolated"),
    (str(BROKEN / "destroy_skips_isolated.py"), "destroy_while_isolated"),
    (str(HERE / "racy_order.py"), "free_while_isolated"),
])
def test_the_window_strategy_finds_race_only_mistakes_in_a_few_runs(driver, scenario):
    result = races.explore(driver, scenario, strategy="window", runs=10)
    assert result.failures and result.runs <= 4, result.render()
    assert result.failures[0].replayable


def test_the_window_schedules_preempt_where_a_page_is_isolated(simplepool):
    from mmplug.races.windows import WindowProbe, window_schedules
    probe = WindowProbe(0)
    assert races.run_once(simplepool, "free_while_isolated", probe).ok
    assert probe.points and all(p.others == (1,) for p in probe.points)
    picks = window_schedules(probe.points, 3)
    assert len(picks) == 3 and all(p[-1] == 1 for p in picks)
    assert picks[0] == [*probe.points[0].picks, 1] and picks[-1] == [*probe.points[-1].picks, 1]
