"""One mistake, one verdict: a violation is reported once, under the rule it breaks, and
every other check that meets it refers to it; symptoms are blamed on the rule the
callbacks' history shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from commandline.clihelp import run
from mmplug.conformance import FAIL, SAME, run_suite
from mmplug.conformance.violations import Violation, normalize
from mmplug.drivercode import DriverCode
from mmplug.errors import CallbackTimeout
from mmplug.journal import Journal, blame_bad_read, blame_leak, rule_named
from mmplug.page import Page

HERE = Path(__file__).parent
BROKEN = HERE / "broken"


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code, out, _ = run(capsys, "check-driver", *args)
    return code, out


# --- what a violation is ----------------------------------------------------------------------

def test_a_finding_without_its_numbers_reprs_and_context() -> None:
    text = ("object 12 reads back 'ab\\'c' <PageList x of 3> at pfn 0xc0 [cpu1] "
            "(driver d, callback free, page pfn 0x3 flags 0x1(locked))")
    assert normalize(text) == "object # reads back '...' <...> at pfn #"
    assert normalize("a\nb") == "a"


def test_the_culprit_is_the_driver_code_then_the_call_then_the_rules_callback() -> None:
    assert Violation.of("FLG-5", "d", "destroy", "x", "Pool.free").describe() == \
        "FLG-5 in Pool.free"
    assert Violation.of("MIG-8", "d", "migratepage", "returned 1").culprit == "migratepage"
    # a symptom found by reading is blamed on the callback whose duty the rule is
    assert Violation.of("MIG-7", "d", "read", "object # differs").culprit == "migratepage"
    assert Violation.of("PUT-2", "d", None, "x").culprit == "putback_page"
    leak = Violation.of("REL-1", "d", None, "3 page(s) in use (leaked)")
    assert leak.culprit == "" and leak.what == "# page(s) in use (leaked)"
    assert leak == Violation.of("REL-1", "d", "", "7 page(s) in use (leaked)")


# --- what a symptom is blamed on --------------------------------------------------------------

class _Zone:
    pass


def _page(pfn: int, refcount: int = 1, mapping: int = 0) -> Page:
    return Page(pfn, _Zone(), refcount=refcount, mapping=mapping)  # type: ignore[arg-type]


def test_a_leak_is_blamed_on_the_history_of_its_page() -> None:
    journal = Journal()
    old, new, other = _page(1, 2, 0x2), _page(2, 2), _page(3)
    journal.migrated(new, old, 0)
    assert blame_leak(journal, old) == "MIG-7"          # the old page of a migration
    target = _page(4)
    journal.migrated(target, other, -11)
    assert blame_leak(journal, target) == "MIG-8"       # the new page of a failed one, kept
    assert blame_leak(journal, other) == "REL-1"


def test_a_frame_freed_and_used_again_starts_a_new_life() -> None:
    journal = Journal()
    old, new = _page(1, 1, 0x2), _page(2, 2)
    journal.migrated(new, old, 0)
    old._refcount = 0                   # the VM freed it
    journal.forget_freed()
    assert journal.migrated_away(old)   # still the old page while it stays free
    old._refcount = 1                   # allocated again by a store
    journal.forget_freed()
    assert not journal.migrated_away(old) and blame_leak(journal, old) == "REL-1"


def test_a_wrong_read_is_blamed_on_what_happened_since_it_read_right() -> None:
    journal = Journal()
    since = journal.seq
    assert blame_bad_read(journal, since, "API-1") == "API-1"
    journal.putback(_page(1))
    assert blame_bad_read(journal, since, "API-1") == "PUT-2"
    journal.migrated(_page(3), _page(2), 0)
    assert blame_bad_read(journal, since, "API-1") == "MIG-7"
    assert blame_bad_read(journal, journal.seq, "API-1") == "API-1"


def test_a_verify_message_naming_a_rule_is_that_rule() -> None:
    assert rule_named("DRV-B3: the host holds 0xc2", "API-1") == "DRV-B3"
    assert rule_named("zsmalloc verify: XYZ-9 bad magic", "API-1") == "API-1"


# --- the report ---------------------------------------------------------------------------------

def test_one_mistake_is_reported_once_under_its_rule_and_referred_to(capsys) -> None:
    code, out = run_cli(capsys, str(BROKEN / "leaks_old_page.py"), "--quick")
    assert code == 1
    lines = out.splitlines()
    # found first by a check of another rule: one line, the report follows under MIG-7
    assert "test ISO-3 driver leaves PG_isolated to the VM: FAIL (breaks MIG-7, reported " \
           "below)" in lines
    at = lines.index("test MIG-7 on success the old page is released and the new one is "
                     "movable, referenced and used: FAIL")
    assert lines[at + 1].startswith("    MIG-7: migratepage returned 0 but the old page still")
    assert lines[at + 3].startswith("    reproduce: mmplug check-driver ")
    assert sum(": FAIL" in ln for ln in lines if ln.startswith("test ")) == 2
    assert "test ISO-4 driver leaves lru of an isolated page alone: same as MIG-7 reported " \
           "below (ISO-3/pg-isolated-vm-only)" in lines
    assert sum(" same as MIG-7 above (MIG-7/success)" in ln for ln in lines) >= 8
    assert "1 violation(s):" in lines
    assert any(ln.startswith("  MIG-7 in migratepage: migratepage returned 0 but the old page "
                             "still has 1 reference(s)") for ln in lines)
    assert ", Failed: 1, Same violation: " in lines[-1]
    # the report: one FAIL, every other check that met it points at it
    report = run_suite(str(BROKEN / "leaks_old_page.py"), quick=True)
    (fail,) = report.failures()
    assert fail.check == "MIG-7/success"
    assert {r.same_as for r in report.results if r.verdict == SAME} == {"MIG-7/success"}


def test_a_violation_no_check_of_its_rule_meets_is_reported_in_full_at_the_end(capsys) -> None:
    code, out = run_cli(capsys, str(BROKEN / "relists_on_failure.py"), "--quick", "--no-races")
    lines = out.splitlines()
    assert code == 1
    assert any(ln.startswith("test PUT-3 ") and ln.endswith(": FAIL (breaks MIG-8, reported "
                                                              "below)") for ln in lines)
    at = lines.index("1 violation(s):")
    assert lines[at + 1] == "  MIG-8 in migratepage, found by PUT-3/driver-failure:"
    assert lines[at + 2].startswith("    MIG-8: migratepage failed for good (-EBUSY) and store()")
    assert any(ln.startswith("    reproduce: ") for ln in lines[at:])


def test_the_same_mistake_found_by_a_race_is_the_same_violation() -> None:
    report = run_suite(str(BROKEN / "leaks_page.py"), quick=True)
    race = next(r for r in report.results if r.check == "RACE/explore")
    assert race.verdict == SAME and race.rule == "REL-1"


def test_a_violation_raised_in_driver_code_names_where() -> None:
    report = run_suite(str(BROKEN / "free_raises.py"), quick=True, races=False)
    first = report.failures()[0]
    assert first.verdict == FAIL and first.rule == "API-1"
    assert first.site.startswith("Pool.free (free_raises.py:")
    # destroy() fails inside free(): the same violation
    destroy = next(r for r in report.results if r.check == "REL-3/destroy")
    assert destroy.verdict == SAME and destroy.same_as == first.check


def test_a_race_ending_in_a_drivers_own_rule_says_that_rule() -> None:
    from mmplug import races
    result = races.explore("balloon", "balloon_deflate_vs_migrate", seed=0, runs=300,
                           options={"bugs": {"BUG-9"}})
    (fail,) = result.failures
    assert fail.rule == "DRV-B3" and "verify() fails after the race: DRV-B3" in fail.message


@pytest.mark.parametrize("driver", ["unlocks_in_putback", "custom_base_exception"])
def test_a_failing_putback_is_not_taken_for_a_touched_lru(driver: str) -> None:
    """The VM's own list_del before a putback_page that fails leaves lru None: that is not
    the driver's doing (ISO-4)."""
    report = run_suite(str(BROKEN / f"{driver}.py"), quick=True, races=False)
    assert "ISO-4" not in {r.rule for r in report.results if r.failed}


