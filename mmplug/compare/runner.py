"""Running a workload or a trace on each driver, and collecting the metrics.

`run_one` is the unit of work: one driver, one workload (or trace), one seed,
in a fresh VM; it returns a plain dict (picklable, JSON-ready).  `run_sweep`
runs the workloads x drivers x seeds grid (`run_all` one workload's), in this
process or each run in a process of its own, on this machine or on a Dask
cluster (mmplug.compare.executors; each child loads the drivers again from
their specs, so .py drivers work).

A workload is turned into events as it runs: the fill phase interleaves driver
objects, LRU pages and slab pages so that each user's share of the pages used
follows the workload, whatever the driver's density.  Separate random streams
(sizes, interleaving, frees, knobs), all derived from the seed, keep the i-th
object's size the same on every driver.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import itertools
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed
from typing import Any, Protocol

from .. import __version__
from ..constants import MIGRATETYPE_NAMES
from ..errors import CallbackTimeout, ContractViolation, MmplugError
from ..plugins import PluginHost
from ..vm import VMConfig
from ..vmstat import KERNEL_EVENTS
from ..watchdog import DEFAULT_LIMIT, DriverExit, describe, interrupts, memory_limit, trap_exits
from .executors import RunTask, kill_children, open_executor, result_of, run_in_child
from .machine import Machine, integrity_failure
from .metrics import Snapshot, blocking_pageblocks, gorman_cost, take_snapshot
from .trace import Trace
from .workload import Workload

Scenario = Workload | Trace

#: what a run reports while it goes on: (phase, fraction of the phase done or None)
PhaseHook = Callable[[str, "float | None"], None]


class RunProgress(Protocol):
    """What run_sweep tells about its runs (mmplug.compare.progress.Progress)."""

    def run_started(self, index: int) -> PhaseHook | None: ...
    def run_done(self, index: int, result: dict[str, Any]) -> None: ...


# --- a workload as events ----------------------------------------------------------

class _Streams:
    """Independent random streams of one seed."""

    def __init__(self, seed: int) -> None:
        self.sizes = random.Random(f"{seed}:sizes")
        self.mix = random.Random(f"{seed}:mix")
        self.free = random.Random(f"{seed}:free")
        self.knobs = random.Random(f"{seed}:knobs")


def _choose_frees(ids: list[int], fraction: float, pattern: str, rng: random.Random) -> list[int]:
    n = round(len(ids) * fraction)
    if n <= 0:
        return []
    if pattern == "random":
        return rng.sample(ids, n)
    if pattern == "oldest":
        return ids[:n]
    if pattern == "newest":
        return ids[-n:]
    # alternate: spread evenly, every 1/fraction-th of the allocation order
    return [k for i, k in enumerate(ids) if int((i + 1) * fraction) > int(i * fraction)]


#: a fill reports how far it is every this many allocations
FILL_REPORT_STEPS = 8192


def _fill(m: Machine, w: Workload, rng: _Streams, next_id: int,
          report: Callable[[float], None] | None = None, *, unrolled: bool = True) -> int:
    """Allocate until the zone is `w.fill` used; returns the next free id.

    Each step picks a user at random, weighted by how far it is below its
    share of the pages used so far, so the users interleave through memory
    as they do on a running system.  While all three users take part (every
    step of a fill until one runs out) the weights are computed unrolled,
    in the same float operations, summed by the same sum(); `unrolled=False`
    takes the general loop throughout.
    """
    zone = m.vm.zone
    sizes = [s for s, _ in w.sizes]
    cum = list(itertools.accumulate(wt for _, wt in w.sizes))
    size_total = cum[-1]
    max_size = m.caps.max_object_size or w.page_size
    share_sum = w.driver_share + w.lru_share + w.slab_share
    shares = {"store": w.driver_share / share_sum, "lru": w.lru_share / share_sum,
              "slab": w.slab_share / share_sum}
    # (kind, its share, the floor of its weight): the same floats every step
    live = [(k, shares[k], 0.05 * shares[k]) for k, s in (
        ("store", w.driver_share), ("lru", w.lru_share), ("slab", w.slab_share)) if s > 0]
    used = dict.fromkeys(shares, 0)
    used_total = 0
    target = w.nr_pages - int(w.fill * w.nr_pages)
    mix, size_rng = rng.mix.random, rng.sizes.random
    # Nothing to record: each event is its op, called as Machine.execute() calls it.
    direct = m.trace is None
    execute, ops = m.execute, m.ops
    op_store = ops["store"]
    bisect_right = bisect.bisect
    first = zone.nr_free_pages
    todo = max(first - target, 1)
    countdown = FILL_REPORT_STEPS
    # the three users' entries, shares and floors, for the unrolled step
    three = unrolled and len(live) == 3
    if three:
        e0, e1, e2 = live
        (k0, s0, f0), (k1, s1, f1), (k2, s2, f2) = live
    while zone.nr_free_pages > target and live:
        if report is not None:
            countdown -= 1
            if not countdown:
                countdown = FILL_REPORT_STEPS
                report(min(1.0, (first - zone.nr_free_pages) / todo))
        n = used_total + 1
        if three:
            # the general step below, written out for three users
            d0 = (d if (d := s0 * n - used[k0]) > 0.0 else 0.0) + f0
            d1 = (d if (d := s1 * n - used[k1]) > 0.0 else 0.0) + f1
            d2 = (d if (d := s2 * n - used[k2]) > 0.0 else 0.0) + f2
            r = mix() * sum((d0, d1, d2)) - d0
            if r < 0:
                entry = e0
            elif r - d1 < 0:
                entry = e1
            else:
                entry = e2
        else:
            # max(deficit, 0.0) + floor, in the same float operations as ever
            deficits = [(d if (d := share * n - used[k]) > 0.0 else 0.0) + floor
                        for k, share, floor in live]
            r = mix() * sum(deficits)
            entry = live[-1]
            for e, d in zip(live, deficits, strict=True):
                r -= d
                if r < 0:
                    entry = e
                    break
        kind = entry[0]
        before = zone.nr_free_pages
        key = next_id
        next_id += 1
        if kind == "store":
            size = sizes[bisect_right(cum, size_rng() * size_total)]
            if size > max_size:
                size = max_size
            ok = op_store(key, size) if direct else execute(("store", key, size))
            # A size the driver rejects (ValueError) is halved until it fits,
            # and becomes the largest size offered from then on.
            while not ok and m.last_store_rejected and size > 16:
                size //= 2
                max_size = size
                ok = op_store(key, size) if direct else execute(("store", key, size))
        else:
            ok = ops[kind](key) if direct else execute((kind, key))
        if not ok:
            live.remove(entry)
            three = False
            continue
        grown = before - zone.nr_free_pages
        used[kind] += grown
        used_total += grown
    return next_id


def run_workload(m: Machine, w: Workload, phase: PhaseHook | None = None) -> None:
    """Execute workload `w` on machine `m`: rounds of fill, free, compaction; `phase`
    hears each phase begin (and how far a fill is)."""
    rng = _Streams(w.seed)
    next_id = 0
    for nr in range(1, w.rounds + 1):
        of = f" {nr}/{w.rounds}" if w.rounds > 1 else ""
        if phase:
            phase(f"fill{of}", 0.0)
        next_id = _fill(m, w, rng, next_id, phase and (lambda f, of=of: phase(f"fill{of}", f)))
        if phase:
            phase(f"free{of}", None)
        # free (with nothing to record, each event is its op, as in _fill)
        unrecorded, free = m.trace is None, m.ops["free"]
        for ids, fraction in ((list(m.objects), w.free_driver), (list(m.lru_keys), w.free_lru),
                              (list(m.slabs), w.free_slab)):
            for key in _choose_frees(ids, fraction, w.free_pattern, rng.free):
                if unrecorded:
                    free(key)
                else:
                    m.execute(("free", key))
        # compaction, with knobs held while it runs
        if phase:
            phase(f"compaction{of}", None)
        for trig in w.triggers:
            _hold_knobs(m, w, rng.knobs)
            for _ in range(trig.count):
                # The driver's lock is held for a whole trigger, decided per trigger.
                busy = rng.knobs.random() < w.busy
                event: tuple[Any, ...]
                direct = None
                if trig.kind == "direct":
                    event = ("direct", next_id, trig.order)
                    direct = next_id
                    next_id += 1
                else:
                    event = ("compact",) if trig.kind == "whole_zone" else ("kcompactd", trig.order)
                events = [("hold",), event, ("release",)] if busy else [event]
                live = list(m.objects)
                n = round(len(live) * w.free_during)
                doomed = [("free", k) for k in (rng.free.sample(live, n) if n else ())]
                if m.sched is not None and doomed:
                    # The other CPUs free objects while compaction runs on cpu0 (which
                    # also takes and drops the driver's lock, so frees may wait for it).
                    workers = m.sched.nr_cpus - 1
                    bodies = [[ev for ev in doomed[i::workers]] for i in range(workers)]
                    m.concurrently(functools.partial(_run, m, events),
                                   [functools.partial(_run, m, evs) for evs in bodies],
                                   seed=w.seed * 1_000_003 + next_id)
                else:
                    _run(m, events)
                    _run(m, doomed)
                if direct is not None and not trig.keep and direct in m.held:
                    m.execute(("free", direct))
            _release_knobs(m)


def _run(m: Machine, events: list[tuple[Any, ...]]) -> None:
    if m.trace is None:
        ops = m.ops
        for ev in events:
            ops[ev[0]](*ev[1:])
        return
    for ev in events:
        m.execute(ev)


def _hold_knobs(m: Machine, w: Workload, rng: random.Random) -> None:
    """Pin and map a seeded sample of live objects.

    The events are issued whether or not the driver offers the knob (the
    machine skips what the driver lacks), so a saved trace carries them for
    every driver it is replayed on.
    """
    live = list(m.objects)
    for knob, fraction in (("pin", w.pin), ("map", w.map)):
        n = round(len(live) * fraction)
        for key in sorted(rng.sample(live, n) if n else ()):
            m.execute((knob, key))


def _release_knobs(m: Machine) -> None:
    for key in sorted(m.pinned_or_asked("pin")):
        m.execute(("unpin", key))
    for key in sorted(m.pinned_or_asked("map")):
        m.execute(("unmap", key))


def run_trace(m: Machine, trace: Trace) -> None:
    for ev in trace.events:
        m.execute(ev)
    m.release_knobs()


# --- one run -------------------------------------------------------------------------

def scenario_dict(scenario: Scenario) -> dict[str, Any]:
    if isinstance(scenario, Trace):
        return scenario.as_dict()
    d = scenario.as_dict()
    d["kind"] = "workload"
    return d


#: what a driver can make a run end with (anything else is mmplug's own failure)
DRIVER_FAULTS = (ContractViolation, MmplugError, CallbackTimeout, MemoryError, DriverExit)


def _fail(result: dict[str, Any], m: Machine, exc: BaseException) -> None:
    """Record why the run failed; a driver that hung, exited or exhausted memory is
    not called again for the metrics."""
    result["status"] = "failed"
    call = getattr(exc, "call", None)
    if isinstance(exc, ContractViolation):
        text = str(exc)
    elif call is not None:
        text = f"{call.hook} {describe(exc)} ({call.describe()})"
    else:
        text = f"{describe(exc)} (driver {m.name})"
    result["error"] = text
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (CallbackTimeout, DriverExit, MemoryError, SystemExit)):
            m.usable = False
        cause = cause.__cause__


def run_one(host: PluginHost, spec: str, scenario: Scenario, *, keep_maps: bool = False,
            record: bool = False, timeout: float | None = DEFAULT_LIMIT,
            progress: PhaseHook | None = None) -> dict[str, Any]:
    """One driver on one scenario: every metric, as a JSON-ready dict.

    A driver that breaks the contract does not stop the comparison: its
    column reports the error (rule, driver, callback, page).  So does a run
    that lost, corrupted or leaked anything, whose verify() failed or that
    made the VM warn: its status is "failed", its error names the first bad
    object.  `timeout` is the time limit of one driver call; `progress` hears
    each phase begin: populate, fill, free, compaction (per round), verify, destroy.
    """
    loaded = host.get(spec)
    info = loaded.info
    assert info is not None
    if isinstance(scenario, Trace):
        nr_pages, page_size, seed, slab_order = (scenario.nr_pages, scenario.page_size, 0, 0)
    else:
        nr_pages, page_size, seed, slab_order = (scenario.nr_pages, scenario.page_size,
                                                 scenario.seed, scenario.slab_order)
    result: dict[str, Any] = {
        "driver": info.name, "version": info.version, "origin": loaded.origin,
        "kernel_source": info.kernel_source,
        "capabilities": {"stores_data": info.capabilities.stores_data,
                         "may_refuse_isolation": info.capabilities.may_refuse_isolation,
                         "knobs": sorted(info.capabilities.knobs)},
        "seed": seed, "cpus": 1 if isinstance(scenario, Trace) else scenario.cpus,
        "status": "ok", "error": "",
    }
    t0 = time.perf_counter()
    cpus = 1 if isinstance(scenario, Trace) else scenario.cpus
    if progress:
        progress("populate", None)
    m = Machine(loaded, host, nr_pages, page_size, slab_order=slab_order, record=record,
                keep_maps=keep_maps, cpus=cpus, timeout=timeout, start=False)
    with _no_cyclic_gc():
        return _run_and_measure(m, scenario, result, keep_maps, t0, progress)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic collector off while a run goes on, and what exists so far (the zone's
    million page frames) out of its sight: its passes over a heap that only grows cost
    a tenth of a run and free next to nothing.  The run's own cycles wait for the next
    collection after it.  What the run made joins the oldest generation unseen too: the
    first young collection after the run would otherwise walk every object of the run
    (a second per GiB of zone) to find them alive."""
    was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def _run_and_measure(m: Machine, scenario: Scenario, result: dict[str, Any], keep_maps: bool,
                     t0: float, progress: PhaseHook | None) -> dict[str, Any]:
    try:
        m.start()
        if isinstance(scenario, Trace):
            if progress:
                progress("replay", None)
            run_trace(m, scenario)
        else:
            run_workload(m, scenario, progress)
        m.release_knobs()
    except DRIVER_FAULTS as exc:
        _fail(result, m, exc)
    t_run = time.perf_counter() - t0
    if progress:
        progress("verify", None)
    if result["status"] != "ok":
        try:
            return _measure(result, m, keep_maps, t_run)
        except Exception:
            return _failed_result(m.loaded.info, scenario, result["error"])
    return _measure(result, m, keep_maps, t_run, progress)


