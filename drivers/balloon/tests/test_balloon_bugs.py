"""BUG-9, BUG-10, BUG-12: one deterministic single-CPU ordering each, fixed versus reintroduced."""

from __future__ import annotations

import pytest

import mmplug
from mmplug_balloon.bugs import KNOWN_BUGS, parse_bugs
from mmplug_balloon.scenarios import SCENARIOS, run


def test_bug9_migration_during_deflation_waits_for_the_balloon_mutex():
    fixed = run("BUG-9")
    assert fixed.clean and not fixed.host_leaked, fixed
    assert "not migrated, put back" in fixed.outcome


def test_bug9_without_the_mutex_the_host_keeps_a_deflated_page():
    buggy = run("BUG-9", buggy=True)
    assert "returned 0 (migrated)" in buggy.outcome
    # The message was two pfns long; the first was overwritten by the migration's.
    assert len(buggy.host_leaked) == 1 and "DRV-B3" in buggy.verify_error, buggy
    assert "not ballooned" in buggy.verify_error
    assert not buggy.vm_leaked  # the guest reuses the page the host still counts as ballooned


def test_bug10_deflation_without_compaction_ignores_pg_reclaim():
    fixed = run("BUG-10")
    assert fixed.clean and fixed.outcome.startswith("deflated 3 of 3"), fixed


def test_bug10_reading_pg_isolated_without_compaction_stalls_deflation():
    buggy = run("BUG-10", buggy=True)
    assert buggy.outcome.startswith("deflated 0 of 3"), buggy
    assert buggy.error.startswith("DRV-B1: deflation makes no progress"), buggy


def test_bug12_isolation_during_free_sees_a_whole_balloon_page():
    fixed = run("BUG-12")
    assert fixed.clean and "returned 0" in fixed.outcome, fixed


def test_bug12_private_cleared_before_the_page_lock_oopses_isolation():
    buggy = run("BUG-12", buggy=True)
    assert buggy.error.startswith("BUG-12: balloon_page_device()"), buggy
    assert "callback isolate_page" in buggy.error and "driver balloon" in buggy.error


def test_every_known_bug_has_a_scenario():
    assert set(SCENARIOS) == set(KNOWN_BUGS)
    with pytest.raises(mmplug.UsageError, match="no balloon scenario"):
        run("BUG-1")


def test_parse_bugs_accepts_a_list_or_a_string_and_rejects_unknown_ids():
    assert parse_bugs("BUG-9, BUG-12") == {"BUG-9", "BUG-12"}
    assert parse_bugs(None) == frozenset()
    with pytest.raises(ValueError, match="BUG-7"):
        parse_bugs(["BUG-7"])
