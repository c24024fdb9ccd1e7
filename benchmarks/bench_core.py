"""Core speed and memory: prints figures from one run; asserts nothing.

    python benchmarks/bench_core.py [--pages 262144] [--cycle 5000] [--seed 1]
    python benchmarks/bench_core.py --against ../before      # before/after, one run

1. Per-page cost of isolate -> migrate and isolate -> putback through the
   framework, against the floor: the same driver callbacks called directly in a
   bare loop with the same copy.  Target ratio <= 1.3 (issue 15): the median of
   rounds that each time both loops back to back.
2. Whole-zone compaction (compact_memory, SYNC) of a zone of --pages 4 KiB
   pages about half full of driver pages, fragmented: pages migrated per second
   (target >= 150,000/s, issue 15), the same per reference second, the cost of
   one migrated page against the bare callbacks' isolate -> migrate of 1., and
   peak memory against the zone buffer (target <= 1.5x).
   The same compaction with benchmarks/nullpool.py, whose callbacks cost next
   to nothing (one empty page per object, as a balloon's): the framework alone.
3. Python bytes per page frame (target <= 200).

    python benchmarks/bench_core.py --callgrind [--pages 16384] [--against TREE]

counts instead, under valgrind's callgrind, the instructions compact_memory
executes per migrated page (simplepool and nullpool): the same work gives the
same count on a busy machine and a quiet one, so a change is seen to the
percent.  It needs valgrind (Debian: apt-get install valgrind).

The driver is tests/drivers/simplepool.py (and nullpool.py for the framework
alone), loaded by file path as any driver is.
Each measurement runs in a fresh process so peak memory is its own; the
reference workload (benchmarks/reference.py) runs before the first and after
the last, and every time is also printed as a ratio to its CPU time.
`--against TREE` measures another checkout (the code before a change) in the
same run, alternating with this one.  `--repeat N` runs each compaction N times
(alternating with the other checkout each time) and keeps the run with the least
CPU time: on a shared machine the others' load only ever adds.
"""

from __future__ import annotations

import argparse
import json
import operator
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import Reference, environment, run_child

ROOT = Path(__file__).resolve().parent.parent
SIMPLEPOOL = ROOT / "tests" / "drivers" / "simplepool.py"
#: a driver whose callbacks cost next to nothing: whole-zone compaction of the framework alone
NULLPOOL = Path(__file__).resolve().parent / "nullpool.py"


def _vm(nr_pages: int, watchdog: bool = True, driver: Path = SIMPLEPOOL):
    """A VM with `driver`; its callbacks under the default time limit, as the commands
    run them (watchdog=False: no limit, to measure what the watchdog costs)."""
    from mmplug import VM, PluginHost, VMConfig
    host = PluginHost()
    loaded = host.load(str(driver))
    config = VMConfig(nr_pages=nr_pages, min_free_pages=0)
    if not watchdog:
        config = VMConfig(nr_pages=nr_pages, min_free_pages=0, callback_timeout=None)
    vm = VM(config, plugins=host)
    return vm, vm.create_from(loaded), loaded


def _fill(pool, n_objects: int, rng: random.Random) -> list[int]:
    size = pool.slot_size
    blob = rng.randbytes(size)
    return [pool.store(blob[: rng.randint(1, size)]) for _ in range(n_objects)]


def _prefault(vm) -> None:
    """Touch every page of the zone's memory before anything is timed: the first write to
    a page of a fresh mapping is the host kernel's page fault (several microseconds, and
    how many depends on the machine), not mmplug's work, and would land in whichever
    loop copies into the page first.  The zone's memory reads as zeroes either way."""
    mem = vm.zone.mem
    zero = bytes(1 << 20)
    for off in range(0, len(mem), len(zero)):
        mem[off:off + len(zero)] = zero[:len(mem) - off]


