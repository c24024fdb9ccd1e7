"""check-driver must fail every deliberately broken driver on the rule it breaks,
and pass the correct driver it was copied from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conformance.broken import regenerate
from conformance.broken.mistakes import MISTAKES, SIMPLEPOOL, AnchorError, Edit, Mistake
from mmplug.conformance import FAIL, NOT_SUPPORTED, OK, SAME, run_suite

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
#: the rule check-driver must report on each broken driver: the mistake table's
EXPECTED = {m.name: m.rule for m in MISTAKES}
REGENERATE = "python -m tests.conformance.broken.regenerate"


def test_every_broken_driver_has_a_row_in_the_table() -> None:
    files = sorted(p.name for p in BROKEN.glob("*.py") if p.name not in regenerate.NOT_DRIVERS)
    assert files == sorted(f"{name}.py" for name in EXPECTED), f"run {REGENERATE}"
    assert len(EXPECTED) == len(MISTAKES) >= 15             # names are unique
    groups = {rule.split("-")[0] for rule in EXPECTED.values()}
    assert {"FLG", "ISO", "MIG", "PUT", "REL"} <= groups
    for m in MISTAKES:
        assert m.rule not in m.also_expected and m.summary.endswith(".")


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.name)
def test_edit_anchors_match_once_in_the_base_driver(mistake: Mistake) -> None:
    source = mistake.base_path.read_text()
    for edit in mistake.edits:
        span = edit.locate(source)
        assert source[span.start:span.end] == edit.anchor


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.name)
def test_broken_driver_is_generated_from_its_base(mistake: Mistake) -> None:
    """Each committed driver is its base driver (simplepool, mostly) of today plus its one
    marked mistake, so a change to the base cannot leave the broken drivers testing an
    older driver."""
    made = mistake.render(mistake.base_path.read_text())
    assert mistake.path.read_text() == made, f"{mistake.path.name} is out of date: run {REGENERATE}"
    assert made.startswith(f'"""{mistake.driver}: {mistake.base} with one mistake, which breaks '
                           f"{mistake.rule}.\n\n{textwrap.fill(mistake.summary, 88)}\n")
    assert f'name="{mistake.driver}"' in made and "# the mistake" in made
    for edit in mistake.edits:
        assert edit.replacement in made


def test_anchor_must_match_exactly_once() -> None:
    source = "def f():\n    x = 1\n    x = 1\n\n\ndef g():\n    x = 1\n"
    with pytest.raises(AnchorError, match="occurs 3 times in simplepool"):
        Edit("    x = 1\n", "    x = 2  # the mistake\n").locate(source)
    with pytest.raises(AnchorError, match="occurs 2 times in f"):
        Edit("    x = 1\n", "    x = 2  # the mistake\n", within="f").locate(source)
    with pytest.raises(AnchorError, match="occurs 0 times in g"):
        Edit("    y = 1\n", "    y = 2  # the mistake\n", within="g").locate(source)
    with pytest.raises(AnchorError, match="defines no h"):
        Edit("    x = 1\n", "    x = 2  # the mistake\n", within="h").locate(source)
    span = Edit("    x = 1\n", "    x = 2  # the mistake\n", within="g").locate(source)
    assert source[span.start:] == "    x = 1\n"


def test_an_edit_is_marked_and_a_rule_exists() -> None:
    with pytest.raises(ValueError, match="carries none"):
        Edit("x = 1\n", "x = 2\n")
    edit = Edit("x = 1\n", "x = 2  # the mistake\n")
    with pytest.raises(ValueError, match="no rule"):
        Mistake("bad", "MIG-99", "A mistake.", (edit,))
    with pytest.raises(ValueError, match="no rule"):
        Mistake("bad", "MIG-7", "A mistake.", (edit,), also_expected={"XYZ-1"})


