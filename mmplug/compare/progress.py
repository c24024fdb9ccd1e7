"""How far a comparison is, on stderr: per run, per phase, with an estimate of the time left.

On a terminal one line is kept up to date (the run, its phase, how far a fill
is, runs done, time spent and left); anywhere else each phase that begins is
one line, so a log shows where a long run spent its time.  Nothing goes to
stdout, which belongs to the table or the JSON.

Runs made in this process report their phases (populate, fill, free,
compaction, verify, destroy; per round when a workload has several); runs made in
other processes or on a Dask cluster report when they end.  The estimate
counts every run as one unit of work and, within a run made here, gives each
phase its usual share of the run's time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

#: a phase's usual share of one run's time (measured on the 1g preset); rounds split theirs
PHASE_SHARE = {"populate": 0.04, "fill": 0.55, "free": 0.09, "compaction": 0.10,
               "replay": 0.78, "verify": 0.13, "destroy": 0.09}
#: the phases a round of a workload goes through, in order
ROUND_PHASES = ("fill", "free", "compaction")
#: a terminal line is redrawn at most this often (seconds)
REDRAW = 0.2


def clock_text(seconds: float) -> str:
    """1:05, 12:00, 1:02:03."""
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """The progress of the runs `labels` names (one label per run index)."""

    def __init__(self, labels: list[str], *, stream: IO[str] | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 prefix: str = "mmplug compare: ", width: int = 100) -> None:
        self.labels = labels
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.prefix = prefix
        #: the terminal's width when it cannot be asked
        self.width = width
        self.start = clock()
        self.done = 0
        self.failed = 0
        self.current: int | None = None
        #: when each run made in this process began
        self.started: dict[int, float] = {}
        #: work done within the current run (0..1) at the start of its phase, and the
        #: phase's share of the run
        self.base = 0.0
        self.share = 0.0
        self.phase = ""
        self.fraction: float | None = None
        self.last_draw = 0.0
        self.drawn = False

    # --- what the runner calls ------------------------------------------------------------
    def run_started(self, index: int) -> Callable[[str, float | None], None]:
        """A run made in this process begins; the hook it reports its phases to."""
        self.current = index
        self.started[index] = self.clock()
        self.base = self.share = 0.0
        self.phase = ""
        return self.phase_hook

    def phase_hook(self, phase: str, fraction: float | None) -> None:
        if phase != self.phase:
            self.base += self.share
            self.share = _share(phase)
            self.phase = phase
            self.fraction = fraction
            self._show(new_phase=True)
        else:
            self.fraction = fraction
            self._show(new_phase=False)

    def run_done(self, index: int, result: dict[str, Any]) -> None:
        self.done += 1
        ok = result.get("status") == "ok"
        self.failed += not ok
        self.current = None
        self.base = self.share = 0.0
        self.phase = ""
        status = "ok" if ok else "failed"
        line = f"{self._count()} {self.labels[index]}: done ({status})"
        started = self.started.pop(index, None)
        if started is not None:
            line += f" in {self.clock() - started:.1f} s"
        self._line(line + self._eta_text())

    def close(self) -> None:
        """Leave the terminal line; say how long it all took."""
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[K")
        failed = f", {self.failed} failed" if self.failed else ""
        self._line(f"{self.done} of {len(self.labels)} runs done{failed} in "
                   f"{clock_text(self.clock() - self.start)}", final=True)

    # --- estimates ----------------------------------------------------------------------------
    def work_done(self) -> float:
        """Runs done, plus the part of the current run behind us (in runs)."""
        within = 0.0
        if self.current is not None:
            part = self.share * (self.fraction or 0.0)
            within = min(0.99, self.base + part)
        return self.done + within

    def eta(self) -> float | None:
        """Seconds left, from the pace so far; None before there is a pace."""
        done = self.work_done()
        total = len(self.labels)
        if done <= 0.02 or total <= 0:
            return None
        elapsed = self.clock() - self.start
        return max(0.0, elapsed * (total - done) / done)

    # --- output ----------------------------------------------------------------------------------
    def _count(self) -> str:
        return f"[{min(self.done + (self.current is not None), len(self.labels))}/" \
               f"{len(self.labels)}]"

    def _eta_text(self) -> str:
        left = self.eta()
        elapsed = clock_text(self.clock() - self.start)
        if self.done >= len(self.labels):
            return f"; {elapsed} in all"
        return f"; {elapsed} so far, about {clock_text(left)} left" if left is not None \
            else f"; {elapsed} so far"

    def _show(self, new_phase: bool) -> None:
        if self.current is None:
            return
        label = self.labels[self.current]
        how_far = f" {100 * self.fraction:.0f}%" if self.fraction is not None else ""
        if self.tty:
            now = self.clock()
            if not new_phase and now - self.last_draw < REDRAW:
                return
            self.last_draw = now
            self._draw(f"{self._count()} {label}: {self.phase}{how_far}{self._eta_text()}")
        elif new_phase:
            self._line(f"{self._count()} {label}: {self.phase}{self._eta_text()}")

    def _draw(self, text: str) -> None:
        line = self.prefix + text
        # a line that wraps cannot be redrawn in place: cut it to the terminal's width
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns - 1
        except (AttributeError, ValueError, OSError):   # not a real terminal (tests)
            width = self.width - 1
        if len(line) > width > 20:
            line = line[:width - 1] + "…"
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self.drawn = True

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            if final:
                self.stream.write(self.prefix + text + "\n")
                self.drawn = False
            else:
                self._draw(text)
                if self.current is None:   # a run ended: keep its line
                    self.stream.write("\n")
                    self.drawn = False
        else:
            self.stream.write(self.prefix + text + "\n")
        self.stream.flush()


def _share(phase: str) -> float:
    """A phase's share of its run: "fill 2/3" is a third of the fill share."""
    name, _, rounds = phase.partition(" ")
    share = PHASE_SHARE.get(name, 0.0)
    if name in ROUND_PHASES and "/" in rounds:
        share /= int(rounds.split("/")[1])
    return share
