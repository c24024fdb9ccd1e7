"""`--help` of every command: plain metavars, no Python type names, room for the words."""

from __future__ import annotations

import re

import pytest
import typer
from clihelp import run

from mmplug.cli import app

GROUP = typer.main.get_command(app)


def _leaves(group, path=()):
    """Every command's path, the commands of a command group (`mmplug kernel run`) included."""
    for name, command in sorted(group.commands.items()):
        yield " ".join((*path, name)), command
        if hasattr(command, "commands"):
            yield from _leaves(command, (*path, name))


LEAVES = dict(_leaves(GROUP))
COMMANDS = sorted(LEAVES)

#: what typer prints when a parameter has no plain metavar
TYPE_NAMES = [
    re.compile(r"<[a-z][\w\[\]|, ]*>"),                       # <bool>, <list[str]>, <int range>
    re.compile(r"\{[a-z_]+\}"),                               # {driver}
    re.compile(r"\[\["),                                      # [[DRIVER]...]...
    re.compile(r"\]\.\.\.\]?\.\.\."),
    re.compile(r"\bx>=\d|\bx<=\d"),                           # [x>=1]
    re.compile(r"\b(?:list|dict|tuple)\[|\bOptional\b|\bNoneType\b|\bPath\b"),
    re.compile(r"[│╭╰─]"),                                    # rich's boxes
]
METAVAR = re.compile(r"^[A-Z][A-Z0-9_]*(?:[.|@][A-Za-z0-9_]+)*(?:\.\.\.)?$")


def _help(capsys, monkeypatch, *argv: str, columns: int = 100) -> str:
    """The help text, its program name (here the test runner's) written as `mmplug`."""
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run(capsys, *argv, "--help")
    assert code == 0, err
    first, rest = out.split("\n", 1)
    path, options = first.split(" [OPTIONS]", 1)
    assert path.startswith("Usage: ") and path.endswith(" ".join(argv))
    return f"Usage: {' '.join(['mmplug', *argv])} [OPTIONS]{options}\n{rest}"


def test_every_command_is_covered():
    assert set(COMMANDS) >= {"plugins", "compare", "check-driver", "new-driver", "explain",
                             "kernel", "kernel run", "kernel setup", "snapshot"}


@pytest.mark.parametrize("argv", [[]] + [c.split() for c in COMMANDS],
                         ids=lambda a: " ".join(a) or "mmplug")
def test_help_shows_no_python_type_names(capsys, monkeypatch, argv):
    out = _help(capsys, monkeypatch, *argv)
    assert out.startswith(f"Usage: mmplug {' '.join(argv)}".rstrip() + " ")
    for pattern in TYPE_NAMES:
        assert not pattern.search(out), f"{pattern.pattern!r} in:\n{out}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_value_has_a_plain_metavar_and_flags_have_none(name):
    command = LEAVES[name]
    for param in command.params:
        if param.param_type_name == "option" and (param.is_flag or param.count):
            continue
        assert param.metavar and METAVAR.match(param.metavar.replace("FILE.toml", "FILE")), (
            f"mmplug {name}: {param.opts} has metavar {param.metavar!r}")


@pytest.mark.parametrize("name", COMMANDS)
def test_descriptions_get_the_width_of_the_terminal(capsys, monkeypatch, name):
    out = _help(capsys, monkeypatch, *name.split(), columns=100)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    options = lines[lines.index("Options:") + 1:]
    options = options[:options.index("")] if "" in options else options
    starts = {len(m.group(1)) for line in options if (m := re.match(r"(  \S.*?  +)\S", line))}
    # One description column, no wider than the longest option's names allow.
    assert len(starts) == 1 and starts.pop() <= 34


def test_check_driver_help_keeps_descriptions_in_one_column(capsys, monkeypatch):
    out = _help(capsys, monkeypatch, "check-driver", columns=100)
    assert "  DRIVER" in out and "Usage: mmplug check-driver [OPTIONS] DRIVER\n" in out
    select = re.search(r"-k, --select RULE +(.*)\n +(.*)\n", out)
    assert select and "ISO-4/lru-untouched" in select.group(0)
    assert "--races / --no-races" in out and "[default: --races]" in out
    assert "--seed N" in out and "--max-examples N" in out


def test_usage_of_optional_and_repeated_arguments(capsys, monkeypatch):
    assert "Usage: mmplug compare [OPTIONS] [DRIVER...]\n" in _help(capsys, monkeypatch, "compare")
    assert "Usage: mmplug explain [OPTIONS] [RULE|ROW]\n" in _help(capsys, monkeypatch, "explain")
    assert "Usage: mmplug new-driver [OPTIONS] NAME\n" in _help(capsys, monkeypatch, "new-driver")


def test_mmplug_alone_prints_the_help_and_no_error(capsys):
    code, out, err = run(capsys)
    assert code == 2 and err == ""
    assert out.startswith("Usage: ") and "Commands:" in out and "check-driver" in out
