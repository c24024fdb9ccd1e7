"""What every `mmplug` command shares: plain help text and one JSON convention.

Help: typer's own help shows Python type names (`<bool>`, `<list[str]>`,
`{driver}`) and squeezes descriptions into a narrow column.  `PlainCommand`
and `PlainGroup` print the help from each parameter's declared metavar
(`SEED`, `DRIVER...`), flags with none, as `--help` of a Unix tool does.

JSON: `--json` prints the command's JSON on stdout instead of its text;
`-o/--output FILE` also writes the same JSON to FILE (atomically: a reader
never sees half a file).  `json_option()` and `output_option()` declare the
two options with the same words everywhere; `emit_json()` honours both.
check-driver's former `--json FILE` still works, with a note on stderr.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from .outputs import write_atomic

#: help text never gets narrower or wider than this
MIN_WIDTH, MAX_WIDTH = 60, 100
#: the first column (options and their metavars) takes at most this much
MAX_FIRST_COLUMN = 30


# --- help -------------------------------------------------------------------------------

def _metavar(param: Any) -> str:
    """The placeholder of a parameter's value: its declared metavar, else its name."""
    return param.metavar or (param.name or "VALUE").upper()


def _argument_usage(param: Any) -> str:
    name = _metavar(param).rstrip(".")
    if param.nargs == -1:
        return f"{name}..." if param.required else f"[{name}...]"
    return name if param.required else f"[{name}]"


def _option_names(param: Any) -> str:
    """`-k, --select RULE`, `--races / --no-races`, `-x, --exit-first`."""
    def joined(opts: Iterable[str]) -> str:
        ordered = sorted(opts, key=lambda o: (o.startswith("--"), o))
        return ", ".join(ordered)

    text = joined(param.opts)
    if param.secondary_opts:
        text += " / " + joined(param.secondary_opts)
    if not (param.is_flag or getattr(param, "count", False)):
        text += f" {_metavar(param)}"
    return text


def _default_note(param: Any) -> str:
    """`[default: 1]` for an option with a value worth showing; flags show their pair's side."""
    if getattr(param, "show_default", True) is False:
        return ""
    default = param.default
    if callable(default) or default is None or default == () or default == []:
        return ""
    if param.is_flag:
        if param.secondary_opts and isinstance(default, bool):
            chosen = param.opts if default else param.secondary_opts
            return f"[default: {max(chosen, key=len)}]"
        return ""
    if isinstance(default, bool):
        return ""
    return f"[default: {default}]"


def _width(ctx: Any, formatter: Any) -> int:
    return max(MIN_WIDTH, min(getattr(formatter, "width", 78) or 78, MAX_WIDTH))


def _definitions(rows: list[tuple[str, str]], width: int) -> list[str]:
    """Two columns: names, then help wrapped in the rest of the line."""
    if not rows:
        return []
    first = min(max(len(name) for name, _ in rows), MAX_FIRST_COLUMN)
    room = max(width - first - 4, 30)
    lines = []
    for name, text in rows:
        wrapped = textwrap.wrap(text, room, break_on_hyphens=False) or [""]
        if len(name) > first:
            lines.append(f"  {name}")
            lines += [f"  {'':{first}}  {w}" for w in wrapped]
        else:
            lines.append(f"  {name:<{first}}  {wrapped[0]}".rstrip())
            lines += [f"  {'':{first}}  {w}" for w in wrapped[1:]]
    return lines


def _paragraphs(text: str, width: int) -> list[str]:
    out: list[str] = []
    for para in textwrap.dedent(text or "").strip().split("\n\n"):
        if para.strip():
            out += textwrap.wrap(" ".join(para.split()), width - 2,
                                 initial_indent="  ", subsequent_indent="  ")
            out.append("")
    return out


def _parameter_sections(command: Any, ctx: Any, width: int) -> list[str]:
    arguments, options = [], []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        help_text = " ".join((getattr(param, "help", None) or "").split())
        if param.param_type_name == "argument":
            arguments.append((_argument_usage(param).strip("[]"), help_text))
        else:
            note = _default_note(param)
            options.append((_option_names(param), f"{help_text}  {note}".strip()))
    lines: list[str] = []
    if arguments:
        lines += ["Arguments:", *_definitions(arguments, width), ""]
    if options:
        lines += ["Options:", *_definitions(options, width), ""]
    return lines


def _usage_line(command: Any, ctx: Any) -> str:
    pieces = ["[OPTIONS]"] if any(p.param_type_name == "option"
                                  for p in command.get_params(ctx)) else []
    pieces += [_argument_usage(p) for p in command.get_params(ctx)
               if p.param_type_name == "argument"]
    return " ".join(pieces)


