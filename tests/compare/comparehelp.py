"""Shared helpers of compare's tests: driver paths, tiny workloads, JSON without wall times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmplug.cli import main
from mmplug.compare.workload import Trigger, Workload
from mmplug.plugins import PluginHost

HERE = Path(__file__).resolve().parent
KNOBPOOL = str(HERE / "knobpool.py")
SIMPLEPOOL = str(HERE.parent / "drivers" / "simplepool.py")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """mmplug in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


def host() -> PluginHost:
    h = PluginHost()
    h.load_entry_points()
    return h


def tiny(**kw: Any) -> Workload:
    """4 pageblocks, small objects that every test driver accepts."""
    base = dict(name="tiny", nr_pages=2048, fill=0.8, sizes=((256, 1.0), (512, 1.0), (1024, 1.0)),
                pin=0.1, map=0.1, busy=0.0,
                triggers=(Trigger("whole_zone"), Trigger("direct", 9, 2)))
    base.update(kw)
    return Workload(**base)


def without_wall(tree: Any) -> Any:
    """A result with wall times and private fields removed (what must be deterministic)."""
    if isinstance(tree, dict):
        return {k: without_wall(v) for k, v in tree.items()
                if k != "wall_seconds" and not k.startswith("_")}
    if isinstance(tree, list):
        return [without_wall(x) for x in tree]
    return tree