def _measure(result: dict[str, Any], m: Machine, keep_maps: bool, t_run: float,
             progress: PhaseHook | None = None) -> dict[str, Any]:
    """The metrics of a run that ended (`result` says how), into `result`; then the
    instance is destroyed (`progress` hears that phase begin)."""
    vm = m.vm
    info = m.loaded.info
    page_size = vm.zone.page_size
    owners = bytes(m.owners())
    if m.before is None:
        m.before = take_snapshot(vm, owners if keep_maps else None)
    after = take_snapshot(vm, owners)
    ev = vm.vmstat.events
    result["workload_stats"] = dict(m.stats)
    result["counters"] = {k: ev.get(k, 0) for k in KERNEL_EVENTS}
    result["isolation"] = {
        "attempts": ev["isolate_attempt"], "isolated": ev["isolate_success"],
        "refused_by_driver": ev["isolate_refused"], "failed_page_locked": ev["isolate_fail_locked"],
        "failed_not_movable": ev["isolate_fail_not_movable"],
        "failed_refcount": ev["isolate_fail_refcount"],
        "failed_released_or_isolated": ev["isolate_fail_released"],
    }
    result["migration"] = {
        "eagain_retries": ev["migrate_eagain"], "permanent_failures": ev["migrate_permanent"],
        "no_target_page": ev["migrate_enomem"], "putbacks": ev["putback_movable"],
        "released_while_isolated": ev["migrate_released"],
    }
    result["driver_callbacks"] = m.probe.as_dict()
    requests = {str(o): {"attempts": a, "successes": s,
                         "success_rate": round(s / a, 4) if a else None}
                for o, (a, s) in sorted(m.requests.items())}
    result["outcome"] = {"before": m.before.as_dict(), "after": after.as_dict(),
                         "allocations": requests}
    o9 = m.requests.get(9)
    result["outcome"]["order9_success_rate"] = round(o9[1] / o9[0], 4) if o9 and o9[0] else None
    result["blocking"] = blocking_pageblocks(vm, owners, m.probe.last, m.held_blocks())
    t_check = time.perf_counter()
    if result["status"] == "ok":
        try:
            result["integrity"] = m.verify()
        except DRIVER_FAULTS as exc:
            _fail(result, m, exc)
    result.setdefault("integrity", {})
    if result["status"] == "ok" and not vm.warnings \
            and not integrity_failure(result["integrity"], []):
        # The run ends as the VM ends an instance; what destroy() leaves fails the run.
        if progress:
            progress("destroy", None)
        t_destroy = time.perf_counter()
        try:
            m.destroy()
        except DRIVER_FAULTS as exc:
            _fail(result, m, exc)
        destroy_seconds = time.perf_counter() - t_destroy
    else:
        destroy_seconds = 0.0
    result["integrity"]["vm_warnings"] = [w.render() for w in vm.warnings]
    if result["status"] == "ok":
        found = integrity_failure(result["integrity"], result["integrity"]["vm_warnings"])
        if found:
            result["status"] = "failed"
            result["error"] = f"{found} (driver {info.name})"
    result["cost"] = {
        "pages_scanned_migrate": ev["compact_migrate_scanned"],
        "pages_scanned_free": ev["compact_free_scanned"],
        "pages_isolated": ev["compact_isolated"],
        "bytes_copied": ev["bytes_copied"],
        "gorman_words": gorman_cost(ev, page_size),
    }
    result["wall_seconds"] = {"run": round(t_run, 3),
                              "compaction": round(m.compaction_seconds, 3),
                              "check": round(time.perf_counter() - t_check - destroy_seconds, 3),
                              "destroy": round(destroy_seconds, 3)}
    maps = {"after": owners}
    if keep_maps and m.before.owners is not None:
        maps["before"] = bytes(m.before.owners)
    result["_maps"] = maps if keep_maps else {}
    result["_before"] = m.before
    result["_after"] = after
    result["_trace"] = m.trace
    return result


