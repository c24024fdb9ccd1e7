"""FUZZ and RACE show how far they got: a bar with the time left on a terminal, one line
per long check elsewhere; on stderr only, never in the report or its JSON."""

from __future__ import annotations

import io
import json

from commandline.clihelp import SIMPLEPOOL, run
from mmplug.conformance.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_one_line_redrawn_with_the_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    bar = Progress(out, tty=True, clock=clock)
    bar.update("RACE/explore", 0, 400)
    clock.now += 2.0
    bar.update("RACE/explore", 100, 400)
    clock.now += 0.01
    bar.update("RACE/explore", 101, 400)          # too soon to redraw
    clock.now += 1.0
    bar.update("RACE/explore", 400, 400)
    bar.update("RACE/explore", 400, 400)          # drawn once when finished
    bar.clear()
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert frames[0] == "RACE/explore [" + "." * 24 + "] 0/400, estimating\x1b[K"
    assert frames[1] == "RACE/explore [" + "#" * 6 + "." * 18 + "] 100/400, 6 s left\x1b[K"
    assert frames[2].startswith("RACE/explore [" + "#" * 24 + "] 400/400, finishing")
    assert frames[3] == "\x1b[K" and len(frames) == 4 and "\n" not in text


def test_elsewhere_one_line_per_long_check() -> None:
    out = io.StringIO()
    lines = Progress(out, tty=False)
    for done in range(11):
        lines.update("FUZZ/state-machine", done, 10)
    lines.update("RACE/explore", 3, 50)
    lines.clear()
    assert out.getvalue() == "FUZZ/state-machine: running, 10 steps\nRACE/explore: running, " \
                             "50 steps\n"


def test_progress_goes_to_stderr_never_to_the_report(capsys) -> None:
    code, out, err = run(capsys, "check-driver", SIMPLEPOOL, "--quick", "-k", "FUZZ", "-k", "RACE")
    assert code == 0
    assert err == "FUZZ/state-machine: running, 10 steps\nRACE/explore: running, 80 steps\n"
    assert "running" not in out and "[#" not in out
    code, out, err = run(capsys, "check-driver", SIMPLEPOOL, "--quick", "-k", "RACE", "--json")
    assert code == 0 and json.loads(out)["totals"]["total"] == 1
    assert err == "RACE/explore: running, 80 steps\n"
