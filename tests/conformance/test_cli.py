"""`mmplug check-driver`: output lines, totals, JSON, exit codes 0/1/2/3/4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmplug import cli
from mmplug.conformance import runner
from mmplug.conformance.model import CheckSpec
from mmplug.conformance.registry import Check

HERE = Path(__file__).parent
SIMPLEPOOL = str(HERE.parent / "drivers" / "simplepool.py")


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(["check-driver", *args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_passing_driver_lines_and_total(capsys) -> None:
    code, out, _ = run(capsys, SIMPLEPOOL, "--quick", "--no-races", "-k", "ISO-4", "-k", "PUT-3")
    lines = out.splitlines()
    assert code == 0
    assert "test ISO-4 driver leaves lru of an isolated page alone: OK" in lines
    assert any(ln.startswith("test PUT-3 ") and ln.endswith(": OK (not supported)")
               for ln in lines)
    assert lines[-1].startswith("Total for simplepool: ")
    assert lines[-1].endswith(", Failed: 0, Same violation: 0, Warnings: 0")


def test_failing_driver_exit_1_with_rule_page_and_repro(capsys) -> None:
    path = str(HERE / "broken" / "touches_lru.py")
    code, out, _ = run(capsys, path, "-k", "ISO-4/lru-untouched", "--seed", "5")
    assert code == 1
    assert "test ISO-4 driver leaves lru of an isolated page alone: FAIL" in out
    assert "    ISO-4: page.lru of an isolated page was changed" in out
    assert "driver broken_touches_lru" in out and "callback free" in out
    assert "    page: pfn 0x" in out
    assert f"    reproduce: mmplug check-driver {path} --seed 5 -k ISO-4/lru-untouched" in out
    assert "Total for broken_touches_lru: 1, Succeeded: 0, Failed: 1, Same violation: 0, " \
           "Warnings: 0" in out


def test_json_to_stdout_and_file(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, SIMPLEPOOL, "-k", "MIG-2", "--json", "-", "--seed", "4")
    data = json.loads(out)
    assert code == 0 and data["seed"] == 4 and data["driver"] == "simplepool"
    assert {"check", "rule", "verdict", "message"} <= set(data["results"][0])
    target = tmp_path / "report.json"
    code, out, _ = run(capsys, SIMPLEPOOL, "-k", "MIG-2", "--json", str(target))
    assert code == 0 and out.splitlines()[-1].startswith("Total for simplepool")
    assert json.loads(target.read_text())["totals"]["total"] == len(data["results"])


@pytest.mark.parametrize("args", [
    ["no_such_driver_anywhere"],
    [SIMPLEPOOL, "-k", "NOPE"],
    [SIMPLEPOOL, "--max-examples", "0"],
    [SIMPLEPOOL, "--seed", "many"],
    [SIMPLEPOOL, "--scenario", "two_compactors"],
])
def test_usage_errors_exit_2(capsys, args: list[str]) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("mmplug: error: ") and len(err.strip().splitlines()) == 1


def test_driver_that_does_not_validate_exits_4(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "nocallbacks.py"
    bad.write_text("import mmplug\n\n@mmplug.hookimpl\ndef isolate_page(page, mode):\n"
                   "    return True\n")
    code, _, err = run(capsys, str(bad))
    assert code == 4 and "missing callback" in err


def test_internal_error_exits_3(capsys, monkeypatch) -> None:
    def crash(ctx):
        raise RuntimeError("suite bug")

    broken = Check(CheckSpec("API-1/crash", ("API-1",), "crashes"), crash)
    monkeypatch.setattr(runner, "all_checks", lambda: [broken])
    code, _, err = run(capsys, SIMPLEPOOL)
    assert code == 3
    assert err.startswith("mmplug: internal error: check API-1/crash crashed: RuntimeError")


def test_replay_of_a_race_schedule(capsys) -> None:
    races = pytest.importorskip("mmplug.races")
    result = races.run_once(SIMPLEPOOL, "two_compactors")
    assert result.ok
    code, out, _ = run(capsys, SIMPLEPOOL, "-k", "RACE", "--scenario", "two_compactors",
                       "--replay", result.schedule)
    assert code == 0 and "test RACE " in out and ": OK" in out
    code, _, err = run(capsys, SIMPLEPOOL, "-k", "RACE", "--replay", "two_compactors@zz!")
    assert code == 2
