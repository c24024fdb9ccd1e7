"""Races on several simulated CPUs: scenarios, exploration, replay.

    env.py        RaceEnv, what a scenario's code sees, and the end-of-run checks
    scenarios.py  Scenario, the generic scenarios, and those a driver brings
    exploration.py  run_once, explore, replay, check_determinism, check_driver, shrink
    windows.py    the window strategy: one preemption where a page is isolated
    interleaving.py  a traced run's steps, and the table a failure prints
    results.py    RunResult and ExploreResult: what a run and an exploration found

The public API is imported here: ``from mmplug import races; races.explore(...)``.
"""

from .env import RaceEnv, check_common
from .exploration import (
    STRATEGIES,
    check_determinism,
    check_driver,
    explore,
    replay,
    run_once,
    shrink,
)
from .results import ExploreResult, RunResult
from .scenarios import (
    GENERIC_SCENARIOS,
    RACE_VM,
    Scenario,
    get_scenario,
    load_driver,
    scenarios_for,
)

__all__ = [
    "GENERIC_SCENARIOS", "RACE_VM", "STRATEGIES", "ExploreResult", "RaceEnv", "RunResult",
    "Scenario", "check_common", "check_determinism", "check_driver", "explore", "get_scenario",
    "load_driver", "replay", "run_once", "scenarios_for", "shrink",
]
