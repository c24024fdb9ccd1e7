"""One JSON convention on every command: `--json` to stdout, `-o FILE` to a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from clihelp import KNOBPOOL, SIMPLEPOOL, run

from mmplug.cli import app
from mmplug.commandline import legacy_json_file
from mmplug.errors import UsageError
from mmplug.outputs import write_atomic

#: each command with arguments that make it quick; {tmp} is a fresh directory
COMMANDS = {
    "plugins": ["plugins", "--load", SIMPLEPOOL],
    "explain-rule": ["explain", "MIG-7"],
    "explain-row": ["explain", "efficiency"],
    "new-driver": ["new-driver", "jsonpool", "--dir", "{tmp}/proj"],
    "check-driver": ["check-driver", SIMPLEPOOL, "-k", "MIG-2", "--quick", "--no-races"],
    "compare": ["compare", KNOBPOOL, "--zone-size", "8MiB"],
    "compare-explain": ["compare", "--explain", "ceiling"],
}


def _argv(name: str, tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in COMMANDS[name]]


@pytest.mark.parametrize("name", COMMANDS)
def test_json_prints_json_alone_and_o_writes_the_same(capsys, tmp_path, name):
    target = tmp_path / "out.json"
    code, out, _ = run(capsys, *_argv(name, tmp_path), "--json", "-o", str(target))
    assert code == 0
    doc = json.loads(out)                      # stdout is one JSON document, nothing else
    assert json.loads(target.read_text()) == doc
    assert target.read_text() == out


@pytest.mark.parametrize("name", COMMANDS)
def test_o_alone_keeps_the_text_and_writes_json(capsys, tmp_path, name):
    target = tmp_path / "out.json"
    code, out, _ = run(capsys, *_argv(name, tmp_path), "-o", str(target))
    assert code == 0
    json.loads(target.read_text())
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)                       # the usual text


def test_o_dash_is_json_on_stdout(capsys, tmp_path):
    code, out, _ = run(capsys, "explain", "ISO-4", "-o", "-")
    assert code == 0 and json.loads(out)["id"] == "ISO-4"


def test_an_unwritable_output_is_one_line_and_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, "plugins", "-o", str(tmp_path / "no" / "such" / "dir.json"))
    assert code == 2 and err.startswith("mmplug: error: cannot write") and err.count("\n") == 1


def test_check_driver_json_file_still_works_with_a_note(capsys, tmp_path):
    target = tmp_path / "report.json"
    code, out, err = run(capsys, "check-driver", SIMPLEPOOL, "-k", "MIG-2", "--quick",
                         "--json", str(target))
    assert code == 0 and "Total for simplepool" in out
    assert json.loads(target.read_text())["totals"]["total"] == 1
    assert "`--json " in err and "deprecated" in err and f"-o {target}" in err
    code, out, err = run(capsys, "check-driver", "--json", "-", SIMPLEPOOL, "-k", "MIG-2",
                         "--quick")
    assert code == 0 and json.loads(out)["driver"] == "simplepool" and "deprecated" in err
    # the new form takes no value: the driver after --json is the driver
    code, out, err = run(capsys, "check-driver", "--json", SIMPLEPOOL, "-k", "MIG-2", "--quick")
    assert code == 0 and json.loads(out)["driver"] == "simplepool" and err == ""


def _legacy(*args: str) -> list[str]:
    return legacy_json_file(typer.main.get_command(app).commands["check-driver"], list(args))


def test_the_former_json_file_is_told_from_a_driver_by_counting_arguments(capsys):
    assert _legacy("drv", "--json", "r.json") == ["drv", "--output", "r.json"]
    assert _legacy("--json", "r.json", "drv") == ["--output", "r.json", "drv"]
    assert _legacy("--json=r.json", "drv") == ["--output", "r.json", "drv"]
    assert _legacy("drv", "--json", "-") == ["drv", "--json"]
    assert _legacy("--json", "drv", "-k", "MIG-2") == ["--json", "drv", "-k", "MIG-2"]
    assert _legacy("-k", "MIG-2", "--json", "drv") == ["-k", "MIG-2", "--json", "drv"]
    assert _legacy("drv", "--json") == ["drv", "--json"]
    capsys.readouterr()


def test_files_are_written_whole_with_the_usual_mode(tmp_path):
    target = tmp_path / "f.json"
    umask = os.umask(0o022)
    os.umask(umask)
    write_atomic(target, "{}\n")
    assert target.read_text() == "{}\n" and target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name != "f.json"]   # no temporary left
    target.chmod(0o600)
    write_atomic(target, "[]\n")
    assert target.read_text() == "[]\n" and target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(UsageError, match="cannot write"):
        write_atomic(tmp_path / "missing" / "f.json", "x")
