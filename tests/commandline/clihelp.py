"""Running `mmplug` in this process, and the paths of the test drivers."""

from __future__ import annotations

from pathlib import Path

from mmplug.cli import main

TESTS = Path(__file__).resolve().parents[1]
SIMPLEPOOL = str(TESTS / "drivers" / "simplepool.py")
KNOBPOOL = str(TESTS / "compare" / "knobpool.py")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `mmplug ARGV...`."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
