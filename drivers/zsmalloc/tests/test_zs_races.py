"""The zsmalloc races of mmplug.races on two simulated CPUs: clean when fixed, and each
bug option found again by the same exploration (same seed, same result)."""

from __future__ import annotations

import pytest

races = pytest.importorskip("mmplug.races")

import mmplug_zsmalloc  # noqa: E402

RUNS = 150


def _explore(scenario, bugs=(), strategy="random"):
    options = {"bugs": set(bugs)} if bugs else None
    return races.explore(mmplug_zsmalloc, scenario, strategy=strategy, seed=0, runs=RUNS,
                         options=options)


@pytest.mark.parametrize("scenario", ["destroy_while_isolated", "zspage_emptied_while_isolated",
                                      "zspage_freed_while_migrating", "free_read_while_copying",
                                      "two_compactors"])
@pytest.mark.slow
def test_fixed_pool_survives_every_explored_interleaving(scenario):
    result = _explore(scenario, strategy="pct")
    assert not result.failures, result.render()


def test_bug5_is_found_as_rel3_when_destroy_does_not_wait():
    result = _explore("destroy_while_isolated", bugs={"BUG-5"})
    assert result.failures, result.render()
    assert result.failures[0].rule == "REL-3" and result.failures[0].replayable


def test_bug6_is_found_as_a_leaked_empty_zspage():
    result = _explore("zspage_freed_while_migrating", bugs={"BUG-6"})
    assert result.failures, result.render()
    assert result.failures[0].rule == "DRV-Z4" and result.failures[0].replayable
