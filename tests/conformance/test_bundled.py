"""Every bundled driver (installed through the mmplug.drivers entry points) passes the suite."""

from __future__ import annotations

import pytest

from mmplug import PluginHost
from mmplug.conformance import run_suite

BUNDLED = ("balloon", "zsmalloc", "z3fold")


def _installed() -> set[str]:
    host = PluginHost()
    host.load_entry_points()
    return set(host.drivers)


@pytest.mark.parametrize("driver", BUNDLED)
def test_bundled_driver_passes_quick_suite(driver: str) -> None:
    if driver not in _installed():
        pytest.skip(f"{driver} is not installed")
    report = run_suite(driver, quick=True)
    assert report.passed, [f"{r.check} {r.rule}: {r.message}" for r in report.failures()]
    assert report.driver == driver and report.driver_version
