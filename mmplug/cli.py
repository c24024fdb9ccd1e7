"""The `mmplug` command: thin, it parses, calls and renders.

Every subcommand lives with its subject (mmplug.conformance, mmplug.compare,
mmplug.authoring) and is registered below.  `main()` turns a UsageError or a
PluginError into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated

import typer

from . import __version__
from .commandline import (
    LegacyJsonCommand,
    PlainCommand,
    PlainGroup,
    emit_json,
    json_option,
    output_option,
)
from .errors import MmplugError, PluginError, UsageError
from .outputs import stdout_for_drivers
from .plugins import PluginHost
from .watchdog import hard_stop, interrupts, trap_exits, user_interrupted

app = typer.Typer(
    cls=PlainGroup,
    name="mmplug",
    help="Model the Linux kernel's non-LRU movable page migration with driver plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: exit codes shared by every command
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_PLUGIN = 0, 1, 2, 3, 4


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mmplug {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the version and exit.")] = None,
) -> None:
    """mmplug: compaction, movable drivers and their contract, in Python."""


def load_host(extra: list[str] | None = None) -> PluginHost:
    """A plugin host with every installed driver and the extra specs loaded."""
    host = PluginHost()
    host.load_entry_points()
    for spec in extra or ():
        host.get(spec)
    return host


@app.command(cls=PlainCommand)
def plugins(
    as_json: Annotated[bool, json_option("the list")] = False,
    output: Annotated[str | None, output_option("the list")] = None,
    load: Annotated[list[str] | None, typer.Option(
        "--load", "-l", metavar="DRIVER",
        help="Also load this driver: entry-point name, module path or .py file.")] = None,
) -> None:
    """List the driver plugins: name, version, origin and status."""
    with stdout_for_drivers():   # what a driver prints when imported goes to stderr
        host = PluginHost()
        host.load_entry_points()
        for spec in load or ():
            try:
                host.get(spec)
            except PluginError:
                pass  # recorded in host.failed, listed below
    rows = [d.as_dict() for d in host.all()]
    if emit_json({"mmplug": __version__, "drivers": rows}, as_json=as_json, output=output):
        return
    if not rows:
        typer.echo("No driver plugins found (entry-point group mmplug.drivers).")
        return
    width = max(len(r["name"]) for r in rows)
    vwidth = max(len(r["version"]) for r in rows + [{"version": "VERSION"}])
    typer.echo(f"{'NAME':<{width}}  {'VERSION':<{vwidth}}  STATUS  ORIGIN")
    for r in rows:
        status = "loaded" if r["status"] == "loaded" else f"{r['status']}: {r['reason']}"
        typer.echo(f"{r['name']:<{width}}  {r['version']:<{vwidth}}  {status}  ({r['origin']})")


# --- subcommands of other modules (one line each) ------------------------------------
from .compare.cli import compare as _compare  # noqa: E402

app.command("compare", cls=PlainCommand)(_compare)
from .authoring.command import explain, new_driver  # noqa: E402

app.command("new-driver", cls=PlainCommand)(new_driver)
app.command("explain", cls=PlainCommand)(explain)
from .conformance.command import check_driver  # noqa: E402

app.command("check-driver", cls=LegacyJsonCommand)(check_driver)
from .realkernel.command import kernel_app, snapshot  # noqa: E402

app.add_typer(kernel_app); app.command("snapshot", cls=PlainCommand)(snapshot)  # noqa: E702


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning expected errors into one line.

    Driver code runs with the watchdog's hard stop (a call that cannot be
    interrupted ends the process with a line naming it), the user's Ctrl-C
    told apart from a driver's KeyboardInterrupt, and os._exit trapped.
    """
    try:
        with interrupts(), hard_stop(), trap_exits():
            rc = app(args=argv, standalone_mode=False)
            if user_interrupted() or rc == 130:
                raise KeyboardInterrupt  # typer turned it into exit code 130
        if isinstance(rc, int) and rc:
            sys.exit(rc)  # a command's typer.Exit(code), returned in this mode
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except UsageError as exc:
        typer.echo(f"mmplug: error: {_one_line(str(exc))}", err=True)
        sys.exit(EXIT_USAGE)
    except PluginError as exc:
        typer.echo(f"mmplug: error: {_one_line(str(exc))}", err=True)
        sys.exit(EXIT_PLUGIN)
    except MmplugError as exc:
        typer.echo(f"mmplug: error: {_one_line(str(exc))}", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:  # the parser's usage errors and anything unexpected
        if type(exc).__name__ == "Abort":
            if isinstance(exc.__context__, KeyboardInterrupt):
                _interrupted()   # click turns Ctrl-C into Abort
            sys.exit(EXIT_FAILED)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = exc.format_message()
            if message:  # empty when `mmplug` alone printed the help
                typer.echo(f"mmplug: error: {_one_line(message)}", err=True)
            sys.exit(EXIT_USAGE)
        if isinstance(exc, OSError) and exc.filename is not None and exc.errno in _PATH_ERRNOS:
            # a path from the command line that the system refuses
            name = str(exc.filename)
            name = name if len(name) <= 120 else name[:120] + "..."
            typer.echo(f"mmplug: error: {name!r}: {exc.strerror}", err=True)
            sys.exit(EXIT_USAGE)
        if os.environ.get("MMPLUG_DEBUG"):
            raise
        typer.echo(f"mmplug: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                   "(set MMPLUG_DEBUG=1 for a traceback)", err=True)
        sys.exit(EXIT_INTERNAL)


#: errors of a path itself: too long, missing, not a folder, a folder, a link loop, denied
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP,
                errno.EACCES, errno.EROFS}


def _interrupted() -> None:
    typer.echo("mmplug: interrupted", err=True)
    sys.exit(130)


def _one_line(text: str, limit: int = 500) -> str:
    """An error as one line of at most `limit` characters: never a whole input echoed."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


if __name__ == "__main__":
    main()
