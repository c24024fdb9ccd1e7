"""Exploring race scenarios on several simulated CPUs, and replaying what they found.

The API `mmplug check-driver --races` uses:

    from mmplug import races
    for scenario in races.scenarios_for(loaded_driver):
        result = races.explore(driver, scenario, strategy="random", seed=0, runs=1000)
        print(result.render())          # every failure with its seed and schedule
    run = races.replay(driver, "free_while_isolated", "0x3-1-0", trace=True)
    print(run.render())                 # with the interleaving, step by step
    run = races.check_determinism(driver, "free_while_isolated", "0x3-1-0")
    short = races.shrink(driver, "free_while_isolated", failure)

`driver` is an entry-point name, a module path or a .py file (as
PluginHost.load takes), a LoadedDriver, or a plugin object.  Strategies:
"random" (seeded, run i uses seed + i), "pct" (depth `depth`), "dfs"
(every schedule within `preemption_bound` preemptions, or `runs` of them)
and "window" (one preemption in each isolation window, mmplug.races.windows).
The same driver, scenario, strategy and seed give the same runs and results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import attrs

from ..cpus.schedule import (
    DFSSearch,
    PartialReplay,
    PCTStrategy,
    RandomStrategy,
    ReplayStrategy,
    Strategy,
    decode_schedule,
)
from ..cpus.scheduler import DEFAULT_MAX_STEPS, Outcome, Scheduler
from ..drivercode import DriverCode
from ..errors import UsageError
from ..plugins import LoadedDriver
from ..vm import VM
from .env import RaceEnv, check_common
from .interleaving import Recorder
from .results import ExploreResult, RunResult, classify
from .scenarios import Scenario, get_scenario, load_driver, scenarios_for
from .windows import WindowPoint, WindowProbe, window_schedules

#: the ways of exploring: seeded random, PCT, bounded exhaustive (mmplug.cpus.schedule),
#: and one preemption in each isolation window (mmplug.races.windows)
STRATEGIES = ("random", "pct", "dfs", "window")


def run_once(driver: Any, scenario: Scenario | str, strategy: Strategy | None = None, *,
             max_steps: int = DEFAULT_MAX_STEPS, options: dict[str, Any] | None = None,
             timeout: float | None = None, trace: bool = False) -> RunResult:
    """One run of `scenario` on a fresh VM under `strategy` (default: the default policy).

    `timeout` is the time limit of one driver call (default: the scenario's
    VMConfig); `trace` records every step (RunResult.steps_trace).
    """
    loaded = load_driver(driver)
    result, _ = _run(loaded, get_scenario(scenario, loaded), strategy or Strategy(),
                     max_steps=max_steps, options=options, timeout=timeout, trace=trace)
    return result


def _run(loaded: LoadedDriver, sc: Scenario, strategy: Strategy, *, max_steps: int,
         options: dict[str, Any] | None, timeout: float | None,
         trace: bool = False) -> tuple[RunResult, Outcome | None]:
    """One run, and the scheduler's Outcome (None if setup failed)."""
    name = loaded.info.name
    code = DriverCode.of(loaded)
    sched = Scheduler(cpus=len(sc.cpus), max_steps=max_steps)
    recorder = Recorder(code) if trace else None
    config = sc.config if timeout is None else attrs.evolve(sc.config, callback_timeout=timeout)
    vm = VM(config, cpus=sched)
    base = RunResult(driver=name, scenario=sc.name, strategy=strategy.name, seed=strategy.seed,
                     schedule="-", kind="ok")
    try:
        instance = vm.create_from(loaded, **(options or {}))
        env = RaceEnv.create(vm, instance, sched)
        sc.setup(env)
    except Exception as exc:
        end = classify(exc, code)
        return attrs.evolve(base, kind=end.kind, rule=end.rule, message=f"setup: {end.message}",
                            hook=end.hook, page=end.page, site=end.site, what=end.what), None
    attach = getattr(strategy, "attach", None)
    if callable(attach):
        attach(env)
    sched.recorder = recorder
    out = sched.run([partial(body, env) for body in sc.cpus], strategy)
    sched.recorder = None
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
                       inversions=inversions, trace=out.trace, departures=out.departures,
                       steps_trace=tuple(recorder.steps) if recorder is not None else ())
    if out.deadlock:
        return attrs.evolve(ran, kind="deadlock", rule="LCK-3", cpu=None, message=(
            "deadlock: every CPU that has not finished is blocked")), out
    if out.livelock:
        return attrs.evolve(ran, kind="livelock", message=(
            f"no end after {max_steps} schedule points: a CPU spins without progress")), out
    if error is not None:
        end = classify(error, code)
        msg = f"deadlock: {end.message}" if end.kind == "deadlock" else end.message
        return attrs.evolve(ran, kind=end.kind, rule=end.rule, message=msg, cpu=out.error_cpu,
                            hook=end.hook, page=end.page, site=end.site, what=end.what), out
    if inversions:
        return attrs.evolve(ran, kind="inversion", rule="LCK-3", message=inversions[0]), out
    return ran, out


