"""Shared helpers of the reliability tests: driver variants, the CLI in and out of process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mmplug.cli import main

ROOT = Path(__file__).resolve().parents[2]
SIMPLEPOOL = ROOT / "tests" / "drivers" / "simplepool.py"
BROKEN = ROOT / "tests" / "conformance" / "broken"
#: where migratepage copies the page: the place for a mistake in the success path
COPY = "        copy_highpage(newpage, page)\n"

#: 4 pageblocks, no knobs held: every migration runs the driver's success path
TINY_TOML = """\
name = "tiny"
[zone]
pages = 2048
[objects]
sizes = [[256, 1], [512, 1], [1024, 1]]
[knobs]
pin = 0.0
map = 0.0
busy = 0.0
[[compact]]
kind = "whole_zone"
[[compact]]
kind = "direct"
order = 9
count = 2
"""


def broken(name: str) -> str:
    """A driver of tests/conformance/broken by name."""
    return str(BROKEN / f"{name}.py")


def variant(folder: Path, name: str, old: str, new: str, imports: str = "") -> str:
    """simplepool with `old` replaced by `new`, named `name`: a driver made for one test."""
    src = SIMPLEPOOL.read_text()
    assert old in src, old
    src = src.replace(old, new, 1).replace('name="simplepool"', f'name="{name}"')
    if imports:
        src = src.replace("from __future__ import annotations\n",
                          "from __future__ import annotations\n" + imports, 1)
    path = folder / f"{name}.py"
    path.write_text(src)
    return str(path)


def tiny_workload(folder: Path) -> str:
    path = folder / "tiny.toml"
    path.write_text(TINY_TOML)
    return str(path)


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """mmplug in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


def mmplug(*argv: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """mmplug in a process of its own (for what may end or stop a process)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "mmplug", *argv], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def slow_driver(folder: Path) -> str:
    """simplepool that says MIGRATING on stderr and sleeps in every successful migratepage."""
    return variant(folder, "slow", COPY,
                   "        print('MIGRATING', file=sys.stderr, flush=True)\n"
                   "        time.sleep(0.2)\n" + COPY, "import sys\nimport time\n")


def ctrl_c_while_migrating(*argv: str) -> tuple[int, str, str]:
    """Run mmplug, press Ctrl-C (SIGINT) once a driver is inside migratepage (slow_driver):
    (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "mmplug", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stderr:
            if "MIGRATING" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out, err


def errors(stderr: str) -> list[str]:
    """The lines of stderr that are not compare's progress."""
    return [ln for ln in stderr.splitlines()
            if ln.strip() and not ln.startswith(("running", "done ", "mmplug compare: "))]