class _PlainHelp:
    """Help and usage written from metavars; `_usage` and `_more` are what differs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the terminal's width, up to MAX_WIDTH (click stops at 80)
        self.context_settings.setdefault("max_content_width", MAX_WIDTH)  # type: ignore[attr-defined]

    def _usage(self, ctx: Any) -> str:
        return _usage_line(self, ctx)

    def _more(self, ctx: Any, width: int) -> list[str]:
        return _paragraphs(getattr(self, "epilog", None) or "", width)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [self._usage(ctx)]

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write(f"Usage: {ctx.command_path} {self._usage(ctx)}\n")

    def format_help(self, ctx: Any, formatter: Any) -> None:
        width = _width(ctx, formatter)
        lines = [f"Usage: {ctx.command_path} {self._usage(ctx)}", ""]
        lines += _paragraphs(getattr(self, "help", None) or "", width)
        lines += _parameter_sections(self, ctx, width)
        lines += self._more(ctx, width)
        formatter.write("\n".join(lines).rstrip() + "\n")


class PlainCommand(_PlainHelp, TyperCommand):
    """A command whose help names values by their metavars, never by Python types."""


class PlainGroup(_PlainHelp, TyperGroup):
    """`mmplug --help`: the same plain style, and one line per command."""

    def _usage(self, ctx: Any) -> str:
        return "[OPTIONS] COMMAND [ARGS]..."

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            # `mmplug` alone: the help on stdout, as --help, and the usage error's code
            typer.echo(ctx.get_help())
            raise typer.Exit(2)
        return super().parse_args(ctx, args)

    def _more(self, ctx: Any, width: int) -> list[str]:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10 * width)))
        if not rows:
            return []
        return ["Commands:", *_definitions(rows, width), "",
                f"  `{ctx.command_path} COMMAND --help` shows the options of a command."]


# --- one JSON convention ------------------------------------------------------------------

def json_option(what: str = "the output") -> Any:
    """`--json`: print `what` as JSON on stdout instead of text."""
    return typer.Option("--json", help=f"Print {what} as JSON on stdout instead of text.")


def output_option(what: str = "the output") -> Any:
    """`-o/--output FILE`: also write `what` as JSON to FILE."""
    return typer.Option("--output", "-o", metavar="FILE",
                        help=f"Also write {what} as JSON to FILE ('-': stdout, as --json).")


def json_text(document: Any) -> str:
    """The one JSON style of every command: indented, one trailing newline."""
    return json.dumps(document, indent=2) + "\n"


def wants_json(as_json: bool, output: str | None) -> bool:
    """Whether stdout carries JSON: `--json`, or `-o -`."""
    return as_json or output == "-"


def emit_json(document: Any, *, as_json: bool, output: str | None) -> bool:
    """Honour `--json` and `-o FILE` for `document` (a JSON-ready value or its text).

    Returns whether the JSON went to stdout, in which case the caller prints
    no text.
    """
    text = document if isinstance(document, str) else json_text(document)
    if output not in (None, "-"):
        write_atomic(output, text)
    to_stdout = wants_json(as_json, output)
    if to_stdout:
        typer.echo(text, nl=False)
    return to_stdout


# --- check-driver's former `--json FILE` ----------------------------------------------------

def _value_options(command: Any) -> set[str]:
    """The option strings of `command` that take a value."""
    found: set[str] = set()
    for param in command.params:
        if param.param_type_name == "option" and not param.is_flag and not getattr(
                param, "count", False):
            found.update(param.opts)
    return found


def _positionals(args: list[str], takes_value: set[str]) -> list[int]:
    """Indices of the positional arguments in `args`."""
    found: list[int] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            found += range(i + 1, len(args))
            break
        if token.startswith("-") and token != "-":
            # `--opt VALUE` and `-k VALUE` skip their value; `--opt=VALUE`, `-kVALUE`
            # and flags stand alone
            if token in takes_value:
                i += 1
        else:
            found.append(i)
        i += 1
    return found


def legacy_json_file(command: Any, args: list[str]) -> list[str]:
    """Turn a former `--json FILE` into `-o FILE` (`--json -` into `--json`), with a note.

    `--json` is a flag now, so a FILE after it is recognised by counting: it
    is one positional argument more than the command takes.
    """
    counts = [p.nargs for p in command.params if p.param_type_name == "argument"]
    wanted = -1 if any(n < 0 for n in counts) else sum(counts)  # -1: takes any number
    out = list(args)
    for i, token in enumerate(out):
        value = None
        if token.startswith("--json="):
            value, width = token.split("=", 1)[1], 1
        elif token == "--json" and i + 1 < len(out) and (
                out[i + 1] == "-" or not out[i + 1].startswith("-")):
            if len(_positionals(out, _value_options(command))) > wanted >= 0:
                value, width = out[i + 1], 2
        if value is None:
            continue
        out[i:i + width] = ["--json"] if value == "-" else ["--output", value]
        shown = value if len(value) <= 100 else value[:100] + "..."
        typer.echo(f"mmplug {command.name}: `--json {shown}` is deprecated: use "
                   + ("`--json`" if value == "-" else f"`-o {shown}`")
                   + " (--json prints JSON on stdout, -o FILE writes it to FILE)", err=True)
        break
    return out


class LegacyJsonCommand(PlainCommand):
    """A PlainCommand that still accepts its former `--json FILE`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, legacy_json_file(self, args))