def replay(driver: Any, scenario: Scenario | str, schedule: str, *,
           max_steps: int = DEFAULT_MAX_STEPS, options: dict[str, Any] | None = None,
           timeout: float | None = None, trace: bool = False) -> RunResult:
    """Run `scenario` again under `schedule` (as printed by a failure): the same result;
    with `trace`, the interleaving step by step."""
    try:
        decode_schedule(schedule)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return run_once(driver, scenario, ReplayStrategy(schedule), max_steps=max_steps,
                    options=options, timeout=timeout, trace=trace)


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
            timeout: float | None = None,
            on_run: Callable[[], object] | None = None) -> ExploreResult:
    """Run `scenario` under many schedules; collect distinct failures with their schedules.

    random: run i uses seed + i.  pct: one run under the default policy
    measures the number of choice points k, then run i uses PCT(seed + i,
    depth, k).  dfs: schedules in depth-first order within `preemption_bound`
    preemptions, up to `runs` of them (`exhausted` says whether all were run).
    window: one preemption at each choice point where a page is isolated, up
    to `runs` of them spread over the window (mmplug.races.windows).
    Each failure is replayed once with the nondeterminism check, so
    `replayable` says whether its schedule reproduces it.  Stops after
    `max_failures` distinct failures.  `on_run` is called after every run.
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
    aimed: list[list[int]] = []
    if strategy == "window":
        aimed, probes = _window_schedules(loaded, sc, runs, run)
        failures += _distinct_failures(probes, seen, run, loaded, sc, max_failures)
    done = 0
    for i in range(runs):
        if len(failures) >= max_failures:
            break
        if dfs is not None:
            strat: Strategy | None = dfs.next_strategy()
            if strat is None:
                break
        elif strategy == "window":
            if i >= len(aimed):
                break
            strat = PartialReplay(aimed[i], name="window")
        elif strategy == "pct":
            strat = PCTStrategy(seed + i, len(sc.cpus), depth, length)
        else:
            strat = RandomStrategy(seed + i)
        result = run(loaded, sc, strat)
        done += 1
        if on_run is not None:
            on_run()
        failures += _distinct_failures([result], seen, run, loaded, sc,
                                       max_failures - len(failures))
    exhausted = (dfs is not None and dfs.exhausted) or (strategy == "window" and
                                                        done == len(aimed))
    return ExploreResult(name, sc.name, strategy, seed, done, tuple(failures), exhausted)


def _distinct_failures(results: list[RunResult], seen: set[str], run: Callable[..., RunResult],
                       loaded: LoadedDriver, sc: Scenario, room: int) -> list[RunResult]:
    """The failures among `results` not seen before (at most `room`), each replayed once
    with the nondeterminism check to say whether its schedule reproduces it."""
    out: list[RunResult] = []
    for result in results:
        if result.ok or len(out) >= room:
            continue
        sig = result.signature()
        if sig in seen:
            continue
        seen.add(sig)
        again = run(loaded, sc, ReplayStrategy(result.schedule, expect=result.trace))
        out.append(attrs.evolve(result, replayable=again.signature() == sig))
    return out


def _window_schedules(loaded: LoadedDriver, sc: Scenario, limit: int,
                      run: Callable[..., RunResult]) -> tuple[list[list[int]], list[RunResult]]:
    """The window strategy's schedules (each CPU in turn starting a probe run), and the
    probe runs themselves (a probe may fail on its own)."""
    points: list[WindowPoint] = []
    probes = []
    for start in range(len(sc.cpus)):
        probe = WindowProbe(start)
        probes.append(run(loaded, sc, probe))
        points += probe.points
    return window_schedules(points, limit), probes


def shrink(driver: Any, scenario: Scenario | str, failure: RunResult, *, max_runs: int = 150,
           max_steps: int = DEFAULT_MAX_STEPS, options: dict[str, Any] | None = None,
           timeout: float | None = None) -> RunResult:
    """The shortest schedule found that fails the same way as `failure` (same signature).

    Delta debugging over the schedule's departures from the default policy
    (Zeller and Hildebrandt, TSE 2002): sets of departures are given back to
    the default policy, and a run that still ends in the same failure with
    fewer departures, or as many and fewer steps, is kept.  At most
    `max_runs` runs; the failure itself if nothing shorter fails the same way.
    """
    if failure.ok:
        return failure
    loaded = load_driver(driver)
    sc = get_scenario(scenario, loaded)
    target = failure.signature()

    def attempt(strategy: Strategy) -> tuple[RunResult, Outcome | None]:
        return _run(loaded, sc, strategy, max_steps=max_steps, options=options,
                    timeout=timeout)

    best, out = attempt(ReplayStrategy(failure.schedule))
    if out is None or best.signature() != target:
        return failure
    choices, defaults = out.choices, out.defaults
    runs, chunks = 1, 2
    while runs < max_runs:
        departures = [i for i, (c, d) in enumerate(zip(choices, defaults, strict=True)) if c != d]
        if not departures:
            break
        chunks = min(chunks, len(departures))
        size = -(-len(departures) // chunks)
        kept = False
        for k in range(0, len(departures), size):
            dropped = set(departures[k:k + size])
            res, got = attempt(PartialReplay([None if i in dropped else c
                                              for i, c in enumerate(choices)]))
            runs += 1
            if got is not None and res.signature() == target and \
                    (res.departures, res.steps) < (best.departures, best.steps):
                best, choices, defaults = res, got.choices, got.defaults
                chunks, kept = max(chunks - 1, 2), True
                break
            if runs >= max_runs:
                break
        if not kept:
            if chunks >= len(departures):
                break
            chunks = min(2 * chunks, len(departures))
    return attrs.evolve(best, strategy=failure.strategy, seed=failure.seed,
                        replayable=failure.replayable)


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

