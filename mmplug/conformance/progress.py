"""How far a long check got, on stderr: FUZZ and RACE run for seconds without a result.

On a terminal, one line redrawn in place: the check, a bar, the steps done
and the time still to go, estimated from the rate so far; it is cleared
before the check's result is printed.  Elsewhere (a pipe, a CI log) one line
when such a check starts, so a log shows what ran for long.  Never on
stdout: the report and the JSON stay exactly what they would be without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

#: the bar's width in characters
BAR = 24
#: the fewest seconds between two redraws
REDRAW = 0.1


class Progress:
    """`update(check, done, total)` as a check runs; `clear()` before other output."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, width: int = 79,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.width = width
        self.clock = clock
        self.check = ""
        self.started = 0.0
        self.drawn = 0.0
        self.shown = False
        self.finished = False

    def update(self, check: str, done: int, total: int) -> None:
        now = self.clock()
        if check != self.check:
            self.check, self.started, self.drawn, self.finished = check, now, 0.0, False
            if not self.tty:
                self.stream.write(f"{check}: running, {total} steps\n")
                self.stream.flush()
        if not self.tty or (now - self.drawn < REDRAW and (done < total or self.finished)):
            return
        self.finished = done >= total
        self.drawn = now
        line = self.line(check, done, total, now - self.started)
        self.stream.write("\r" + line[:self.width] + "\x1b[K")
        self.stream.flush()
        self.shown = True

    @staticmethod
    def line(check: str, done: int, total: int, elapsed: float) -> str:
        """"RACE/explore [#####...] 120/800, 3 s left"."""
        total = max(total, 1)
        done = min(done, total)
        filled = BAR * done // total
        bar = "#" * filled + "." * (BAR - filled)
        if done >= total:
            left = "finishing"
        elif done and elapsed > 0:
            left = f"{elapsed * (total - done) / done:.0f} s left"
        else:
            left = "estimating"
        return f"{check} [{bar}] {done}/{total}, {left}"

    def clear(self) -> None:
        """Take the line away (before a result is printed on the same terminal)."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
