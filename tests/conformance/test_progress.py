"""FUZZ and RACE show how far they got: a bar with the time left on a terminal, one line
per long check elsewhere; on stderr only, never in the report or its JSON."""

from __future__ import annotations

import io
import json

from commandline.clihelp import SIMPLEPOOL, run
from mmplug.cli import main
from mmplug.conformance.progress import Progress
from mmplug.conformance.runner import run_suite


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


def test_the_header_comes_before_the_first_progress_line(monkeypatch) -> None:
    """The seed is the first thing a run says, even when a long check is the first to run
    (on a terminal stdout and stderr are one screen)."""
    screen = io.StringIO()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr("sys.stderr", screen)
    try:
        main(["check-driver", SIMPLEPOOL, "--quick", "-k", "FUZZ", "--seed", "3"])
    except SystemExit as exc:
        assert exc.code == 0
    lines = screen.getvalue().splitlines()
    assert lines[:2] == ["check-driver simplepool: seed 3",
                         "FUZZ/state-machine: running, 10 steps"]


def test_run_suite_says_it_started_before_any_check() -> None:
    events: list[str] = []
    report = run_suite(SIMPLEPOOL, quick=True, select=("FUZZ",), seed=4,
                       on_start=lambda r: events.append(f"start {r.driver} {r.seed} "
                                                        f"{len(r.results)}"),
                       on_progress=lambda check, done, total: events.append(check),
                       on_result=lambda r: events.append("result"))
    assert report.passed
    assert events[0] == "start simplepool 4 0" and events[1] == "FUZZ/state-machine"
    assert events[-1] == "result" and events.count("start simplepool 4 0") == 1
