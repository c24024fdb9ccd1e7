"""`mmplug kernel setup|run|scenarios` and `mmplug snapshot` (registered by mmplug.cli)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..commandline import PlainCommand, PlainGroup, emit_json, json_option, output_option
from ..errors import MmplugError, UsageError

kernel_app = typer.Typer(name="kernel", no_args_is_help=True, add_completion=False, cls=PlainGroup,
                         help="Boot Debian's kernel in qemu and compact the same memory as the "
                              "model.")

ACCELS = ("auto", "kvm", "tcg")


class PartsMissing(UsageError):
    """A part of the guest run is not installed (exit 2, naming the package)."""


def _err(message: str) -> None:
    typer.echo(f"mmplug: error: {message}", err=True)


@kernel_app.command("setup", cls=PlainCommand)
def setup_cmd(
    no_tools: Annotated[bool, typer.Option(
        "--no-tools", help="Only unpack the kernel packages; install no host tools.")] = False,
) -> None:
    """Install qemu, busybox-static, gcc and make; unpack Debian's kernel into the cache."""
    from .parts import PartMissing, setup
    try:
        parts = setup(tools=not no_tools, log=lambda s: typer.echo(s, err=True))
    except PartMissing as exc:
        raise PartsMissing(str(exc)) from None
    for k, v in parts.as_dict().items():
        typer.echo(f"{k:<16} {v}")


@kernel_app.command("scenarios", cls=PlainCommand)
def scenarios_cmd() -> None:
    """List the built-in scenarios and where their TOML files are."""
    from .scenario import SCENARIO_DIR, builtin_names, load
    for name in builtin_names():
        sc = load(name)
        typer.echo(f"{name:<14} {sc.description}")
    typer.echo(f"(files in {SCENARIO_DIR}: copy one to change it)")


@kernel_app.command("run", cls=PlainCommand)
def run_cmd(
    scenario: Annotated[str, typer.Argument(
        metavar="SCENARIO", help="zram, zswap-z3fold, balloon, or a scenario .toml file.")],
    as_json: Annotated[bool, json_option("the side-by-side table")] = False,
    output: Annotated[str | None, output_option("the side-by-side table")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="DIR", help="Write the kernel's and the model's zone maps here.")] = None,
    keep: Annotated[Path | None, typer.Option(
        "--keep", metavar="DIR", help="Keep the guest's raw files and snapshots here.")] = None,
    accel: Annotated[str, typer.Option(
        "--accel", metavar="ACCEL", help="auto (KVM if it works, else TCG), kvm or tcg.")] = "auto",
    from_run: Annotated[Path | None, typer.Option(
        "--from-run", metavar="DIR", help="Compare again from the files a --keep run left; "
        "boot nothing.")] = None,
) -> None:
    """Run SCENARIO in the guest kernel and in the model; print them side by side."""
    from .guest import GuestError
    from .kernelside import RunFilesError
    from .parts import PartMissing
    from .run import compare_kept, public, run_scenario, table_text, write_plot
    from .scenario import ScenarioError
    if accel not in ACCELS:
        raise UsageError(f"--accel {accel!r}: expected one of {', '.join(ACCELS)}")

    def log(s: str) -> None:
        typer.echo(f"mmplug kernel: {s}", err=True)

    try:
        if from_run is not None:
            if keep is not None:
                raise UsageError("give --keep or --from-run, not both")
            result = compare_kept(scenario, from_run)
        else:
            result = run_scenario(scenario, keep=keep, accel=accel, log=log)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    except PartMissing as exc:
        raise PartsMissing(str(exc)) from None
    except (GuestError, RunFilesError) as exc:
        raise MmplugError(str(exc)) from None
    if plot is not None:
        for p in write_plot(result, plot):
            typer.echo(f"wrote {p}", err=True)
    on_stdout = (as_json or output is not None) and emit_json(
        public(result), as_json=as_json, output=output)
    if not on_stdout:
        typer.echo(table_text(result), nl=False)
    if any(not r.ok and not r.reasons for r in result["_rows"]):
        raise typer.Exit(1)


def snapshot(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the snapshot here (default: stdout "
        "summary and ./snapshot-HOSTNAME.json.gz).")] = None,
) -> None:
    """Take a page-frame snapshot of this machine (root) for `mmplug compare --snapshot`."""
    from ..compare.snapshot import take_live
    if sys.platform != "linux":
        raise UsageError("mmplug snapshot reads /proc/kpageflags: it runs on Linux only")
    if os.geteuid() != 0:
        raise UsageError("mmplug snapshot needs root: /proc/kpageflags is readable by root only")
    frames = take_live()
    path = output or Path(f"snapshot-{os.uname().nodename}.json.gz")
    frames.write(path)
    for z in frames.zones:
        counts = frames.counts(z.start_pfn, z.end_pfn)
        summary = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        typer.echo(f"{z.name:<8} pfns {z.start_pfn:#x}-{z.end_pfn:#x}: {summary}")
    if not frames.source.get("probe"):
        typer.echo("note: without the mmplug_pfn probe, zsmalloc and z3fold pages count as "
                   "kernel memory and pageblocks as MOVABLE", err=True)
    typer.echo(f"wrote {path}", err=True)
