"""Benchmark of `mmplug compare` at scale: wall time and peak RSS per driver.

Each driver runs in its own fresh process (so peak RSS is that driver's
alone), on the 1 GiB preset by default:

    python benchmarks/bench_compare.py                       # 1g preset, every driver
    python benchmarks/bench_compare.py --zone-size 4GiB      # the 4 GiB zone
    python benchmarks/bench_compare.py --profile zsmalloc    # where the time goes

`--profile` runs one driver under cProfile and splits the time between the
core (mmplug/, without compare), the comparison (mmplug/compare) and the
driver, then lists the functions that cost most.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from mmplug.plugins import PluginHost
from mmplug.compare.runner import run_one
from mmplug.compare.workload import pages_for, preset
spec, name, size = sys.argv[1], sys.argv[2], sys.argv[3]
w = preset(name)
if size:
    w = w.with_overrides(nr_pages=pages_for(size, w.page_size))
host = PluginHost()
host.load_entry_points()
t0 = time.perf_counter()
r = run_one(host, spec, w)
total = time.perf_counter() - t0
print(json.dumps({
    "driver": r["driver"], "status": r["status"], "error": r["error"],
    "nr_pages": w.nr_pages, "seconds": round(total, 2), "phases": r["wall_seconds"],
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "objects": r["workload_stats"]["objects_stored"],
    "pgmigrate_success": r["counters"]["pgmigrate_success"],
    "order9": r["outcome"]["allocations"].get("9"),
}))
"""


def installed_drivers() -> list[str]:
    from mmplug.plugins import PluginHost
    host = PluginHost()
    host.load_entry_points()
    return sorted(host.drivers)


def measure(spec: str, preset: str, zone_size: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, spec, preset, zone_size or ""],
                          capture_output=True, text=True)
    if proc.returncode:
        return {"driver": spec, "status": "crashed", "error": proc.stderr.strip()[-300:],
                "seconds": round(time.perf_counter() - t0, 2)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def profile(spec: str, preset: str, zone_size: str, top: int) -> None:
    from mmplug.compare.runner import run_one
    from mmplug.compare.workload import pages_for, preset as get_preset
    from mmplug.plugins import PluginHost
    w = get_preset(preset)
    if zone_size:
        w = w.with_overrides(nr_pages=pages_for(zone_size, w.page_size))
    host = PluginHost()
    host.load_entry_points()
    prof = cProfile.Profile()
    prof.enable()
    run_one(host, spec, w)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())   # tottime of everything
    shares: dict[str, float] = {}
    for (filename, _, _), v in stats.stats.items():
        path = Path(filename).as_posix()
        if "/mmplug/compare/" in path:
            who = "compare"
        elif "/mmplug/" in path and "/drivers/" not in path:
            who = "core"
        elif "/drivers/" in path or "mmplug_" in path:
            who = "driver"
        else:
            who = "python/stdlib"
        shares[who] = shares.get(who, 0.0) + v[2]
    print(f"profile of {spec} on {w.name} ({w.nr_pages:,} pages): {total:.1f} s of own time")
    for who, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {who:<14} {t:7.1f} s  {100 * t / total:5.1f} %")
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("drivers", nargs="*", help="drivers (default: every installed one)")
    ap.add_argument("--preset", default="1g")
    ap.add_argument("--zone-size", default="", help="e.g. 4GiB")
    ap.add_argument("--profile", metavar="DRIVER", help="profile one driver instead")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    if args.profile:
        profile(args.profile, args.preset, args.zone_size, args.top)
        return
    drivers = args.drivers or installed_drivers()
    print(f"{'driver':<12} {'pages':>9} {'seconds':>8} {'peak RSS MiB':>13} {'objects':>9} "
          f"{'migrated':>9}  phases")
    for spec in drivers:
        r = measure(spec, args.preset, args.zone_size)
        if r["status"] != "ok":
            print(f"{r['driver']:<12} {r['status']}: {r['error']}")
            continue
        print(f"{r['driver']:<12} {r['nr_pages']:>9,} {r['seconds']:>8.1f} "
              f"{r['peak_rss_mib']:>13.1f} {r['objects']:>9,} {r['pgmigrate_success']:>9,}  "
              f"{r['phases']}")


if __name__ == "__main__":
    main()