@pytest.mark.slow
def test_shrinking_a_fuzz_failure_stays_within_the_memory_limit() -> None:
    """Every example of the state machine has a VM of its own; none is kept once the
    example is over, or hundreds of them (a failure being shrunk) exhaust the limit."""
    report = run_suite(str(BROKEN / "one_object_moved.py"), select=["FUZZ"],
                       memory=384 << 20)
    (fuzz,) = report.results
    assert fuzz.verdict == FAIL and fuzz.rule == "MIG-7", fuzz.message


SPINNER = """\
from mmplug.errors import CallbackTimeout


def helper(n, stop):
    if n == stop:
        raise CallbackTimeout(2.0)
    return n


def spin(in_helper, in_loop):
    n = 0
    while helper(n, in_helper) >= 0:
        n += 1
        if n == in_loop:
            raise CallbackTimeout(2.0)
"""


@pytest.mark.parametrize("stops", [(3, -1), (-1, 3)], ids=["in-helper", "in-loop"])
def test_a_hang_is_sited_at_its_loop_wherever_it_was_stopped(tmp_path: Path,
                                                             stops: tuple[int, int]) -> None:
    """A hang stopped in a helper the loop calls, or in the loop itself, is one site: the
    innermost driver frame inside a loop statement."""
    path = tmp_path / "spinner.py"
    path.write_text(SPINNER)
    namespace: dict = {"__name__": "spinner"}
    exec(compile(SPINNER, str(path), "exec"), namespace)
    code = DriverCode(frozenset({str(path)}))
    with pytest.raises(CallbackTimeout) as hung:
        namespace["spin"](*stops)
    site = code.site_in_traceback(hung.value)
    assert site is not None and site.function == "spin"


def test_a_hang_found_by_fuzz_keeps_its_site() -> None:
    report = run_suite(str(BROKEN / "free_hangs.py"), select=["FUZZ"], timeout=1.0)
    (fuzz,) = report.results
    assert fuzz.verdict == FAIL and fuzz.rule == "API-1"
    assert fuzz.site.startswith("Pool.free (free_hangs.py:")


def test_several_violations_come_in_the_order_a_page_meets_them(capsys) -> None:
    """One reference too many taken in isolate_page breaks four rules; the FLG-7 check,
    which runs first, meets the leak at destroy().  The summary starts with the cause."""
    code, out = run_cli(capsys, str(BROKEN / "isolate_takes_ref.py"), "--quick", "--no-races")
    lines = out.splitlines()
    assert code == 1
    at = next(i for i, ln in enumerate(lines) if ln.startswith("4 violation(s)"))
    assert lines[at] == ("4 violation(s), in the order a page meets them (an early one can "
                         "cause the later ones):")
    heads = [ln.split(":")[0].split(",")[0].strip() for ln in lines[at + 1:-1]
             if ln.startswith("  ") and not ln.startswith("    ")]
    assert heads == ["ISO-1 in isolate_page", "MIG-7 in migratepage", "PUT-2 in putback_page",
                     "REL-1"]
    # the report keeps the order the checks found them in
    report = run_suite(str(BROKEN / "isolate_takes_ref.py"), quick=True, races=False)
    assert report.failures()[0].rule == "REL-1"