# --- the grid ---------------------------------------------------------------------------

def _seeded(scenario: Scenario, seed: int) -> Scenario:
    return scenario if isinstance(scenario, Trace) else scenario.with_overrides(seed=seed)


def run_all(host: PluginHost, specs: list[str], scenario: Scenario, seeds: list[int], *,
            jobs: int = 1, keep_maps: bool = False, record: bool = False,
            progress: RunProgress | None = None,
            timeout: float | None = DEFAULT_LIMIT,
            memory: int | None = None, executor: str = "local"
            ) -> list[list[dict[str, Any]]]:
    """results[d][s]: driver d of `specs`, seed s of `seeds` (run_sweep of one scenario)."""
    return run_sweep(host, specs, [scenario], seeds, jobs=jobs, keep_maps=keep_maps,
                     record=record, progress=progress, timeout=timeout, memory=memory,
                     executor=executor)[0]


def sweep_tasks(specs: list[str], scenarios: list[Scenario], seeds: list[int], *,
                keep_maps: bool = False, record: bool = False) -> list[RunTask]:
    """The runs of a sweep, workloads outermost and seeds innermost; the pictures show the
    first seed, so only its runs keep their zone maps."""
    cwd = os.getcwd()
    return [RunTask(index=(w * len(specs) + d) * len(seeds) + s, spec=spec,
                    scenario=_seeded(scenario, seed), keep_maps=keep_maps and s == 0,
                    record=record, cwd=cwd)
            for w, scenario in enumerate(scenarios) for d, spec in enumerate(specs)
            for s, seed in enumerate(seeds)]


