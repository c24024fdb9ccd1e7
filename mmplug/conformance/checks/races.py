"""Races on several simulated CPUs, explored by the deterministic scheduler (mmplug.races).

Each scenario that applies to the driver (the generic ones: two compactors
isolating the same page, free or read racing migration, destroy while
isolated; then those the driver brings through mmplug_race_scenarios) is run
under seeded random, PCT and bounded exhaustive schedules.  A failure carries
the seed and a schedule string; `--scenario NAME --replay SCHEDULE` (or
`--replay NAME@SCHEDULE`) runs exactly that interleaving again.  The explorer
is imported only when this check runs, so the rest of the suite works without it."""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..outcomes import CheckFailed, NotSupported
from ..registry import Context, check


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
    runs = ctx.size(100, 8)
    for scenario in scenarios:
        for strategy in races.STRATEGIES:
            result = races.explore(ctx.loaded, scenario, strategy=strategy, seed=ctx.seed,
                                   runs=runs, preemption_bound=2, timeout=ctx.timeout)
            failures = list(getattr(result, "failures", ()) or ())
            if failures:
                _report(ctx, scenario, failures[0], f"{strategy}, seed {failures[0].seed}")
    return f"{len(scenarios)} scenario(s) x {len(races.STRATEGIES)} strategies, {runs} runs each"


def _report(ctx: Context, scenario: Any, failure: Any, how: str) -> None:
    """Raise the FAIL of one failed run: its rule, message, CPUs and schedule."""
    name = _name(scenario)
    schedule = getattr(failure, "schedule", "?")
    ctx.repro_extra = f"--scenario {name} --replay {schedule}"
    rule = getattr(failure, "rule", None) or "RACE"
    message = str(getattr(failure, "message", failure))
    rule, message = _rule_of(message) if rule == "RACE" else (rule, _strip_rule(message, rule))
    detail = ""
    render = getattr(failure, "render", None)
    if callable(render):
        extra = [ln.strip() for ln in render().splitlines()[2:]
                 if not ln.strip().startswith("replay:")]
        detail = "".join("\n" + ln for ln in extra)
    raise CheckFailed(rule, f"race {name} ({how}, schedule {schedule}): {message}{detail}")


def _strip_rule(message: str, rule: str) -> str:
    return message[len(rule) + 2:] if message.startswith(rule + ": ") else message


def _replay(ctx: Context, races: Any, scenarios: list) -> str:
    name, sep, schedule = ctx.replay.partition("@")
    if not sep:
        name, schedule = "", ctx.replay
    chosen = [s for s in scenarios if not name or _name(s) == name]
    if not chosen:
        raise UsageError(f"no race scenario {name!r} for this driver; its scenarios are "
                         f"{', '.join(_name(s) for s in scenarios)}")
    for scenario in chosen:
        outcome = races.replay(ctx.loaded, scenario, schedule, timeout=ctx.timeout)
        if _failure_message(outcome):
            _report(ctx, scenario, outcome, "replayed")
    return f"replayed {schedule}"


def _failure_message(outcome: Any) -> str | None:
    if outcome is None or outcome is True or getattr(outcome, "ok", False):
        return None
    if isinstance(outcome, str):
        return outcome or None
    failures = getattr(outcome, "failures", None)
    if failures:
        return getattr(failures[0], "message", str(failures[0]))
    for attr in ("failure", "error", "message"):
        value = getattr(outcome, attr, None)
        if value:
            return str(value)
    return None


def _name(scenario: Any) -> str:
    return getattr(scenario, "name", None) or str(scenario)


def _rule_of(message: str) -> tuple[str, str]:
    """Messages of the core start with their rule id ("REL-2: ..."); others are races'."""
    head, sep, rest = str(message).partition(": ")
    from ...rules import exists
    if sep and exists(head):
        return head, rest
    return "RACE", str(message)
