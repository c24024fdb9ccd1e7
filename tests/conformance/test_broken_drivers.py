"""check-driver must fail every deliberately broken driver on the rule it breaks,
and pass the correct driver it was copied from."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from mmplug.conformance import FAIL, NOT_SUPPORTED, OK, run_suite

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
SIMPLEPOOL = HERE.parent / "drivers" / "simplepool.py"

#: broken driver -> the rule check-driver must report it breaking
EXPECTED = {
    "sets_pg_isolated": "ISO-3",
    "no_clear_movable": "MIG-7",
    "no_set_movable": "MIG-7",
    "no_newpage_ref": "MIG-7",
    "partial_copy": "MIG-7",
    "stale_handle": "MIG-7",
    "putback_not_relisted": "PUT-2",
    "touches_lru": "ISO-4",
    "free_isolated_wrong": "REL-2",
    "isolate_keeps_page": "ISO-2",
    "positive_return": "MIG-8",
    "raises": "MIG-8",
    "movable_no_lock": "FLG-4",
    "unlocks_in_putback": "PUT-1",
    "leaks_page": "REL-1",
    "leaks_old_page": "MIG-7",
    "isolate_returns_none": "ISO-2",
    "eagain_keeps_newpage": "MIG-8",
    "destroy_keeps_pages": "REL-3",
    "refusal_changes": "ISO-6",
    "hangs": "MIG-8",
    "newpage_flags": "MIG-7",
    # BaseExceptions, exits and hangs are the driver's failures too
    "exits_in_callback": "MIG-8",
    "interrupts_itself": "ISO-2",
    "custom_base_exception": "PUT-2",
    "exits_hard": "MIG-8",
    "free_raises": "API-1",
    "free_hangs": "API-1",
    "sleeps": "MIG-8",
}

#: checked on a few checks only (tests/reliability): a hang costs its time limit in every
#: check, and os._exit must not get a chance to end the test process
SLOW_OR_FATAL = {"hangs", "free_hangs", "sleeps", "exits_hard"}


def test_every_broken_driver_has_an_expectation() -> None:
    assert sorted(p.stem for p in BROKEN.glob("*.py")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 15
    groups = {rule.split("-")[0] for rule in EXPECTED.values()}
    assert {"FLG", "ISO", "MIG", "PUT", "REL"} <= groups


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_driver_is_simplepool_plus_one_mistake(name: str) -> None:
    """Each copy stays the reference driver but for its header and its marked mistake,
    so a change to simplepool cannot leave the broken drivers testing an older driver."""
    ref = SIMPLEPOOL.read_text().splitlines()
    got = (BROKEN / f"{name}.py").read_text().splitlines()
    changed = [line for line in difflib.unified_diff(ref, got, lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) <= 30, "\n".join(changed)
    assert any("the mistake" in line for line in changed if line.startswith("+"))


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - SLOW_OR_FATAL))
def test_broken_driver_fails_on_its_rule(name: str) -> None:
    report = run_suite(str(BROKEN / f"{name}.py"), quick=True, races=False)
    failed = {r.rule for r in report.results if r.verdict == FAIL}
    assert EXPECTED[name] in failed, (name, failed, [r.message for r in report.failures()])
    for r in report.failures():
        assert r.repro.startswith("mmplug check-driver ") and "--seed 0" in r.repro
        assert r.driver == f"broken_{name}"


def test_hung_callback_is_stopped_and_named() -> None:
    report = run_suite(str(BROKEN / "hangs.py"), select=["MIG-7/success"])
    (result,) = report.results
    assert result.verdict == FAIL and result.rule == "MIG-8"
    assert result.hook == "migratepage" and "hung" in result.message
    assert result.page and result.page.startswith("pfn ")


def test_failure_names_callback_and_decoded_page() -> None:
    report = run_suite(str(BROKEN / "no_set_movable.py"), select=["MIG-7/success"])
    (result,) = report.results
    assert result.verdict == FAIL and result.rule == "MIG-7"
    assert result.hook == "migratepage"
    assert "flags" in result.page and "mapping" in result.page
    assert "__SetPageMovable" in result.message


def test_simplepool_passes_everything() -> None:
    report = run_suite(str(SIMPLEPOOL))
    assert report.passed, [f"{r.check}: {r.message}" for r in report.failures()]
    verdicts = {r.check: r.verdict for r in report.results}
    assert verdicts["MIG-8/eagain-retried"] == OK       # the pin/busy knobs are used
    assert verdicts["PUT-3/driver-failure"] == NOT_SUPPORTED  # no "map" knob
    assert verdicts["ISO-6/refusal-unchanged"] == NOT_SUPPORTED  # never refuses
    assert report.totals["failed"] == 0
