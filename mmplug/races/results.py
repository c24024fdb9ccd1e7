"""What exploring a race scenario found: one run's result, and an exploration's.

A failure carries everything needed to find it again: the driver, the
scenario, the strategy and seed that found it, and the schedule string that
replays it exactly (``mmplug check-driver DRIVER --scenario NAME --replay
SCHEDULE``).
"""

from __future__ import annotations

import re
import traceback

from attrs import frozen

from ..cpus.schedule import NondeterminismError
from ..cpus.scheduler import CpuReport
from ..drivercode import DriverCode, Site
from ..errors import ContractViolation, Deadlock
from .interleaving import Step, render_steps


@frozen(slots=True)
class RunResult:
    """One run: how it ended, and the schedule that reproduces it.

    `kind` is "ok", "violation" (a rule broken), "deadlock", "livelock",
    "inversion" (LCK-3 lock order, found even when no deadlock happened),
    "nondeterminism" or "error" (an unexpected exception).  `hook` and `page`
    are the callback and the page (described) a violation names, `site` where
    in the driver's code it was raised.  A traced run (run_once(trace=True))
    has its `steps`: every schedule point, for the interleaving a failure prints.
    """

    driver: str
    scenario: str
    strategy: str
    seed: int | None
    schedule: str
    kind: str
    rule: str | None = None
    message: str = ""
    cpu: int | None = None
    steps: int = 0
    cpus: tuple[CpuReport, ...] = ()
    inversions: tuple[str, ...] = ()
    trace: tuple[tuple[int, str], ...] = ()
    replayable: bool | None = None
    hook: str | None = None
    page: str | None = None
    site: Site | None = None
    #: the finding without its numbers, when it has a name of its own (a leak)
    what: str | None = None
    steps_trace: tuple[Step, ...] = ()
    #: choice points where the schedule departs from the default policy (preemptions)
    departures: int = 0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def signature(self) -> str:
        """The failure without its numbers: two runs with the same one found the same bug."""
        return re.sub(r"0x[0-9a-f]+|\d+", "#", f"{self.kind} {self.rule} {self.message}")

    def replay_command(self) -> str:
        return (f"mmplug check-driver {self.driver} -k RACE/explore --races "
                f"--scenario {self.scenario} --replay {self.schedule}")

    def render(self) -> str:
        seed = f"seed {self.seed}" if self.seed is not None else "no seed"
        head = (f"{self.scenario} on {self.driver}: {self.kind}"
                f"{' ' + self.rule if self.rule else ''} ({self.strategy}, {seed}, "
                f"schedule {self.schedule}, {self.steps} steps)")
        if self.ok:
            return head
        lines = [head, f"  {self.message}{self.context()}"]
        if self.kind in ("deadlock", "livelock") or (self.cpus and self.kind != "inversion"):
            lines += [f"  {c.render()}" for c in self.cpus if c.state != "done"]
        lines += [f"  also: {inv}" for inv in self.inversions
                  if self.kind != "inversion" or inv != self.message]
        if self.replayable is False:
            lines.append("  (the schedule did not reproduce it: the driver is nondeterministic)")
        if self.steps_trace:
            lines += ["  " + ln for ln in self.interleaving()]
        lines.append(f"  replay: {self.replay_command()}")
        return "\n".join(lines)

    __str__ = render

    def context(self) -> str:
        """" (callback free, in Pool.free (simplepool.py:95), page pfn 0xc0 ...)"."""
        parts = [f"callback {self.hook}" if self.hook else "",
                 f"in {self.site.describe()}" if self.site else "",
                 f"page {self.page}" if self.page else ""]
        text = ", ".join(p for p in parts if p)
        return f" ({text})" if text else ""

    def interleaving(self) -> list[str]:
        """The traced steps as a table (empty unless the run was traced)."""
        if not self.steps_trace:
            return []
        return render_steps(self.steps_trace, self.cpu)


@frozen(slots=True)
class ExploreResult:
    """The runs of one scenario on one driver, and the distinct failures found."""

    driver: str
    scenario: str
    strategy: str
    seed: int
    runs: int
    failures: tuple[RunResult, ...]
    #: dfs only: every schedule within the preemption bound was run
    exhausted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self) -> str:
        what = f"{self.runs} run(s)" + (", search complete" if self.exhausted else "")
        head = (f"{self.scenario} on {self.driver}: {self.strategy}, seed {self.seed}, {what}: "
                + ("ok" if self.ok else f"{len(self.failures)} failure(s)"))
        return "\n".join([head] + [f.render() for f in self.failures])

    __str__ = render


@frozen(slots=True)
class Ending:
    """What ended a run, as a RunResult records it."""

    kind: str
    rule: str | None
    message: str
    hook: str | None = None
    page: str | None = None
    site: Site | None = None
    what: str | None = None


def classify(exc: BaseException, code: DriverCode | None = None) -> Ending:
    """What ended a run (see RunResult.kind); `code` finds where in the driver it was raised."""
    site = code.site_in_traceback(exc) if code is not None else None
    if isinstance(exc, NondeterminismError):
        return Ending("nondeterminism", None, str(exc))
    if isinstance(exc, Deadlock):
        return Ending("deadlock", "LCK-3", str(exc), site=site)
    if isinstance(exc, ContractViolation) and isinstance(exc.__cause__, Deadlock):
        # a callback took a lock it already held (the VM's page lock): reported as raised
        return Ending("violation", "LCK-3", f"deadlock: {exc.message}", exc.hook,
                      exc.page_desc, site)
    if isinstance(exc, ContractViolation):
        return Ending("violation", exc.rule, exc.message, exc.hook, exc.page_desc, site,
                      getattr(exc, "what", None))
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else ""
    return Ending("error", None, f"{type(exc).__name__}: {exc}{where}", site=site)
