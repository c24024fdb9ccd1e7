"""`mmplug compare`: the command line of the comparison (registered by mmplug.cli)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..commandline import emit_json, json_option, output_option, wants_json
from ..errors import UsageError
from ..outputs import check_output_dir, check_output_file, stdout_for_drivers
from ..plugins import PluginHost
from ..vm import kernel_model
from . import rows
from .html import write_report
from ..units import round_size
from ..watchdog import available_memory, memory_budget, time_limit
from .plot import write_pictures
from .executors import RunTask, check_executor
from .progress import Progress
from .render import json_text, kernel_text, sweep_json_text, table
from .runner import Scenario, run_sweep, scenario_dict, sweep_tasks
from .trace import Trace, load_trace, write_trace
from .workload import PRESETS, load_workload, pages_for, preset

FORMATS = ("table", "kernel", "json")
#: the most seeds --repeat runs per driver, and the most worker processes
MAX_REPEAT = 1000
MAX_JOBS = 256
#: the memory one run needs besides its zone: the interpreter, and per page frame
RUN_BASE_BYTES = 160 << 20
RUN_FRAME_BYTES = 512


def run_bytes(nr_pages: int, page_size: int) -> int:
    """About the memory one run takes: the zone, its frames and the driver's records."""
    return nr_pages * (page_size + RUN_FRAME_BYTES) + RUN_BASE_BYTES


def check_fits(scenario: Scenario, parallel: int, available: int | None) -> int:
    """The memory one run needs; a UsageError saying how large a zone fits if the
    `parallel` runs at once need more than the machine has available."""
    need = run_bytes(scenario.nr_pages, scenario.page_size)
    if available is None or need * parallel <= available:
        return need
    per_run = available // parallel - RUN_BASE_BYTES
    fits = max(0, per_run) // (scenario.page_size + RUN_FRAME_BYTES) // 512 * 512
    size = fits * scenario.page_size
    unit = "GiB" if size >= 1 << 30 else "MiB"
    hint = (f"the largest zone that fits is about --zone-size {size >> (30 if unit == 'GiB' else 20)}"
            f"{unit}" if fits >= 512 else "no zone fits; free some memory first")
    runs = f", for each of {parallel} runs at once" if parallel > 1 else ""
    if parallel > 1:
        hint += " (or use fewer --jobs)"
    raise UsageError(f"a zone of {round_size(scenario.nr_pages * scenario.page_size)} needs "
                     f"about {round_size(need)} of memory{runs}; this machine has "
                     f"{round_size(available)} available: {hint}")


def choose_scenarios(presets: list[str], workloads: list[Path], trace: Path | None,
                     seed: int | None, zone_size: str | None) -> list[Scenario]:
    """What to run: the presets, then the workload files (a sweep when several), or the
    trace alone; the small preset when nothing is given."""
    if trace is not None:
        if presets or workloads:
            raise UsageError("give one of --preset, --workload and --trace")
        if zone_size is not None:
            raise UsageError("--zone-size does not apply to a trace: it replays its own zone")
        return [load_trace(trace)]
    chosen = [preset(name) for name in presets] + [load_workload(path) for path in workloads]
    if not chosen:
        chosen = [preset("small")]
    out = []
    for w in chosen:
        nr_pages = pages_for(zone_size, w.page_size) if zone_size is not None else None
        out.append(w.with_overrides(seed=seed, nr_pages=nr_pages))
    names = [w.name for w in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"workload {twice[0]!r} is given twice; a sweep runs each once")
    return out