def test_regenerate_writes_every_driver_and_checks_them(tmp_path: Path, capsys) -> None:
    assert regenerate.main(["--check"]) == 0                # the committed files are current
    assert regenerate.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.py" for n in EXPECTED)
    for m in MISTAKES:
        assert (tmp_path / f"{m.name}.py").read_text() == m.path.read_text()
    (tmp_path / "raises.py").write_text("stale\n")
    (tmp_path / "forgotten.py").write_text("")
    capsys.readouterr()
    assert regenerate.main(["--check", "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{tmp_path / 'raises.py'}: out of date\n"
    assert err == f"{tmp_path / 'forgotten.py'}: no row in the mistake table\n"
    assert (tmp_path / "raises.py").read_text() == "stale\n"     # --check writes nothing
    assert regenerate.main(["--out", str(tmp_path)]) == 1       # the stray is reported, kept
    assert (tmp_path / "raises.py").read_text() == BROKEN.joinpath("raises.py").read_text()
    assert (tmp_path / "forgotten.py").exists()


#: the checks a stalling mistake is run on: its time limit is paid in each one
STALL_CHECKS = {"hangs": ["MIG-7/success"], "sleeps": ["MIG-7/success"],
                "free_hangs": ["REL-1"], "destroy_loops": ["REL-3/destroy"],
                "exits_hard": ["MIG-7/success"]}


@pytest.mark.parametrize("quick", [True, pytest.param(False, marks=pytest.mark.slow)],
                         ids=["quick", "default"])
@pytest.mark.parametrize("mistake", [m for m in MISTAKES if not m.stalls], ids=lambda m: m.name)
def test_broken_driver_fails_exactly_within_its_rules(mistake: Mistake, quick: bool) -> None:
    """Its rule, and no rule it does not break: a violation is reported once, under the
    rule it breaks, and every other check that meets it says so (SAME)."""
    report = run_suite(str(mistake.path), quick=quick)
    failed = {r.rule for r in report.results if r.failed}
    why = [f"{r.check} {r.rule}: {r.message.splitlines()[0]}" for r in report.failures()]
    assert mistake.rule in failed, (mistake.name, failed, why)
    assert failed <= mistake.may_fail, (mistake.name, failed - mistake.may_fail, why)
    violations = {r.violation for r in report.failures()}
    assert len(violations) == len(report.failures())          # each one reported once
    for r in report.results:
        if r.verdict == SAME:
            first = next(f for f in report.failures() if f.check == r.same_as)
            assert r.violation == first.violation and r.rule == first.rule
    for r in report.failures():
        assert r.repro.startswith("mmplug check-driver ") and "--seed 0" in r.repro
        assert r.driver == f"broken_{mistake.name}"


@pytest.mark.slow
@pytest.mark.parametrize("mistake", [m for m in MISTAKES if m.stalls and m.name != "exits_hard"],
                         ids=lambda m: m.name)
def test_stalling_broken_driver_fails_within_its_rules(mistake: Mistake) -> None:
    report = run_suite(str(mistake.path), select=STALL_CHECKS[mistake.name], races=False,
                       timeout=1.0, memory=512 << 20)
    failed = {r.rule for r in report.results if r.failed}
    assert mistake.rule in failed and failed <= mistake.may_fail, failed


@pytest.mark.slow
def test_a_teardown_that_loops_while_allocating_is_a_fail_naming_destroy() -> None:
    """The memory bound holds for destroy(): a list that never ends stops at the limit."""
    path = str(BROKEN / "destroy_loops.py")
    bounded = run_suite(path, select=["REL-3/destroy"], timeout=30.0, memory=256 << 20)
    timed = run_suite(path, select=["REL-3/destroy"], timeout=1.0, memory=1 << 30)
    for report, what in ((bounded, "ran out of memory"), (timed, "did not return within")):
        (result,) = report.results
        assert result.verdict == FAIL and result.rule == "API-1", result.message
        assert result.hook == "destroy" and f"destroy() {what}" in result.message
        assert result.site.startswith("Pool.destroy (destroy_loops.py:")


@pytest.mark.slow
def test_what_a_runaway_call_allocated_is_not_kept_by_the_checks_that_met_it() -> None:
    """FUZZ and RACE keep a failure to shrink and show it; the driver's frames in it keep no
    locals, so the memory destroy() ran away with is free for the next run (no internal
    error from a VM that cannot map its zone)."""
    report = run_suite(str(BROKEN / "destroy_loops.py"), quick=True, timeout=30.0,
                       memory=256 << 20, select=["REL-3/destroy", "FUZZ", "RACE"])
    assert [r.verdict for r in report.results] == [FAIL, SAME, SAME], \
        [r.message for r in report.results]
    (failure,) = report.failures()
    assert failure.rule == "API-1" and failure.hook == "destroy"


@pytest.mark.slow
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


@pytest.mark.slow
def test_simplepool_passes_everything() -> None:
    report = run_suite(str(SIMPLEPOOL))
    assert report.passed, [f"{r.check}: {r.message}" for r in report.failures()]
    verdicts = {r.check: r.verdict for r in report.results}
    assert verdicts["MIG-8/eagain-retried"] == OK       # the pin/busy knobs are used
    assert verdicts["PUT-3/driver-failure"] == NOT_SUPPORTED  # no "map" knob
    assert verdicts["ISO-6/refusal-unchanged"] == NOT_SUPPORTED  # never refuses
    assert report.totals["failed"] == 0
