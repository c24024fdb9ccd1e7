"""The reference workload every benchmark divides its figures by, and running code elsewhere.

Machines here are shared: a figure in seconds says as much about the other
users of the machine as about mmplug.  So each benchmark runs a fixed
pure-Python workload (slotted objects, a large dict, word stores into a
buffer: the kinds of work the model does, and nothing of mmplug) in its own
process before its first measurement and after its last, and prints every
figure also as a ratio to the reference's CPU time.

`python_for(tree)` runs another checkout (e.g. the commit before a change,
`git worktree add` or `git archive | tar -x`) with its own mmplug and
drivers, so that before and after are measured in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REFERENCE = r"""
import json, time

class Node:
    __slots__ = ("key", "value", "next")

    def __init__(self, key, value, nxt):
        self.key, self.value, self.next = key, value, nxt

def work(n):
    table = {}
    view = memoryview(bytearray(1 << 20))
    head = None
    for i in range(n):
        head = Node(i, i * 7919 & 0xFFFF, head if i % 3 else None)
        table[i * 2654435761 & 0xFFFFFFFF] = head
        off = (i * 64) & 0xFFFC0
        view[off:off + 8] = (i & 0xFFFFFFFF).to_bytes(8, "little")
        if i % 4 == 3:
            table.pop((i - 1) * 2654435761 & 0xFFFFFFFF, None)
    return len(table)

t0, c0 = time.perf_counter(), time.process_time()
work(1_500_000)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}))
"""


def environment(tree: Path | None) -> dict[str, str] | None:
    """The environment that imports mmplug and the bundled drivers from `tree` (None: as
    installed)."""
    if tree is None:
        return None
    tree = tree.resolve()
    if not (tree / "mmplug" / "__init__.py").exists():
        raise SystemExit(f"{tree}: not an mmplug checkout (no mmplug/__init__.py)")
    paths = [tree] + [tree / "drivers" / d for d in ("zsmalloc", "balloon", "z3fold")]
    env = dict(os.environ)
    entries = [str(p) for p in paths]
    if env.get("PYTHONPATH"):
        entries.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


def run_child(code: str, *args: str, tree: Path | None = None) -> tuple[dict | None, str]:
    """Run `code` in a fresh interpreter (from `tree`'s sources if given): its last stdout
    line as JSON, or None and the end of its stderr."""
    cwd = str(tree.resolve()) if tree is not None else None
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=environment(tree), cwd=cwd)
    if proc.returncode:
        return None, proc.stderr.strip()[-300:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


class Reference:
    """The reference workload, run before and after a benchmark; `cpu` is their mean."""

    def __init__(self) -> None:
        self.runs: list[dict] = []

    def measure(self) -> dict:
        out, err = run_child(REFERENCE)
        if out is None:
            raise SystemExit(f"the reference workload failed: {err}")
        self.runs.append(out)
        return out

    @property
    def cpu(self) -> float:
        return sum(r["cpu_seconds"] for r in self.runs) / len(self.runs)

    def describe_first(self) -> str:
        r = self.runs[0]
        return f"reference workload: {r['cpu_seconds']:.2f} s CPU ({r['seconds']:.2f} s wall)"

    def describe_last(self) -> str:
        first, last = self.runs[0]["cpu_seconds"], self.runs[-1]["cpu_seconds"]
        drift = abs(last - first) / self.cpu
        return (f"reference workload again: {last:.2f} s CPU ({self.runs[-1]['seconds']:.2f} s "
                f"wall); ratios below use the mean, {self.cpu:.2f} s"
                + (f"  [drifted {100 * drift:.0f} %: the machine's load changed]"
                   if drift > 0.2 else ""))