def _cycle_once(n: int, seed: int, framework: bool, putback: bool, watchdog: bool = True) -> float:
    """Seconds per page of one isolate -> migrate (or -> putback) sweep over fresh pages."""
    from mmplug.constants import MigrateMode
    from mmplug.kernel import get_page, put_page, trylock_page, unlock_page
    from mmplug.migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
    from mmplug.page import ISOLATED

    rng = random.Random(seed)
    vm, pool, loaded = _vm(1 << max(13, (n * 3).bit_length()), watchdog)
    _prefault(vm)
    _fill(pool, n * 4, rng)
    pages = [st.page for st in pool.states]
    targets = [vm.zone.alloc_pages(0, 0x08) for _ in pages]
    ops, mapping = loaded.ops, pool.mapping
    t0 = time.process_time()   # CPU time: on a shared machine wall time counts the others
    if framework:
        it = iter(targets)

        def get_new(page, private):
            return next(it)

        for i in range(0, len(pages), 32):
            lst = PageList()
            for page in pages[i:i + 32]:
                isolate_movable_page(vm, page, 0)
                lst.add(page)
            if putback:
                putback_movable_pages(vm, lst)
            else:
                migrate_pages(vm, lst, get_new, None, None, MigrateMode.SYNC)
    else:
        # the floor: the same callbacks, page locks, flags, references and copy, nothing else
        for page, new in zip(pages, targets, strict=True):
            get_page(page)
            trylock_page(page)
            ops.isolate_page(page, 0)
            page.flags |= ISOLATED
            unlock_page(page)
            trylock_page(page)
            if putback:
                ops.putback_page(page)
                page.flags &= ~ISOLATED
                unlock_page(page)
            else:
                trylock_page(new)
                ops.migratepage(mapping, new, page, MigrateMode.SYNC)
                page.flags &= ~ISOLATED
                unlock_page(new)
                unlock_page(page)
                put_page(new)
            put_page(page)
    secs = (time.process_time() - t0) / len(pages)
    if framework and not putback:
        assert vm.vmstat["pgmigrate_success"] == len(pages)
    return secs


def bench_cycle(n: int, seed: int, rounds: int = 7) -> dict:
    """Framework vs bare callbacks per page, in rounds that measure every variant back to
    back on the same pages.

    The ratios are medians of each round's own ratio: a round's framework and bare
    loops run a moment apart, so a machine that slows down for a while slows both,
    and an odd round does not decide.  The microseconds are each variant's best.
    The framework runs with the callback watchdog on (as every command runs it) and,
    to show what the watchdog costs, off.
    """
    times: dict[tuple[bool, bool, bool], list[float]] = {}
    for r in range(rounds):
        for putback in (False, True):
            for framework, watchdog in ((False, True), (True, True), (True, False)):
                key = (putback, framework, watchdog)
                times.setdefault(key, []).append(
                    _cycle_once(n, seed + r, framework, putback, watchdog))

    def ratio(putback: bool, watchdog: bool) -> float:
        pairs = zip(times[(putback, True, watchdog)], times[(putback, False, True)],
                    strict=True)
        return statistics.median(f / b for f, b in pairs)

    best = {key: min(ts) for key, ts in times.items()}
    return dict(pages=n, rounds=rounds,
                floor_migrate_us=best[(False, False, True)] * 1e6,
                framework_migrate_us=best[(False, True, True)] * 1e6,
                ratio_migrate=ratio(False, True), ratio_migrate_no_watchdog=ratio(False, False),
                ratio_migrate_spread=(min(f / b for f, b in zip(
                    times[(False, True, True)], times[(False, False, True)], strict=True)),
                    max(f / b for f, b in zip(times[(False, True, True)],
                                              times[(False, False, True)], strict=True))),
                floor_putback_us=best[(True, False, True)] * 1e6,
                framework_putback_us=best[(True, True, True)] * 1e6,
                ratio_putback=ratio(True, True), ratio_putback_no_watchdog=ratio(True, False))


