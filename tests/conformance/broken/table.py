"""What check-driver says about each broken driver, as two tables.

    python -m tests.conformance.broken.table [--only NAME ...] [--markdown]

Run from the repository's root.  Each broken driver of the mistake table is
checked by `mmplug check-driver --json` in a process of its own, once with
--quick and once in default mode (a mistake that ends the process is run
that way too).  The first table gives the rules failed in each mode against
the rules the row expects, the number of failed checks and the wall time of
each run; a row whose failed rules are not exactly within {rule} ∪
also_expected, or miss its rule, is marked.  The second table takes the
race-only mistakes, those every check passes with --no-races, and shows what
--quick makes of them: which check failed under which rule, and the
schedule that replays it.  Times are measured, not asserted: the machine
may be busy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence

from attrs import frozen

from .mistakes import MISTAKES, Mistake

#: one run of check-driver may take this long before the table gives up on it
LIMIT = 600.0


@frozen(slots=True)
class Run:
    """One check-driver run of a broken driver."""

    seconds: float
    failed: frozenset[str]           # the rules of the failed checks
    failures: tuple[dict, ...]       # the failed checks' JSON records
    status: int
    error: str = ""

    @property
    def passed(self) -> bool:
        return self.status == 0 and not self.failures


def check_driver(mistake: Mistake, *options: str) -> Run:
    """`mmplug check-driver --json` on the broken driver, in a process of its own."""
    argv = [sys.executable, "-m", "mmplug", "check-driver", str(mistake.path), "--json",
            *options]
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=LIMIT, check=False)
    except subprocess.TimeoutExpired:
        return Run(time.perf_counter() - start, frozenset(), (), -1, f"over {LIMIT:.0f} s")
    seconds = time.perf_counter() - start
    try:
        report = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Run(seconds, frozenset(), (), done.returncode, last)
    failures = tuple(r for r in report["results"] if r["verdict"] == "FAIL")
    return Run(seconds, frozenset(r["rule"] for r in failures), failures, done.returncode)


def _rules(run: Run) -> str:
    return run.error or ", ".join(sorted(run.failed)) or "-"


def _exact(mistake: Mistake, run: Run) -> bool:
    return not run.error and mistake.rule in run.failed and run.failed <= mistake.may_fail


def _table(header: Sequence[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(row) + " |" for row in lines)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in [header, *rows])


def verdict_table(runs: dict[str, tuple[Run, Run]], markdown: bool) -> str:
    header = ["driver", "rule", "also expected", "failed --quick", "failed default",
              "failed checks q/d", "seconds q/d", "exact"]
    rows = []
    for mistake in MISTAKES:
        if mistake.name not in runs:
            continue
        quick, default = runs[mistake.name]
        exact = _exact(mistake, quick) and _exact(mistake, default)
        rows.append([mistake.name, mistake.rule, ", ".join(sorted(mistake.also_expected)) or "-",
                     _rules(quick), _rules(default),
                     f"{len(quick.failures)}/{len(default.failures)}",
                     f"{quick.seconds:.1f}/{default.seconds:.1f}", "yes" if exact else "NO"])
    return _table(header, rows, markdown)


def race_table(races: dict[str, tuple[Run, Run]], markdown: bool) -> str:
    header = ["driver", "rule", "--no-races", "--quick: check, rule", "found by, schedule",
              "seconds --quick"]
    rows = []
    for name, (without, quick) in races.items():
        mistake = next(m for m in MISTAKES if m.name == name)
        caught = "; ".join(f"{r['check']}, {r['rule']}" for r in quick.failures) or "missed"
        found = "; ".join(_found(r["message"]) for r in quick.failures) or "-"
        rows.append([name, mistake.rule, "passes" if without.passed else "FAILS",
                     caught, found, f"{quick.seconds:.1f}"])
    return _table(header, rows, markdown)


def _found(message: str) -> str:
    """'window, schedule 0x9-1' from a race failure's first line."""
    head = message.splitlines()[0] if message else ""
    start = head.find(" (")
    end = head.find("):", start)
    return head[start + 2:end] if start >= 0 and end > start else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.broken.table",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", default=[],
                        help="these broken drivers only")
    parser.add_argument("--markdown", action="store_true", help="tables in Markdown")
    args = parser.parse_args(argv)
    unknown = set(args.only) - {m.name for m in MISTAKES}
    if unknown:
        parser.error(f"no broken driver {', '.join(sorted(unknown))}")
    chosen = [m for m in MISTAKES if not args.only or m.name in args.only]
    runs: dict[str, tuple[Run, Run]] = {}
    races: dict[str, tuple[Run, Run]] = {}
    for mistake in chosen:
        print(f"{mistake.name} ...", file=sys.stderr, flush=True)
        runs[mistake.name] = (check_driver(mistake, "--quick"), check_driver(mistake))
        if not mistake.stalls:
            without = check_driver(mistake, "--no-races")
            if without.passed:
                races[mistake.name] = (without, runs[mistake.name][0])
    print(verdict_table(runs, args.markdown))
    if races:
        print()
        print(race_table(races, args.markdown))
    inexact = [n for n, (q, d) in runs.items()
               if not all(_exact(next(m for m in MISTAKES if m.name == n), r) for r in (q, d))]
    return 1 if inexact else 0


if __name__ == "__main__":
    sys.exit(main())