def parse_seeds(text: str) -> list[int]:
    """--seeds A..B (inclusive, A <= B) or one seed; UsageError naming what is wrong."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    low, dots, high = text.partition("..")
    try:
        first = int(low)
        last = int(high) if dots else first
    except ValueError:
        raise UsageError(f"--seeds {shown!r}: expected A..B, two integers (or one seed)") from None
    if last < first:
        raise UsageError(f"--seeds {shown!r}: the range runs backwards; expected A <= B, "
                         f"e.g. {last}..{first}")
    if last - first + 1 > MAX_REPEAT:
        raise UsageError(f"--seeds {shown!r}: at most {MAX_REPEAT} seeds")
    return list(range(first, last + 1))


def choose_drivers(host: PluginHost, specs: list[str]) -> list[str]:
    if specs:
        for spec in specs:
            host.get(spec)   # UsageError / PluginError: one line, before any work
        host.check_distinct(specs)
        return specs
    names = sorted(host.drivers)
    for failed in host.failed:
        typer.echo(f"mmplug compare: skipping driver {failed.name!r}: {failed.reason}", err=True)
    if not names:
        raise UsageError("no driver plugins are installed (entry-point group mmplug.drivers); "
                         "name one: mmplug compare path/to/driver.py")
    return names


def compare(
    drivers: Annotated[Optional[list[str]], typer.Argument(
        metavar="DRIVER",
        help="Drivers to compare: entry-point names, module paths or .py files; NAME@FILE "
             "runs FILE under the name NAME, beside an installed driver of the same name "
             "(default: every installed driver).")] = None,
    driver_opt: Annotated[Optional[list[str]], typer.Option(
        "--driver", "-d", metavar="DRIVER", help="Also compare this driver.")] = None,
    preset_names: Annotated[Optional[list[str]], typer.Option(
        "--preset", "-p", metavar="NAME",
        help=f"Built-in workload: {', '.join(PRESETS)} (default small); several make a "
             "sweep.")] = None,
    workloads: Annotated[Optional[list[Path]], typer.Option(
        "--workload", "-w", metavar="FILE.toml",
        help="Workload file (TOML); several make a sweep.")] = None,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", "-t", metavar="FILE", help="Replay this trace exactly.")] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", "-s", metavar="SEED", help="Seed (default: the workload's).")] = None,
    seeds_text: Annotated[Optional[str], typer.Option(
        "--seeds", metavar="RANGE",
        help="Seeds A..B: run every seed from A to B; mean and spread per driver and "
             "workload.")] = None,
    zone_size: Annotated[Optional[str], typer.Option(
        "--zone-size", metavar="SIZE", help="Override the zone size, e.g. 4GiB.")] = None,
    repeat: Annotated[int, typer.Option(
        "--repeat", "-n", metavar="N",
        help="Run N seeds (seed, seed+1, ...): mean and spread.")] = 1,
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", metavar="N",
        help="Runs at once, each in a process of its own (default 1: in this process; with "
             "--executor dask the LocalCluster's workers, default the CPU count).")] = None,
    executor: Annotated[str, typer.Option(
        "--executor", metavar="WHERE",
        help="Where the runs are made: local (this machine, --jobs processes), dask (a "
             "Dask LocalCluster) or tcp://HOST:PORT (a running Dask scheduler).")] = "local",
    fmt: Annotated[str, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="table, kernel (the kernel's own files) or json (same as --json).")] = "table",
    as_json: Annotated[bool, json_option("every metric, with the workload, seeds and versions,")]
        = False,
    output: Annotated[Optional[str], output_option("every metric")] = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", metavar="FILE",
        help="Write one self-contained HTML report: the table, zone maps, buddyinfo, "
             "per-driver details.")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", metavar="DIR", help="Write PNG pictures (zone maps, buddyinfo) here.")] = None,
    save_trace: Annotated[Optional[Path], typer.Option(
        "--save-trace", metavar="FILE",
        help="Save each driver's history as a trace: FILE, or with several drivers "
             "STEM-DRIVER.EXT beside it.")] = None,
    list_presets: Annotated[bool, typer.Option(
        "--list-presets", help="List the built-in workloads and exit.")] = False,
    explain: Annotated[Optional[str], typer.Option(
        "--explain", metavar="ROW",
        help="Print what a row of the table means (e.g. efficiency) and exit.")] = None,
    kernel_version: Annotated[bool, typer.Option(
        "--kernel-version", help="List the kernel the runs model (v4.19 and each newer-kernel "
        "option's value) and exit.")] = False,
    snapshot: Annotated[Optional[Path], typer.Option(
        "--snapshot", metavar="FILE",
        help="Start from a page-frame snapshot (mmplug snapshot, mmplug kernel run --keep).")] = None,
    zone: Annotated[Optional[str], typer.Option(
        "--zone", metavar="NAME", help="With --snapshot: the zone to model (default: the largest).")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Time limit of one driver call; a call that runs longer fails its run as hung "
             "(0: no limit).")] = 10.0,
    memory_limit: Annotated[Optional[str], typer.Option(
        "--memory-limit", metavar="SIZE",
        help="Most memory one run may add, e.g. 4GiB (0: no limit; default twice what the "
             "zone needs plus 1 GiB, at most what the machine has free).")] = None,
) -> None:
    """Compare drivers' migration behaviour under compaction on the same workload."""
    if snapshot is not None:
        _compare_snapshot(snapshot, zone, list(drivers or []) + list(driver_opt or []), seed,
                          as_json=as_json or fmt == "json", output=output)
        return
    if list_presets:
        for name, w in PRESETS.items():
            typer.echo(f"{name:<8} {w.description}")
        return
    if explain is not None:
        from ..authoring.command import explain_row
        explain_row(rows.resolve(explain), as_json=as_json, output=output)
        return
    if wants_json(as_json, output):
        fmt = "json"
    if kernel_version:
        if fmt == "json":
            emit_json(json.dumps(kernel_model(), indent=2) + "\n", as_json=as_json, output=output)
        else:
            typer.echo(_kernel_text(), nl=False)
        return
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt[:40]!r}: expected one of {', '.join(FORMATS)}")
    if not 1 <= repeat <= MAX_REPEAT:
        raise UsageError(f"--repeat {repeat}: expected a count from 1 to {MAX_REPEAT}")
    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs {jobs}: expected a count from 1 to {MAX_JOBS}")
    executor = check_executor(executor)
    if jobs is None:
        jobs = min(os.cpu_count() or 1, MAX_JOBS) if executor == "dask" else 1
    seed_list = parse_seeds(seeds_text) if seeds_text is not None else None
    if seed_list is not None and (seed is not None or repeat != 1):
        raise UsageError("give either --seeds A..B or --seed/--repeat")
    limit = time_limit(timeout)
    check_output_dir(plot, "--plot")
    check_output_file(save_trace, "--save-trace")
    check_output_file(html, "--html")
    if output not in (None, "-"):
        check_output_file(output, "--output")
    scenarios = choose_scenarios(list(preset_names or []), list(workloads or []), trace,
                                 seed_list[0] if seed_list else seed, zone_size)
    if len(scenarios) > 1:
        for given, option in ((html, "--html"), (plot, "--plot"), (save_trace, "--save-trace")):
            if given is not None:
                raise UsageError(f"{option} shows one workload; this sweep has "
                                 f"{len(scenarios)}: run it once per workload")
    with stdout_for_drivers():   # what drivers print, loading or running, goes to stderr
        host = PluginHost()
        host.load_entry_points()
        specs = choose_drivers(host, list(drivers or []) + list(driver_opt or []))
        first = scenarios[0]
        base = 0 if isinstance(first, Trace) else first.seed
        seeds = seed_list if seed_list is not None else [base + i for i in range(repeat)]
        # before any zone is allocated: do the runs at once fit in memory?  (A running
        # scheduler's workers are other machines: each run's own limit still holds.)
        biggest = max(scenarios, key=lambda sc: run_bytes(sc.nr_pages, sc.page_size))
        here = not executor.startswith("tcp://")
        need = check_fits(biggest, min(jobs, len(specs) * len(seeds) * len(scenarios)),
                          available_memory() if here else None)
        memory = memory_budget(memory_limit, need)
        sdicts = [scenario_dict(sc) for sc in scenarios]
        seed_note = "replayed trace" if isinstance(first, Trace) else (
            f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}")
        names = ", ".join(d["name"] for d in sdicts)
        typer.echo(f"mmplug compare: {names}, {seed_note}, drivers {', '.join(specs)}", err=True)
        progress = Progress([_run_label(host, task)
                             for task in sweep_tasks(specs, scenarios, seeds)])
        try:
            sweep = run_sweep(host, specs, scenarios, seeds, jobs=jobs,
                              keep_maps=plot is not None or html is not None,
                              record=save_trace is not None, progress=progress,
                              timeout=limit, memory=memory, executor=executor)
        finally:
            progress.close()
    if len(scenarios) == 1:
        _report_one(sweep[0], scenarios[0], sdicts[0], seeds, seed_note, fmt=fmt,
                    output=output, html=html, plot=plot, save_trace=save_trace)
    else:
        _report_sweep(sweep, sdicts, seeds, seed_note, fmt=fmt, output=output)
    if any(r["status"] != "ok" for results in sweep for runs in results for r in runs):
        raise typer.Exit(1)


