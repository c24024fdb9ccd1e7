"""Race scenarios: the generic ones, and those a driver brings.

A `Scenario` sets up a fresh VM and driver instance, then runs one body per
simulated CPU and checks the result.  The generic scenarios use only the
instance protocol and the VM's own isolate_movable_page / migrate_pages /
putback_movable_pages, so they apply to any driver (some only to a driver
whose capabilities allow them).  A driver adds the races its kernel history
shows through its `mmplug_race_scenarios` hook: what a driver brings is found
by what it is, never by the name it was loaded under.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen

from ..errors import ContractViolation, DriverError, UsageError
from ..plugins import Capabilities, LoadedDriver, PluginHost
from ..vm import VMConfig
from .env import RaceEnv

#: a small machine: races need few pages, and each run builds a fresh one
RACE_VM = VMConfig(nr_pages=256, pageblock_order=5, max_order=7, min_free_pages=1)


def _always(capabilities: Capabilities) -> bool:
    return True


@frozen(slots=True)
class Scenario:
    """A race: setup on one CPU, one body per CPU run concurrently, a final check.

    `rules` are the contract rules it exercises; `applies(capabilities)` says
    whether it makes sense for a driver that declares them.  The common
    end-of-run checks (nothing left isolated or locked, every live object reads
    back, verify(), no leaked page, no VM warning) run after `check`.
    """

    name: str
    rules: tuple[str, ...]
    summary: str
    setup: Callable[[RaceEnv], object]
    cpus: tuple[Callable[[RaceEnv], object], ...]
    check: Callable[[RaceEnv], object] | None = None
    applies: Callable[[Capabilities], bool] = _always
    config: VMConfig = RACE_VM


def _objects(n: int) -> Callable[[RaceEnv], None]:
    def setup(env: RaceEnv) -> None:
        env.store_objects(n)
    return setup


def _read_free_read(env: RaceEnv) -> None:
    first, *rest = env.notes["handles"]
    for h in rest:
        env.read(h)
    env.free(first)
    for h in rest:
        env.read(h)


def _frees_isolated(capabilities: Capabilities) -> bool:
    return capabilities.free_while_isolated


def _check_two_compactors(env: RaceEnv) -> None:
    for lists in env.isolating.values():
        if any(held.pages for held in lists):
            raise ContractViolation("PUT-3", "a compactor ended with pages still isolated",
                                    driver=env.driver)


TWO_COMPACTORS = Scenario(
    "two_compactors", ("ISO-5", "ISO-1", "PUT-3"),
    "two compactors scan the same pages: a page isolated by one is skipped by the other",
    _objects(3), (RaceEnv.compact, RaceEnv.compact), _check_two_compactors)

FREE_WHILE_ISOLATED = Scenario(
    "free_while_isolated", ("REL-1", "REL-2", "MIG-3", "MIG-6", "BUG-4"),
    "the only object of a page is freed while a compactor isolates and migrates the page",
    _objects(1), (RaceEnv.compact, RaceEnv.free_all), None, _frees_isolated)

FREE_DURING_PUTBACK = Scenario(
    "free_during_putback", ("REL-2", "PUT-1", "PUT-3"),
    "the only object of a page is freed while the page is isolated and then put back",
    _objects(1), (RaceEnv.isolate_then_putback, RaceEnv.free_all), None, _frees_isolated)

FREE_READ_WHILE_COPYING = Scenario(
    "free_read_while_copying", ("BUG-7", "BUG-13", "MIG-7", "API-1"),
    "objects are read and one is freed while their page is being migrated",
    _objects(3), (RaceEnv.compact, _read_free_read), None, _frees_isolated)

DESTROY_WHILE_ISOLATED = Scenario(
    "destroy_while_isolated", ("BUG-5", "REL-3", "REL-2"),
    "the instance is destroyed while a compactor holds one of its pages isolated",
    _objects(2), (RaceEnv.compact, RaceEnv.destroy), None, _frees_isolated)

#: the scenarios of every driver, in the order check-driver runs them
GENERIC_SCENARIOS: tuple[Scenario, ...] = (
    TWO_COMPACTORS, FREE_WHILE_ISOLATED, FREE_DURING_PUTBACK, FREE_READ_WHILE_COPYING,
    DESTROY_WHILE_ISOLATED,
)


def driver_scenarios(loaded: LoadedDriver) -> list[Scenario]:
    """The scenarios the driver brings (its mmplug_race_scenarios hook); API-1 if the
    hook gives anything but scenarios."""
    scenarios = loaded.brought("mmplug_race_scenarios")
    for sc in scenarios:
        if not isinstance(sc, Scenario):
            raise DriverError("API-1", f"mmplug_race_scenarios() gave {type(sc).__name__} "
                              f"{sc!r:.60}, not an mmplug.Scenario", driver=loaded.name,
                              hook="mmplug_race_scenarios")
    names = [sc.name for sc in scenarios]
    clash = sorted({n for n in names if names.count(n) > 1}
                   | {sc.name for sc in GENERIC_SCENARIOS if sc.name in names})
    if clash:
        raise DriverError("API-1", f"mmplug_race_scenarios() gave a scenario named "
                          f"{clash[0]!r} twice or like a generic one", driver=loaded.name,
                          hook="mmplug_race_scenarios")
    return scenarios


def load_driver(driver: Any) -> LoadedDriver:
    """A LoadedDriver from a spec string, a LoadedDriver or a plugin object."""
    if isinstance(driver, LoadedDriver):
        return driver
    host = PluginHost()
    if isinstance(driver, str):
        return host.get(driver)
    loaded = host.register(driver)
    if not isinstance(loaded, LoadedDriver):
        raise UsageError(f"driver {loaded.name!r} failed to load: {loaded.reason}")
    return loaded


def scenarios_for(driver: Any) -> list[Scenario]:
    """The scenarios that apply to a driver (a spec, a LoadedDriver or a plugin object):
    the generic ones, then its own."""
    loaded = load_driver(driver)
    caps = loaded.info.capabilities
    return [sc for sc in GENERIC_SCENARIOS if sc.applies(caps)] + driver_scenarios(loaded)


def get_scenario(name: str | Scenario, loaded: LoadedDriver | None = None) -> Scenario:
    """A scenario by name, among the generic ones and those `loaded` brings; UsageError
    listing the names if there is none."""
    if isinstance(name, Scenario):
        return name
    known = list(GENERIC_SCENARIOS) + (driver_scenarios(loaded) if loaded is not None else [])
    for sc in known:
        if sc.name == name:
            return sc
    raise UsageError(f"no race scenario {name!r}; scenarios are "
                     f"{', '.join(s.name for s in known)}")


__all__ = ["GENERIC_SCENARIOS", "RACE_VM", "Scenario", "driver_scenarios", "get_scenario",
           "load_driver", "scenarios_for"]
