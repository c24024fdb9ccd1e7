"""Races on several simulated CPUs, explored by the deterministic scheduler (mmplug.races).

Each scenario that applies to the driver (the generic ones: two compactors
isolating the same page, free or read racing migration, destroy while
isolated; then those the driver brings through mmplug_race_scenarios) is run
first under schedules aimed at its isolation windows (one preemption where a
page is isolated, mmplug.races.windows), then under seeded PCT, random and
bounded exhaustive schedules; --quick keeps the aimed ones and a few PCT runs
of depth 3.  A failure is shrunk to the shortest schedule found that fails
the same way, and printed with its interleaving step by step (CPU, driver
function and line, lock or flag operation) and the schedule string that
replays it: `--scenario NAME --replay SCHEDULE` (or `--replay NAME@SCHEDULE`)
runs exactly that interleaving again and prints the same trace.  The explorer
is imported only when this check runs, so the rest of the suite works without it.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..outcomes import CheckFailed, NotSupported
from ..registry import Context, check

#: (strategy, runs per scenario by default, runs with --quick), in the order they run
PLAN = (("window", 40, 10), ("pct", 100, 6), ("random", 100, 0), ("dfs", 100, 0))
#: the PCT depth: a bug that needs two ordering constraints is found with probability
#: at least 1/(n k^2) per run (Burckhardt et al.)
PCT_DEPTH = 3
#: the most runs shrinking a failure's schedule may take
SHRINK_RUNS = 150


@check("RACE/explore",
       "concurrent isolation, migration, putback and free keep the contract on several CPUs",
       rules=("ISO-5", "REL-2", "MIG-3", "MIG-6", "LCK-1", "LCK-3", "PUT-3"), kind="races")
def explore(ctx: Context) -> str:
    try:
        from ... import races
    except ImportError:
        raise NotSupported("the race explorer (mmplug.races) is not available") from None
    scenarios = list(races.scenarios_for(ctx.loaded))
    if not scenarios:
        raise NotSupported("no race scenario applies to this driver")
    if ctx.replay:
        return _replay(ctx, races, scenarios)
    plan = [(strategy, ctx.size(runs, quick)) for strategy, runs, quick in PLAN]
    plan = [(strategy, runs) for strategy, runs in plan if runs]
    total = len(scenarios) * sum(runs for _, runs in plan)
    done = 0
    ctx.progress(0, total)
    for scenario in scenarios:
        for strategy, runs in plan:
            def ran() -> None:
                nonlocal done
                done += 1
                ctx.progress(done, total)

            result = races.explore(ctx.loaded, scenario, strategy=strategy, seed=ctx.seed,
                                   runs=runs, preemption_bound=2, depth=PCT_DEPTH,
                                   timeout=ctx.timeout, on_run=ran)
            # the runs a strategy did not need (a window search that ran out) count as done
            done += runs - result.runs
            ctx.progress(done, total)
            if result.failures:
                failure = result.failures[0]
                short = races.shrink(ctx.loaded, scenario, failure, max_runs=SHRINK_RUNS,
                                     timeout=ctx.timeout)
                _report(ctx, races, scenario, short, _how(failure), found=failure)
    ctx.progress(total, total)
    shown = ", ".join(f"{strategy} {runs}" for strategy, runs in plan)
    return f"{len(scenarios)} scenario(s); runs per scenario: {shown}"


def _how(failure: Any) -> str:
    seed = f", seed {failure.seed}" if failure.seed is not None else ""
    return f"{failure.strategy}{seed}"


def _report(ctx: Context, races: Any, scenario: Any, failure: Any, how: str,
            found: Any = None) -> None:
    """Raise the FAIL of one failed run: its rule, message, the CPUs, the schedule that
    replays it and the interleaving, step by step."""
    name = scenario.name
    schedule = failure.schedule
    ctx.repro_extra = f"--scenario {name} --replay {schedule}"
    traced = races.replay(ctx.loaded, scenario, schedule, timeout=ctx.timeout, trace=True)
    if traced.signature() == failure.signature():
        failure = traced
    rule = failure.rule or "RACE"
    message = failure.message
    if rule == "RACE":
        rule, message = _rule_of(message)
    lines = [f"race {name} ({how}, schedule {schedule}): {message}"]
    lines += [c.render() for c in failure.cpus
              if c.state != "done" and (failure.kind in ("deadlock", "livelock") or c.holds)]
    lines += [f"also: {inv}" for inv in failure.inversions if inv != failure.message]
    if found is not None and found.schedule != schedule:
        lines.append(f"shortest failing schedule found: {schedule} ({_size(failure)}); as "
                     f"found: {found.schedule} ({_size(found)})")
    if failure.replayable is False:
        lines.append("(the schedule did not reproduce it: the driver is nondeterministic)")
    lines += failure.interleaving()
    raise CheckFailed(rule, "\n".join(lines), hook=failure.hook, page_desc=failure.page,
                      what=failure.what or message, site=failure.site)


def _size(run: Any) -> str:
    return f"{run.departures} preemption(s), {run.steps} steps"


def _replay(ctx: Context, races: Any, scenarios: list[Any]) -> str:
    name, sep, schedule = (ctx.replay or "").partition("@")
    if not sep:
        name, schedule = "", ctx.replay or ""
    chosen = [s for s in scenarios if not name or s.name == name]
    if not chosen:
        raise UsageError(f"no race scenario {name!r} for this driver; its scenarios are "
                         f"{', '.join(s.name for s in scenarios)}")
    for scenario in chosen:
        outcome = races.replay(ctx.loaded, scenario, schedule, timeout=ctx.timeout)
        if not outcome.ok:
            _report(ctx, races, scenario, outcome, "replayed")
    return f"replayed {schedule}"


def _rule_of(message: str) -> tuple[str, str]:
    """Messages of the core start with their rule id ("REL-2: ..."); others are races'."""
    head, sep, rest = str(message).partition(": ")
    from ...rules import exists
    if sep and exists(head):
        return head, rest
    return "RACE", str(message)