def run_sweep(host: PluginHost, specs: list[str], scenarios: list[Scenario], seeds: list[int],
              *, jobs: int = 1, keep_maps: bool = False, record: bool = False,
              progress: RunProgress | None = None, timeout: float | None = DEFAULT_LIMIT,
              memory: int | None = None, executor: str = "local"
              ) -> list[list[list[dict[str, Any]]]]:
    """results[w][d][s]: scenario w, driver d of `specs`, seed s of `seeds`.

    With the local executor and `jobs` 1 every run is made in this process; else
    each run is a process of its own (mmplug.compare.executors), at most `jobs` at a
    time here or as many as the Dask cluster runs, so that a driver that kills its
    process, blocks it in C code or exhausts its memory fails its own run and no
    other.  `timeout` limits each driver call, `memory` (bytes) what a run may add
    to its process.  The results are the same whichever executor made them.
    """
    tasks = sweep_tasks(specs, scenarios, seeds, keep_maps=keep_maps, record=record)
    flat: dict[int, dict[str, Any]] = {}
    if executor == "local" and jobs <= 1:
        with interrupts(), trap_exits(), memory_limit(memory):
            for task in tasks:
                phase = progress.run_started(task.index) if progress else None
                flat[task.index] = run_one(host, task.spec, task.scenario,
                                           keep_maps=task.keep_maps, record=task.record,
                                           timeout=timeout, progress=phase)
                gc.collect()   # the run's zone is a cycle of frames: free it before the next
                if progress:
                    progress.run_done(task.index, flat[task.index])
    else:
        for task, (kind, payload) in _elsewhere(tasks, executor, jobs, timeout, memory):
            flat[task.index] = payload if kind == "ok" else _failed_run(host, task, payload)
            if progress:
                progress.run_done(task.index, flat[task.index])
    nd, ns = len(specs), len(seeds)
    return [[[flat[(w * nd + d) * ns + s] for s in range(ns)] for d in range(nd)]
            for w in range(len(scenarios))]


