"""The checks the balloon brings to check-driver (DRV-B1, DRV-B3): the fixed device passes,
BUG-9 and a deflation that stalls behind isolated pages fail."""

from __future__ import annotations

from mmplug.conformance import FAIL, OK, list_checks, run_suite
from mmplug_balloon import virtio_balloon

DRV = ["DRV-B1/deflate-skips-isolated", "DRV-B3/migrate-while-deflating"]


def verdicts(**options):
    report = run_suite("balloon", select=["DRV"], driver_options=options)
    return {r.check: r for r in report.results}


def test_the_balloon_brings_its_checks():
    assert [c.id for c in list_checks("balloon") if c.id.startswith("DRV-")] == DRV


def test_the_fixed_balloon_passes_them():
    assert {c: r.verdict for c, r in verdicts().items()} == {c: OK for c in DRV}


def test_bug9_is_caught_on_one_cpu():
    result = verdicts(bugs={"BUG-9"})["DRV-B3/migrate-while-deflating"]
    assert result.verdict == FAIL and result.rule == "DRV-B3"
    assert "leaked at the host" in result.message


def test_a_deflation_that_stalls_behind_isolated_pages_is_caught(monkeypatch):
    real = virtio_balloon.balloon_page_dequeue

    def stalls(b_dev_info):
        # gives up while compaction holds any page: the listed ones never deflate
        return None if b_dev_info.isolated_pages else real(b_dev_info)

    monkeypatch.setattr(virtio_balloon, "balloon_page_dequeue", stalls)
    result = verdicts()["DRV-B1/deflate-skips-isolated"]
    assert result.verdict == FAIL and result.rule == "DRV-B1", result.message
    assert "it takes every listed page" in result.message