def _run_label(host: PluginHost, task: RunTask) -> str:
    """How progress names a run: "zsmalloc on 1g, seed 3"."""
    info = host.get(task.spec).info
    name = info.name if info is not None else task.spec
    sc = task.scenario
    return f"{name} on {sc.name}" + ("" if isinstance(sc, Trace) else f", seed {sc.seed}")


def _report_one(results: list, scenario: Scenario, sdict: dict, seeds: list[int],
                seed_note: str, *, fmt: str, output: str | None, html: Path | None,
                plot: Path | None, save_trace: Path | None) -> None:
    """The outputs of one workload's runs: stdout in the chosen format, then the files."""
    document = json_text(results, sdict, seeds) if fmt == "json" or output else None
    if fmt == "json":
        typer.echo(document, nl=False)
    elif fmt == "kernel":
        typer.echo(f"==> {sdict['name']}: {seed_note} <==")
        typer.echo(kernel_text(results), nl=False)
    elif fmt == "table":
        typer.echo(table(results, sdict, seeds), nl=False)
    # Files after the table: a file that cannot be written loses nothing printed.
    if document is not None and output not in (None, "-"):
        emit_json(document, as_json=False, output=output)
    if html is not None:
        write_report(results, sdict, seeds, html)
        typer.echo(f"wrote {html}", err=True)
    if save_trace is not None:
        _save_traces(results, scenario, save_trace)
    if plot is not None:
        try:
            written = write_pictures(results, plot)
        except OSError as exc:
            raise UsageError(f"--plot {str(plot)[:120]!r}: cannot write the pictures: "
                             f"{exc.strerror or exc}") from None
        for path in written:
            typer.echo(f"wrote {path}", err=True)


