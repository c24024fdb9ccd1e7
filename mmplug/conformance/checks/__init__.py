"""The checks of the conformance suite, one module per rule group."""

from __future__ import annotations

from ..registry import Check


def all_checks() -> list[Check]:
    """Every check, in the order the suite runs them."""
    from . import flg, fuzz, iso, mig, put, races, registration, rel
    out: list[Check] = []
    for module in (registration, flg, iso, mig, put, rel, fuzz, races):
        out.extend(v for v in vars(module).values() if isinstance(v, Check))
    return out
