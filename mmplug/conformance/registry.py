"""How a check is declared and what it is given to run.

A check is a function `fn(ctx) -> str | None` wrapped by `@check(...)`; it
returns nothing (OK) or a note, raises `NotSupported`, `CheckFailed`, or lets a
`ContractViolation` from the core through.  The modules of
`mmplug.conformance.checks` declare them; `all_checks()` lists them in order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen

from ..plugins import LoadedDriver, PluginHost
from .bench import Bench
from .model import CheckSpec


@frozen(slots=True)
class Check:
    """A check's spec and the function that runs it."""

    spec: CheckSpec
    fn: Callable[[Context], Any]


def check(id: str, title: str, *, rules: tuple[str, ...] = (), needs: tuple[str, ...] = (),
          kind: str = "directed") -> Callable[[Callable[..., Any]], Check]:
    """Declare a check; its first rule is the id before the slash."""
    first = id.split("/", 1)[0]
    all_rules = (first,) + tuple(r for r in rules if r != first)

    def wrap(fn: Callable[..., Any]) -> Check:
        return Check(CheckSpec(id=id, rules=all_rules, title=title, needs=tuple(needs),
                               kind=kind), fn)

    return wrap


@define(slots=True, eq=False)
class Context:
    """What one check runs with: the driver, the options, and the benches it made."""

    loaded: LoadedDriver
    host: PluginHost
    seed: int
    check_id: str
    quick: bool = False
    max_examples: int | None = None
    replay: str | None = None
    driver_spec: str = ""
    benches: list[Bench] = field(factory=list)
    #: extra words for the reproduction command (e.g. --replay SCHEDULE)
    repro_extra: str = ""
    #: WARN-level findings that are not the driver's fault
    warnings: list[str] = field(factory=list)
    #: what a check keeps between its parts (e.g. fuzzing examples)
    scratch: dict[str, Any] = field(factory=dict)
    #: seconds one driver call may run (check-driver --timeout)
    timeout: float | None = 2.0
    #: told how far a long check got: on_progress(done, total)
    on_progress: Callable[[int, int], Any] | None = None
    #: options of the driver's factory for every instance (a driver's own tests run its
    #: checks on a variant of itself, a bug of its history put back); check-driver gives none
    driver_options: dict[str, Any] = field(factory=dict)

    def progress(self, done: int, total: int) -> None:
        """How far the check got, for a progress bar (FUZZ and RACE run for a while)."""
        if self.on_progress is not None:
            self.on_progress(done, total)

    def rng(self, salt: str = "") -> random.Random:
        """A generator seeded by --seed, the check and `salt`: same seed, same run."""
        return random.Random(f"{self.seed}/{self.check_id}/{salt}")

    def bench(self, salt: str | None = None, **config: Any) -> Bench:
        """A fresh VM with a fresh driver instance (see Bench.create for the settings).

        Benches are seeded by their order in the check, or by `salt` when the
        same bench must come out identical every time (fuzzing replays examples).
        """
        salt = salt if salt is not None else f"bench{len(self.benches)}"
        seed = self.rng(salt).getrandbits(64)
        config.setdefault("callback_timeout", self.timeout)
        bench = Bench.create(self.loaded, self.host, seed, options=self.driver_options,
                             **config)
        self.benches.append(bench)
        return bench

    @property
    def caps(self) -> Any:
        return self.loaded.info.capabilities

    def size(self, normal: int, quick: int) -> int:
        return quick if self.quick else normal
