"""Schedules aimed at a driver's isolation windows.

Most race bugs of a movable driver live in a window: while the VM holds one
of its pages isolated, between isolate_page and putback_page or the end of
migratepage, another CPU frees, reads, stores or tears down (BUG-5, BUG-6,
BUG-9, BUG-12 ...).  Random schedules reach such a window rarely when it is
short.  The window strategy aims at it: one run under the default policy
(each CPU in turn as the one to start) finds every choice point at which a
page is isolated; each schedule then follows that run up to one of those
points and hands the processor to another CPU there, which runs until it
finishes or blocks (a preemption inside the window, Musuvathi and Qadeer's
iterative context bounding with bound 1, pointed at where it matters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

from ..cpus.schedule import Strategy

if TYPE_CHECKING:
    from .env import RaceEnv


@frozen(slots=True)
class WindowPoint:
    """A choice point at which a page was isolated: the picks up to it, the CPU that ran
    and the others that could have."""

    picks: tuple[int, ...]
    current: int | None
    others: tuple[int, ...]


class WindowProbe(Strategy):
    """The default policy, starting with CPU `start`; records every choice point at which
    the VM holds a page of the driver isolated."""

    name = "window"

    def __init__(self, start: int) -> None:
        self.start = start
        self.picks: list[int] = []
        self.points: list[WindowPoint] = []
        self._env: RaceEnv | None = None

    def attach(self, env: RaceEnv) -> None:
        """Called with the run's environment once setup is done (run_once)."""
        self._env = env

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        cpu = self.start if index == 0 and self.start in runnable else default
        env = self._env
        if env is not None and env.vm.isolated:
            others = tuple(c for c in runnable if c != cpu)
            if others:
                self.points.append(WindowPoint(tuple(self.picks), cpu, others))
        self.picks.append(cpu)
        return cpu


def window_schedules(points: list[WindowPoint], limit: int) -> list[list[int]]:
    """At most `limit` schedules, each one preemption at a window point, spread evenly over
    the points (the first and the last of the window always among them)."""
    all_picks: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    for point in points:
        for other in point.others:
            picks = (*point.picks, other)
            if picks not in seen:
                seen.add(picks)
                all_picks.append(list(picks))
    if len(all_picks) <= limit:
        return all_picks
    if limit == 1:
        return [all_picks[0]]
    step = (len(all_picks) - 1) / (limit - 1)
    return [all_picks[round(i * step)] for i in range(limit)]


__all__ = ["WindowPoint", "WindowProbe", "window_schedules"]
