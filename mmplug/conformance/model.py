"""The values the conformance suite produces: what a check is, what it found, the report.

These are the public types of `mmplug.conformance` (the pytest plugin and
`mmplug explain` build on them), so they are plain attrs values that render
to JSON without help.
"""

from __future__ import annotations

from typing import Any

from attrs import asdict, define, field, frozen

#: the verdicts a check can give
OK = "OK"
FAIL = "FAIL"
#: the check failed on a violation an earlier check reported in full (`same_as`)
SAME = "same"
NOT_SUPPORTED = "OK (not supported)"
WARN = "warn"
VERDICTS = (OK, FAIL, SAME, NOT_SUPPORTED, WARN)

#: what a check exercises
KINDS = ("registration", "directed", "fuzz", "races")


@frozen(slots=True)
class CheckSpec:
    """One check of the suite.

    `id` is "RULE/slug" (e.g. "ISO-4/lru-untouched"); `rules` are the contract
    rule ids it enforces, the first being the one it is listed under; `needs`
    names the capabilities or knobs it requires ("knob:pin", "free_while_isolated",
    ...; a check whose needs the driver does not declare reports "OK (not
    supported)"); `kind` is one of "registration", "directed", "fuzz", "races".
    """

    id: str
    rules: tuple[str, ...]
    title: str
    needs: tuple[str, ...] = ()
    kind: str = "directed"

    @property
    def rule(self) -> str:
        """The rule the check is listed under (the id before the slash)."""
        return self.id.split("/", 1)[0]

    def matches(self, pattern: str) -> bool:
        """--select: a rule id ("MIG-7": not MIG-10), a group ("ISO", "ISO-"), or a check
        id or its prefix ("ISO-4/lru-untouched", "MIG-7/")."""
        pat = pattern.strip().upper()
        rules = [r.upper() for r in self.rules]
        if not pat:
            return False
        if "/" in pat:
            return self.id.upper().startswith(pat)
        group = pat.rstrip("-")
        if "-" not in group:
            return any(r.split("-")[0] == group for r in rules)
        return pat in rules


@frozen(slots=True)
class CheckResult:
    """What one check found.

    `rule` is the rule the verdict is about: for a FAIL the rule that was
    broken (which may be another than the check's own, e.g. a MIG-7 check that
    finds an ISO-4 violation), otherwise the check's rule.  `page` is the page
    described (pfn, flags, mapping word decoded) when the failure concerns one;
    `repro` is the command that reproduces the result.  `violation` names what
    was broken ("MIG-7 in migratepage", see mmplug.conformance.violations); a
    check that found a violation an earlier check reported has the verdict
    SAME and `same_as`, the id of that check.
    """

    check: str
    rule: str
    title: str
    verdict: str
    message: str = ""
    page: str | None = None
    repro: str = ""
    driver: str | None = None
    hook: str | None = None
    seconds: float = 0.0
    violation: str = ""
    same_as: str = ""
    #: where in the driver's code it was raised ("Pool.free (simplepool.py:104)")
    site: str = ""

    @property
    def failed(self) -> bool:
        """The check found a violation (reported here in full, or earlier: SAME)."""
        return self.verdict in (FAIL, SAME)

    @property
    def listed_rule(self) -> str:
        """The rule the check is listed under (its id before the slash)."""
        return self.check.split("/", 1)[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@define(slots=True)
class Report:
    """The suite's result for one driver; `totals` and `to_json()` are what reporters use."""

    driver: str
    driver_version: str
    mmplug_version: str
    seed: int
    results: list[CheckResult] = field(factory=list)
    seconds: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        """total, succeeded (OK and not supported), failed (each violation once), same
        (checks that found a violation reported above), warnings."""
        ok = sum(r.verdict in (OK, NOT_SUPPORTED) for r in self.results)
        failed = sum(r.verdict == FAIL for r in self.results)
        same = sum(r.verdict == SAME for r in self.results)
        warned = sum(r.verdict == WARN for r in self.results)
        return {"total": len(self.results), "succeeded": ok, "failed": failed, "same": same,
                "warnings": warned}

    @property
    def passed(self) -> bool:
        return not any(r.failed for r in self.results)

    def failures(self) -> list[CheckResult]:
        """The FAILs: each violation once, where it was first found."""
        return [r for r in self.results if r.verdict == FAIL]

    def hits(self, first: CheckResult) -> list[CheckResult]:
        """The later checks that found the violation `first` reported."""
        return [r for r in self.results if r.verdict == SAME and r.same_as == first.check]

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "driver_version": self.driver_version,
                "mmplug_version": self.mmplug_version, "seed": self.seed,
                "seconds": round(self.seconds, 3),
                "results": [r.as_dict() for r in self.results], "totals": self.totals}

    def to_json(self, indent: int | None = 2) -> str:
        import json
        return json.dumps(self.to_dict(), indent=indent)
