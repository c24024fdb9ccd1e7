"""Exploring race scenarios on several simulated CPUs, and replaying what they found.

The API `mmplug check-driver --races` uses:

    from mmplug import races
    for scenario in races.scenarios_for(loaded_driver):
        result = races.explore(driver, scenario, strategy="random", seed=0, runs=1000)
        print(result.render())          # every failure with its seed and schedule
    run = races.replay(driver, "free_while_isolated", "0x3-1-0")
    run = races.check_determinism(driver, "free_while_isolated", "0x3-1-0")

`driver` is an entry-point name, a module path or a .py file (as
PluginHost.load takes), a LoadedDriver, or a plugin object.  Strategies:
"random" (seeded, run i uses seed + i), "pct" (depth `depth`) and "dfs"
(every schedule within `preemption_bound` preemptions, or `runs` of them).
The same driver, scenario, strategy and seed give the same runs and results.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import attrs

from ..cpus.schedule import (
    DFSSearch, PCTStrategy, RandomStrategy, ReplayStrategy, Strategy, decode_schedule,
)
from ..cpus.scheduler import DEFAULT_MAX_STEPS, Scheduler
from ..errors import UsageError
from ..vm import VM
from .env import RaceEnv, check_common
from .results import ExploreResult, RunResult, classify
from .scenarios import Scenario, get_scenario, load_driver, scenarios_for

#: the ways of exploring: seeded random, PCT, bounded exhaustive (mmplug.cpus.schedule)
STRATEGIES = ("random", "pct", "dfs")


def run_once(driver: Any, scenario: Scenario | str, strategy: Strategy | None = None, *,
             max_steps: int = DEFAULT_MAX_STEPS, options: dict[str, Any] | None = None,
             timeout: float | None = None) -> RunResult:
    """One run of `scenario` on a fresh VM under `strategy` (default: the default policy).

    `timeout` is the time limit of one driver call (default: the scenario's VMConfig).
    """
    loaded = load_driver(driver)
    sc = get_scenario(scenario, loaded)
    strategy = strategy or Strategy()
    name = loaded.info.name
    sched = Scheduler(cpus=len(sc.cpus), max_steps=max_steps)
    config = sc.config if timeout is None else attrs.evolve(sc.config, callback_timeout=timeout)
    vm = VM(config, cpus=sched)
    base = RunResult(driver=name, scenario=sc.name, strategy=strategy.name, seed=strategy.seed,
                     schedule="-", kind="ok")
    try:
        instance = vm.create_from(loaded, **(options or {}))
        env = RaceEnv.create(vm, instance, sched)
        sc.setup(env)
    except Exception as exc:
        kind, rule, msg = classify(exc)
        return attrs.evolve(base, kind=kind, rule=rule, message=f"setup: {msg}")
    out = sched.run([partial(body, env) for body in sc.cpus], strategy)
    error = out.error
    if error is None and not out.deadlock and not out.livelock:
        try:
            if sc.check is not None:
                sc.check(env)
            check_common(env)
        except Exception as exc:
            error = exc
    lockdep = sched.lockdep
    inversions = tuple(inv.render() for inv in lockdep.inversions) if lockdep else ()
    ran = attrs.evolve(base, schedule=out.schedule, steps=out.steps, cpus=out.cpus,
                       inversions=inversions, trace=out.trace)
    if out.deadlock:
        return attrs.evolve(ran, kind="deadlock", rule="LCK-3", cpu=None, message=(
            "deadlock: every CPU that has not finished is blocked"))
    if out.livelock:
        return attrs.evolve(ran, kind="livelock", message=(
            f"no end after {max_steps} schedule points: a CPU spins without progress"))
    if error is not None:
        kind, rule, msg = classify(error)
        if kind == "deadlock":
            msg = f"deadlock: {msg}"
        return attrs.evolve(ran, kind=kind, rule=rule, message=msg, cpu=out.error_cpu)
    if inversions:
        return attrs.evolve(ran, kind="inversion", rule="LCK-3", message=inversions[0])
    return ran


def replay(driver: Any, scenario: Scenario | str, schedule: str, *,
           max_steps: int = DEFAULT_MAX_STEPS, options: dict[str, Any] | None = None,
           timeout: float | None = None) -> RunResult:
    """Run `scenario` again under `schedule` (as printed by a failure): the same result."""
    try:
        decode_schedule(schedule)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return run_once(driver, scenario, ReplayStrategy(schedule), max_steps=max_steps,
                    options=options, timeout=timeout)


def check_determinism(driver: Any, scenario: Scenario | str, schedule: str, *,
                      max_steps: int = DEFAULT_MAX_STEPS, options: dict[str, Any] | None = None,
                      timeout: float | None = None) -> RunResult:
    """Replay `schedule` twice; the second must see the same runnable CPUs at every step.

    Returns the second run, of kind "nondeterminism" if they differed.
    """
    driver = load_driver(driver)  # once: a module's state must carry over, as it would
    first = replay(driver, scenario, schedule, max_steps=max_steps, options=options,
                   timeout=timeout)
    strategy = ReplayStrategy(schedule, expect=first.trace)
    second = run_once(driver, scenario, strategy, max_steps=max_steps, options=options,
                      timeout=timeout)
    if second.kind != "nondeterminism" and second.signature() != first.signature():
        return RunResult(driver=second.driver, scenario=second.scenario, strategy="replay",
                         seed=None, schedule=schedule, kind="nondeterminism", message=(
                             f"the same schedule ended two ways: {first.kind} "
                             f"({first.message}) then {second.kind} ({second.message})"))
    return second


def explore(driver: Any, scenario: Scenario | str, *, strategy: str = "random", seed: int = 0,
            runs: int = 1000, preemption_bound: int = 2, depth: int = 3, max_failures: int = 1,
            max_steps: int = DEFAULT_MAX_STEPS, options: dict[str, Any] | None = None,
            timeout: float | None = None) -> ExploreResult:
    """Run `scenario` under many schedules; collect distinct failures with their schedules.

    random: run i uses seed + i.  pct: one run under the default policy
    measures the number of choice points k, then run i uses PCT(seed + i,
    depth, k).  dfs: schedules in depth-first order within `preemption_bound`
    preemptions, up to `runs` of them (`exhausted` says whether all were run).
    Each failure is replayed once with the nondeterminism check, so
    `replayable` says whether its schedule reproduces it.  Stops after
    `max_failures` distinct failures.
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if runs < 1:
        raise UsageError("runs must be at least 1")
    if strategy == "pct" and depth < 1:
        raise UsageError("the PCT depth must be at least 1")
    loaded = load_driver(driver)
    sc = get_scenario(scenario, loaded)
    name = loaded.info.name
    failures: list[RunResult] = []
    seen: set[str] = set()
    run = partial(run_once, max_steps=max_steps, options=options, timeout=timeout)
    dfs = DFSSearch(preemption_bound) if strategy == "dfs" else None
    length = 0
    if strategy == "pct":
        calib = run(loaded, sc, None)
        length = max(len(calib.trace), 1)
    done = 0
    for i in range(runs):
        if dfs is not None:
            strat: Strategy | None = dfs.next_strategy()
            if strat is None:
                break
        elif strategy == "pct":
            strat = PCTStrategy(seed + i, len(sc.cpus), depth, length)
        else:
            strat = RandomStrategy(seed + i)
        result = run(loaded, sc, strat)
        done += 1
        if result.ok:
            continue
        sig = result.signature()
        if sig in seen:
            continue
        seen.add(sig)
        again = run(loaded, sc, ReplayStrategy(result.schedule, expect=result.trace))
        result = attrs.evolve(result, replayable=again.signature() == sig)
        failures.append(result)
        if len(failures) >= max_failures:
            break
    exhausted = dfs is not None and dfs.exhausted
    return ExploreResult(name, sc.name, strategy, seed, done, tuple(failures), exhausted)


def check_driver(driver: Any, *, strategy: str = "random", seed: int = 0, runs: int = 1000,
                 preemption_bound: int = 2, depth: int = 3, scenarios: Sequence[str] | None = None,
                 max_failures: int = 1, options: dict[str, Any] | None = None,
                 timeout: float | None = None) -> list[ExploreResult]:
    """Explore every applicable scenario (or the named ones) on a driver."""
    loaded = load_driver(driver)
    chosen = ([get_scenario(n, loaded) for n in scenarios] if scenarios
              else scenarios_for(loaded))
    return [explore(loaded, sc, strategy=strategy, seed=seed, runs=runs,
                    preemption_bound=preemption_bound, depth=depth, max_failures=max_failures,
                    options=options, timeout=timeout) for sc in chosen]

