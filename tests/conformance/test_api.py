"""The public API of mmplug.conformance: list_checks, run_suite, Report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmplug import UsageError, rules
from mmplug.conformance import (
    FAIL,
    NOT_SUPPORTED,
    OK,
    SAME,
    WARN,
    CheckResult,
    Report,
    list_checks,
    run_suite,
)
from mmplug.conformance.model import KINDS, CheckSpec

HERE = Path(__file__).parent
SIMPLEPOOL = str(HERE.parent / "drivers" / "simplepool.py")


def test_list_checks_ids_rules_and_kinds() -> None:
    checks = list_checks()
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
    for c in checks:
        assert c.kind in KINDS
        assert c.rule == c.id.split("/")[0]
        for rule in c.rules:
            assert rule in ("FUZZ", "RACE") or rules.exists(rule), (c.id, rule)
    groups = {c.rule.split("-")[0] for c in checks}
    assert {"API", "FLG", "ISO", "MIG", "PUT", "REL", "FUZZ", "RACE"} <= groups
    assert {c.kind for c in checks} == set(KINDS)


def test_select_by_rule_prefix_and_check_id() -> None:
    specs = {c.id: c for c in list_checks()}
    iso = run_suite(SIMPLEPOOL, select=["ISO"], races=False, quick=True)
    assert {r.check for r in iso.results} == {i for i, c in specs.items()
                                             if c.matches("ISO") and c.kind != "races"}
    assert "ISO-4/lru-untouched" in {r.check for r in iso.results}
    assert "MIG-2/enomem" not in {r.check for r in iso.results}
    one = run_suite(SIMPLEPOOL, select=["ISO-4/lru-untouched"], quick=True)
    assert [r.check for r in one.results] == ["ISO-4/lru-untouched"]
    with pytest.raises(UsageError):
        run_suite(SIMPLEPOOL, select=["NOPE-9"])


def test_select_patterns() -> None:
    spec = CheckSpec("MIG-10/all-modes", ("MIG-10", "MIG-7"), "t")
    assert spec.matches("MIG-7") and spec.matches("mig") and spec.matches("MIG-")
    assert spec.matches("MIG-10/") and spec.matches("MIG-10/all-modes")
    assert not spec.matches("MIG-1") and not spec.matches("ISO") and not spec.matches("MIG-7/")
    both = run_suite(SIMPLEPOOL, select=["ISO-4/lru-untouched,MIG-2/enomem"], quick=True)
    assert [r.check for r in both.results] == ["ISO-4/lru-untouched", "MIG-2/enomem"]


def test_same_seed_same_report_and_json_shape() -> None:
    def run(seed: int) -> dict:
        d = run_suite(SIMPLEPOOL, seed=seed, quick=True, races=False).to_dict()
        d.pop("seconds")
        for r in d["results"]:
            r.pop("seconds")
        return d

    assert run(7) == run(7)
    report = run_suite(SIMPLEPOOL, select=["MIG-7/success"], seed=3)
    data = json.loads(report.to_json())
    assert data["driver"] == "simplepool" and data["driver_version"] == "1.0"
    assert data["seed"] == 3 and data["mmplug_version"]
    assert data["totals"] == {"total": 1, "succeeded": 1, "failed": 0, "same": 0, "warnings": 0}
    assert data["results"][0]["rule"] == "MIG-7" and data["results"][0]["verdict"] == OK


def test_on_result_and_exit_first() -> None:
    seen: list[CheckResult] = []
    report = run_suite(str(HERE / "broken" / "movable_no_lock.py"), exit_first=True,
                       on_result=seen.append, races=False)
    assert seen == report.results
    assert seen[-1].verdict == FAIL and sum(r.verdict == FAIL for r in seen) == 1


def test_totals_count_verdicts() -> None:
    first = CheckResult("A-3/x", "A-3", "t", FAIL)
    again = CheckResult("A-5/x", "A-3", "t", SAME, same_as="A-3/x")
    rep = Report("d", "1", "0", 0, [
        CheckResult("A-1/x", "A-1", "t", OK), CheckResult("A-2/x", "A-2", "t", NOT_SUPPORTED),
        first, CheckResult("A-4/x", "A-4", "t", WARN), again])
    assert rep.totals == {"total": 5, "succeeded": 2, "failed": 1, "same": 1, "warnings": 1}
    assert not rep.passed and again.failed
    assert rep.failures() == [first] and rep.hits(first) == [again]


def test_knob_less_driver_gets_not_supported(tmp_path: Path) -> None:
    src = (HERE.parent / "drivers" / "simplepool.py").read_text()
    src = src.replace('knobs={"pin", "busy"}', "knobs=()").replace(
        'name="simplepool"', 'name="knobless"')
    path = tmp_path / "knobless.py"
    path.write_text(src)
    report = run_suite(str(path), select=["MIG-8/eagain-retried"])
    assert report.results[0].verdict == NOT_SUPPORTED
    assert "knob" in report.results[0].message