def _elsewhere(tasks: list[RunTask], executor: str, jobs: int, timeout: float | None,
               memory: int | None) -> Iterator[tuple[RunTask, tuple[str, Any]]]:
    """(task, ("ok", result) or ("crashed", why)) for each task, as the runs end; the
    user's Ctrl-C ends the run processes of this machine."""
    with open_executor(executor, jobs) as (pool, _):
        futures = {pool.submit(run_in_child, task, timeout, memory): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], result_of(future)
        except BaseException:
            for future in futures:
                future.cancel()
            kill_children()
            raise


def _failed_run(host: PluginHost, task: RunTask, error: str) -> dict[str, Any]:
    """The result of a run whose worker gave none."""
    return _failed_result(host.get(task.spec).info, task.scenario, error)


def _failed_result(info: Any, scenario: Scenario, error: str) -> dict[str, Any]:
    """A failed run that measured nothing: driver, seed, what happened, and the
    metrics of a zone with nothing measured."""
    orders = VMConfig().max_order
    empty = Snapshot(buddyinfo=(0,) * orders,
                     free_by_type=((0,) * orders,) * len(MIGRATETYPE_NAMES),
                     blocks_by_type=(0,) * len(MIGRATETYPE_NAMES), nr_free_pages=0)
    if f"(driver {info.name})" not in error:
        error = f"{error} (driver {info.name})"
    return {
        "driver": info.name, "version": info.version, "kernel_source": info.kernel_source,
        "capabilities": {"stores_data": info.capabilities.stores_data,
                         "may_refuse_isolation": info.capabilities.may_refuse_isolation,
                         "knobs": sorted(info.capabilities.knobs)},
        "seed": 0 if isinstance(scenario, Trace) else scenario.seed,
        "cpus": 1 if isinstance(scenario, Trace) else scenario.cpus,
        "status": "failed", "error": error,
        "counters": dict.fromkeys(KERNEL_EVENTS, 0),
        "outcome": {"before": empty.as_dict(), "after": empty.as_dict()},
        "integrity": {}, "cost": {"bytes_copied": 0, "gorman_words": {"total": 0}},
        "_maps": {}, "_before": empty, "_after": empty, "_trace": None,
    }


def iter_public(result: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The JSON-worthy items of a result (private ones start with '_')."""
    return ((k, v) for k, v in result.items() if not k.startswith("_"))


def versions(results: list[list[dict[str, Any]]]) -> dict[str, str]:
    out = {"mmplug": __version__}
    for runs in results:
        out[runs[0]["driver"]] = runs[0]["version"]
    return out