def _report_sweep(sweep: list, sdicts: list[dict], seeds: list[int], seed_note: str, *,
                  fmt: str, output: str | None) -> None:
    """A sweep's outputs: per workload, the table (mean±stdev over the seeds) or the
    kernel's files; one JSON document holding every run."""
    document = sweep_json_text(sweep, sdicts, seeds) if fmt == "json" or output else None
    if fmt == "json":
        typer.echo(document, nl=False)
    else:
        for i, (results, sdict) in enumerate(zip(sweep, sdicts)):
            if i:
                typer.echo("")
            if fmt == "kernel":
                typer.echo(f"==> {sdict['name']}: {seed_note} <==")
                typer.echo(kernel_text(results), nl=False)
            else:
                typer.echo(table(results, sdict, seeds), nl=False)
    if document is not None and output not in (None, "-"):
        emit_json(document, as_json=False, output=output)


def _kernel_text() -> str:
    """The kernel model of a run: the baseline, and each newer-kernel option with its value."""
    model = kernel_model()
    lines = [f"kernel: Linux {model['baseline']}, with these newer-kernel options (VMConfig):"]
    for opt in model["options"]:
        lines.append(f"  {opt['name']} = {opt['value']}  ({opt['kernel']}, {opt['commit']}: "
                     f"{opt['summary']})")
    return "\n".join(lines) + "\n"


def _save_traces(results: list, scenario: Scenario, path: Path) -> None:
    nr_pages = scenario.nr_pages
    page_size = scenario.page_size
    for runs in results:
        r = runs[0]
        target = path if len(results) == 1 else path.with_name(
            f"{path.stem}-{r['driver']}{path.suffix}")
        if r["_trace"] is None:
            typer.echo(f"no trace for {r['driver']}: its run gave no history", err=True)
            continue
        write_trace(Trace(f"{scenario.name}-{r['driver']}", nr_pages, page_size,
                          tuple(r["_trace"])), target)
        note = " (its run failed: the history stops where it failed)" \
            if r["status"] != "ok" else ""
        typer.echo(f"wrote {target}{note}", err=True)


def _compare_snapshot(path: Path, zone: str | None, specs: list[str], seed: int | None, *,
                      as_json: bool, output: str | None) -> None:
    """`compare --snapshot FILE`: each driver on the snapshot's memory (compare/snapshot.py)."""
    import json

    from .snapshot import PageFrames, compare_snapshot, snapshot_table
    frames = PageFrames.read(path)
    host = PluginHost()
    host.load_entry_points()
    names = choose_drivers(host, specs)
    seed = 0 if seed is None else seed
    typer.echo(f"mmplug compare: snapshot {path}, seed {seed}, drivers {', '.join(names)}",
               err=True)
    result = compare_snapshot(frames, host, names, zone, seed)
    on_stdout = (as_json or output is not None) and emit_json(
        json.dumps(result, indent=2) + "\n", as_json=as_json, output=output)
    if not on_stdout:
        typer.echo(snapshot_table(result))
