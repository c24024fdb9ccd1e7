"""Figures for the scheduler: what one CPU pays for it, and how fast races are explored.

    python benchmarks/bench_sched.py [--quick]

1. Whole-zone compaction (compact_memory) of a fragmented zone full of
   simplepool objects, on the plain SingleCPU backend and on Scheduler(cpus=1)
   (its single-CPU mode), best of several rounds each, and the ratio (target
   <= 1.1).  Scheduler(cpus=1, lockdep=True) (every lock tracked) is shown too.
2. 10,000 random schedules of the two-CPU isolate/free race
   (free_while_isolated) on simplepool and on every installed bundled driver
   it applies to (target: under 60 s each).
Prints the figures of one run; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mmplug import VM, PluginHost, VMConfig, races
from mmplug.compaction import compact_memory
from mmplug.cpus.scheduler import Scheduler
from mmplug.cpus.single import SingleCPU

ROOT = Path(__file__).resolve().parent.parent
SIMPLEPOOL = str(ROOT / "tests" / "drivers" / "simplepool.py")


def fragmented_vm(cpus, seed: int, nr_pages: int) -> VM:
    """A zone filled with simplepool objects, then two thirds of them freed at random."""
    host = PluginHost()
    loaded = host.get(SIMPLEPOOL)
    vm = VM(VMConfig(nr_pages=nr_pages, pageblock_order=6, max_order=8, min_free_pages=0),
            plugins=host, cpus=cpus)
    pool = vm.create_from(loaded)
    rng = random.Random(seed)
    handles = []
    data = bytes(range(200))
    while vm.zone.nr_free_pages > nr_pages // 8:
        handles.append(pool.store(data))
    rng.shuffle(handles)
    for h in handles[: len(handles) * 2 // 3]:
        pool.free(h)
    return vm


def time_compaction(backends: dict[str, Callable[[], object]], rounds: int,
                    nr_pages: int) -> dict[str, float]:
    """Best time of compact_memory per backend; every round runs each backend once, in turn,
    so that load from elsewhere on the machine falls on all of them alike."""
    best = dict.fromkeys(backends, float("inf"))
    for r in range(rounds):
        for name, make_cpus in backends.items():
            vm = fragmented_vm(make_cpus(), seed=r, nr_pages=nr_pages)
            # A collection of the previous round's garbage must not land in this one.
            gc.collect()
            gc.disable()
            try:
                t = time.perf_counter()
                compact_memory(vm)
                best[name] = min(best[name], time.perf_counter() - t)
            finally:
                gc.enable()
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and schedules")
    ap.add_argument("--runs", type=int, default=10_000, help="schedules to explore")
    args = ap.parse_args(argv)
    rounds = 3 if args.quick else 12
    nr_pages = 4096 if args.quick else 16384
    runs = 1000 if args.quick else args.runs

    print(f"compact_memory of a fragmented {nr_pages}-page zone, best of {rounds}:")
    best = time_compaction({
        "SingleCPU": SingleCPU,
        "Scheduler(cpus=1)": lambda: Scheduler(cpus=1),
        "Scheduler(cpus=1, lockdep=True)": lambda: Scheduler(cpus=1, lockdep=True),
    }, rounds, nr_pages)
    base = best["SingleCPU"]
    for name, seconds in best.items():
        ratio = "" if name == "SingleCPU" else f"   ratio {seconds / base:.3f}"
        target = " (target <= 1.1)" if name == "Scheduler(cpus=1)" else ""
        print(f"  {name:32s}{seconds * 1e3:8.1f} ms{ratio}{target}")

    drivers = [SIMPLEPOOL]
    host = PluginHost()
    host.load_entry_points()
    drivers += [name for name in sorted(host.drivers)
                if races.FREE_WHILE_ISOLATED in races.scenarios_for(host.drivers[name])]
    print(f"\n{runs} random schedules of free_while_isolated (two CPUs: compactor vs free):")
    for spec in drivers:
        t = time.perf_counter()
        result = races.explore(spec, "free_while_isolated", strategy="random", seed=0, runs=runs)
        dt = time.perf_counter() - t
        name = Path(spec).stem if spec.endswith(".py") else spec
        status = "ok" if result.ok else f"{len(result.failures)} failure(s)"
        print(f"  {name:12s} {result.runs:6d} runs in {dt:6.2f} s "
              f"({dt / max(result.runs, 1) * 1e3:.2f} ms/run, target < 60 s): {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