def bench_compaction(nr_pages: int, seed: int, driver: Path = SIMPLEPOOL) -> dict:
    """Whole-zone compaction of a half-full fragmented zone."""
    from mmplug.compaction import compact_memory
    rng = random.Random(seed)
    t0 = time.perf_counter()
    vm, pool, loaded = _vm(nr_pages, driver=driver)
    _prefault(vm)
    # fill the zone with objects, then free enough to leave about half of it driver pages
    per_page = vm.zone.page_size // pool.slot_size
    handles = _fill(pool, (nr_pages - 1024) * per_page, rng)
    rng.shuffle(handles)
    target = nr_pages // 2
    for h in handles:
        if len(pool.states) <= target:
            break
        pool.free(h)
    setup = time.perf_counter() - t0
    driver_pages = len(pool.states)
    before = vm.zone.buddyinfo()
    t0, c0 = time.perf_counter(), time.process_time()
    # through operator.call: the C function callgrind counts inside (--callgrind)
    operator.call(compact_memory, vm)
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    migrated = vm.vmstat["pgmigrate_success"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    buf = nr_pages * vm.zone.page_size
    return dict(nr_pages=nr_pages, driver_pages=driver_pages, setup_s=setup, compact_s=secs,
                compact_cpu_s=cpu, migrated=migrated,
                pages_per_s=migrated / secs if secs else 0.0,
                pages_per_cpu_s=migrated / cpu if cpu else 0.0,
                peak_rss_bytes=peak, zone_buffer_bytes=buf, peak_over_buffer=peak / buf,
                buddyinfo_before=before, buddyinfo_after=vm.zone.buddyinfo())


def bench_frame_bytes(nr_pages: int) -> dict:
    """Python heap per page frame (the zone buffer itself is an mmap, not counted)."""
    from mmplug import VM
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _vm = VM(nr_pages=nr_pages)   # bound: alive when measured
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return dict(nr_pages=nr_pages, bytes_per_frame=used / nr_pages)


def _child(kind: str, arg: int, seed: int, tree: Path | None = None) -> dict:
    """One measurement in a fresh process: this script's code, on `tree`'s mmplug if given."""
    argv = [__file__, "--child", kind, "--arg", str(arg), "--seed", str(seed)]
    code = (f"import runpy, sys; sys.argv = {argv!r}; "
            f"runpy.run_path({__file__!r}, run_name='__main__')")
    out, err = run_child(code, tree=tree)
    if out is None:
        raise SystemExit(f"bench_core: the {kind} measurement failed: {err}")
    return out


#: what callgrind counts: operator.call's C function, which bench_compaction calls
#: compact_memory through and nothing else
CALLGRIND_REGION = "_operator_call"


def callgrind_compaction(kind: str, nr_pages: int, seed: int, tree: Path | None) -> dict:
    """Instructions per migrated page of compact_memory (`kind` "compaction" or
    "compaction-null") on `tree`'s mmplug (None: this checkout's), counted by callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("bench_core: --callgrind needs valgrind (Debian: apt-get install "
                         "valgrind)")
    argv = [__file__, "--child", kind, "--arg", str(nr_pages), "--seed", str(seed)]
    code = (f"import runpy, sys; sys.argv = {argv!r}; "
            f"runpy.run_path({__file__!r}, run_name='__main__')")
    with tempfile.TemporaryDirectory(prefix="bench_core-") as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            [valgrind, "--tool=callgrind", f"--toggle-collect={CALLGRIND_REGION}",
             f"--callgrind-out-file={out}", sys.executable, "-c", code],
            capture_output=True, text=True, env=environment(tree),
            cwd=str(tree.resolve()) if tree is not None else None)
        if proc.returncode or not out.exists():
            raise SystemExit(f"bench_core: callgrind of {kind} failed: "
                             f"{proc.stderr.strip()[-300:]}")
        totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        raise SystemExit("bench_core: callgrind wrote no instruction count")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    instructions = int(totals.group(1))
    return dict(kind=kind, nr_pages=nr_pages, migrated=res["migrated"],
                instructions=instructions,
                per_page=instructions / res["migrated"] if res["migrated"] else 0.0)


def callgrind_report(nr_pages: int, seed: int, against: Path | None) -> None:
    """--callgrind: instructions per migrated page, this checkout and `against`."""
    trees = [None] if against is None else [against, None]
    counts = {(kind, tree): callgrind_compaction(kind, nr_pages, seed, tree)
              for kind in ("compaction", "compaction-null") for tree in trees}
    for kind, label in (("compaction", "simplepool"), ("compaction-null", "nullpool")):
        for tree in trees:
            c = counts[kind, tree]
            print(f"compact_memory, {nr_pages} pages, {label}, "
                  f"{tree if tree is not None else 'this checkout'}: {c['migrated']} migrated, "
                  f"{c['per_page']:,.0f} instructions a page")
        if against is not None:
            ratio = counts[kind, None]["per_page"] / counts[kind, against]["per_page"]
            print(f"  after / before: {ratio:.3f} of the instructions "
                  f"({1 / ratio:.2f}x the pages per instruction)")


def bench_compaction_null(nr_pages: int, seed: int) -> dict:
    """bench_compaction() with nullpool: the framework alone."""
    return bench_compaction(nr_pages, seed, NULLPOOL)


def report(c: dict, z: dict, f: dict, ref: float, n: dict | None = None) -> None:
    print(f"isolate->migrate per page: framework {c['framework_migrate_us']:.2f} us CPU, "
          f"bare callbacks {c['floor_migrate_us']:.2f} us, ratio {c['ratio_migrate']:.2f} "
          f"(target <= 1.3; the median of {c['rounds']} rounds' own ratios, which range "
          f"{c['ratio_migrate_spread'][0]:.2f}-{c['ratio_migrate_spread'][1]:.2f}; "
          f"~{c['pages']} pages a round; the microseconds are the best round's)")
    print(f"isolate->putback per page: framework {c['framework_putback_us']:.2f} us, "
          f"bare callbacks {c['floor_putback_us']:.2f} us, ratio {c['ratio_putback']:.2f}")
    print(f"  the same without the callback watchdog: ratio {c['ratio_migrate_no_watchdog']:.2f} "
          f"(migrate), {c['ratio_putback_no_watchdog']:.2f} (putback)")
    per_page_us = 1e6 / z["pages_per_cpu_s"] if z["pages_per_cpu_s"] else 0.0
    print(f"compact_memory, {z['nr_pages']} pages ({z['nr_pages'] * 4 // 1024} MiB), "
          f"{z['driver_pages']} driver pages: {z['migrated']} migrated in {z['compact_s']:.2f} s "
          f"({z['compact_cpu_s']:.2f} s CPU) = {z['pages_per_s']:,.0f} pages/s, "
          f"{z['pages_per_cpu_s']:,.0f} per CPU second (target >= 150,000/s); "
          f"setup {z['setup_s']:.1f} s")
    print(f"  one migrated page costs {per_page_us:.2f} us of CPU = "
          f"{per_page_us / c['floor_migrate_us']:.2f}x the bare callbacks' isolate->migrate; "
          f"{z['pages_per_cpu_s'] * ref:,.0f} pages migrate in the reference workload's "
          f"{ref:.2f} s")
    print(f"  the ceiling with this driver: a framework and scanners that cost nothing would "
          f"still pay the bare callbacks' {c['floor_migrate_us']:.2f} us a page, "
          f"{1e6 / c['floor_migrate_us']:,.0f} pages per CPU second (an upper bound: the bare "
          f"callbacks are timed on a zone of a few thousand pages, where a copy costs less than "
          f"between the cold pages of this one)")
    if n is not None:
        null_us = 1e6 / n["pages_per_cpu_s"] if n["pages_per_cpu_s"] else 0.0
        print(f"  the framework alone (nullpool, callbacks that cost next to nothing): "
              f"{n['migrated']} migrated, {n['pages_per_cpu_s']:,.0f} per CPU second, "
              f"{null_us:.2f} us of CPU per page, {n['pages_per_cpu_s'] * ref:,.0f} pages in "
              f"the reference workload's {ref:.2f} s")
    print(f"peak RSS {z['peak_rss_bytes'] / 2**20:,.0f} MiB = {z['peak_over_buffer']:.2f}x the "
          f"zone buffer (target <= 1.5x)")
    print(f"Python heap per page frame: {f['bytes_per_frame']:.0f} bytes (target <= 200)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=None,
                    help="zone size in pages (default 262144, 1 GiB; 16384 with --callgrind)")
    ap.add_argument("--cycle", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--against", metavar="TREE", type=Path,
                    help="also measure this checkout (before a change), alternating")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each compaction N times and keep its least CPU time")
    ap.add_argument("--callgrind", action="store_true",
                    help="count compact_memory's instructions per page with callgrind instead "
                    "(--pages defaults to 16384)")
    ap.add_argument("--child", choices=["cycle", "compaction", "compaction-null", "frame"])
    ap.add_argument("--arg", type=int)
    ns = ap.parse_args()
    sys.path.append(str(ROOT))   # mmplug from this checkout unless another is importable
    if ns.callgrind and not ns.child:
        print(f"seed {ns.seed}")
        callgrind_report(ns.pages or 16384, ns.seed, ns.against)
        return
    ns.pages = ns.pages or 262144
    if ns.repeat < 1:
        raise SystemExit("bench_core: --repeat takes a count of at least 1")
    if ns.child:
        fn = {"cycle": bench_cycle, "compaction": bench_compaction,
              "compaction-null": bench_compaction_null}.get(ns.child)
        res = fn(ns.arg, ns.seed) if fn else bench_frame_bytes(ns.arg)
        print(json.dumps(res))
        return
    print(f"seed {ns.seed}")
    reference = Reference()
    reference.measure()
    print(reference.describe_first())
    trees = [None] if ns.against is None else [ns.against, None]
    figures = {}
    for kind, arg in (("cycle", ns.cycle), ("compaction", ns.pages),
                      ("compaction-null", ns.pages), ("frame", ns.pages)):
        runs: dict[Path | None, list[dict]] = {tree: [] for tree in trees}
        for _ in range(ns.repeat if kind.startswith("compaction") else 1):
            for tree in trees:
                runs[tree].append(_child(kind, arg, ns.seed, tree))
        for tree in trees:
            # the least CPU time (the most pages per CPU second) of the repeats
            figures[kind, tree] = max(runs[tree], key=lambda r: r.get("pages_per_cpu_s", 0))
    reference.measure()
    print(reference.describe_last())
    for tree in trees:
        print()
        print(f"== {tree if tree is not None else 'this checkout'}")
        report(figures["cycle", tree], figures["compaction", tree], figures["frame", tree],
               reference.cpu, figures["compaction-null", tree])
    if ns.against is not None:
        before, after = figures["compaction", ns.against], figures["compaction", None]
        null_before = figures["compaction-null", ns.against]
        null_after = figures["compaction-null", None]
        print()
        print(f"after / before{f' (best of {ns.repeat} runs each)' if ns.repeat > 1 else ''}: "
              f"compaction pages per CPU second "
              f"{after['pages_per_cpu_s'] / before['pages_per_cpu_s']:.2f}, the framework "
              f"alone {null_after['pages_per_cpu_s'] / null_before['pages_per_cpu_s']:.2f}, "
              f"migrate ratio "
              f"{figures['cycle', None]['ratio_migrate']:.2f} vs "
              f"{figures['cycle', ns.against]['ratio_migrate']:.2f}")


if __name__ == "__main__":
    main()
