"""How long `mmplug check-driver` takes: the default suite and --quick, per driver.

    python benchmarks/bench_check.py [DRIVER ...]

With no argument: every installed driver and the example driver
tests/drivers/simplepool.py.  Prints wall-clock seconds and the verdict totals;
the targets are under 30 s for the default suite and under 5 s with --quick.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mmplug import PluginHost
from mmplug.conformance import run_suite

TARGETS = {"default": 30.0, "quick": 5.0}


def drivers() -> list[str]:
    host = PluginHost()
    host.load_entry_points()
    names = sorted(host.drivers)
    example = Path(__file__).resolve().parent.parent / "tests" / "drivers" / "simplepool.py"
    if example.exists():
        names.append(str(example))
    return names


def measure(driver: str, quick: bool) -> tuple[float, dict]:
    start = time.perf_counter()
    report = run_suite(driver, quick=quick)
    return time.perf_counter() - start, report.totals


def main(argv: list[str]) -> int:
    names = argv or drivers()
    width = max(len(Path(n).stem) for n in names)
    print(f"{'driver':<{width}}  {'mode':<7}  {'seconds':>7}  target  totals")
    slow = False
    for name in names:
        for mode in ("default", "quick"):
            seconds, totals = measure(name, mode == "quick")
            over = seconds > TARGETS[mode]
            slow |= over
            print(f"{Path(name).stem:<{width}}  {mode:<7}  {seconds:7.2f}  "
                  f"{'<' if not over else '>'}{TARGETS[mode]:>4.0f} s  "
                  f"{totals['total']} checks, {totals['failed']} failed, "
                  f"{totals['warnings']} warnings")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
