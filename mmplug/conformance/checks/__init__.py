"""The checks of the conformance suite, one module per rule group, and those a driver brings."""

from __future__ import annotations

from ...errors import DriverError
from ...plugins import LoadedDriver
from ..registry import Check


def all_checks() -> list[Check]:
    """Every check of the suite, in the order the suite runs them."""
    from . import flg, fuzz, iso, mig, put, races, registration, rel
    out: list[Check] = []
    for module in (registration, flg, iso, mig, put, rel, fuzz, races):
        out.extend(v for v in vars(module).values() if isinstance(v, Check))
    return out


def driver_checks(loaded: LoadedDriver) -> list[Check]:
    """The checks of its own rules a driver brings (its mmplug_conformance_checks hook),
    run after the suite's; API-1 if the hook gives anything but checks of DRV-* ids."""
    checks = loaded.brought("mmplug_conformance_checks")
    for chk in checks:
        if not isinstance(chk, Check) or not chk.spec.id.startswith("DRV-"):
            what = chk.spec.id if isinstance(chk, Check) else f"{type(chk).__name__} {chk!r:.60}"
            raise DriverError("API-1", f"mmplug_conformance_checks() gave {what}: expected "
                              "checks made with @mmplug.conformance_check whose ids start with "
                              "DRV-", driver=loaded.name, hook="mmplug_conformance_checks")
    return checks
