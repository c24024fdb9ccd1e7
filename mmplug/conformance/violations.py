"""One mistake, one verdict: when two checks found the same violation.

A driver's mistake is usually hit by many checks: every check that migrates
a page finds a migratepage that forgets to drop its reference on the old
page.  The first check to find it reports it in full; every later check that
finds the same violation refers to it ("same as MIG-7 above").

A violation is identified by what stays the same wherever the mistake shows:

- the rule broken, as the finding blames it (mmplug.journal: a leaked old
  page of a migration is MIG-7 whichever check finds it);
- the driver;
- the *culprit*: the driver code at fault.  A violation raised while driver
  code ran (it raised, hung, or called a kernel function wrongly) names the
  innermost driver function on the stack, so that destroy() failing inside
  free() is free()'s failure (mmplug.drivercode); one the VM found when a
  call returned names that callback or method; a symptom found later (an
  object that reads back wrong, a page nobody owns) names the callback whose
  duty the blamed rule is (MIG-7, MIG-8: migratepage; PUT-1, PUT-2:
  putback_page; ISO-1..3, ISO-6: isolate_page);
- with no culprit, *what* was found, with the moment it was looked at and
  every number, address and repr taken out ("a page in use that nobody owns").

The page is left out on purpose: the pfn changes from run to run, and the
state a page is found in depends on when a check looked at it (the same
leaked page is "isolated" in one check and "released" in the next).  So two
different mistakes in one callback that break the same rule are one
violation until the first is fixed; the later checks still show their own
message in the JSON report.
"""

from __future__ import annotations

import re

from attrs import frozen

#: the callback a rule's duties lie in, for a symptom found outside any call
RULE_CULPRITS = {
    "ISO-1": "isolate_page", "ISO-2": "isolate_page", "ISO-3": "isolate_page",
    "ISO-6": "isolate_page", "MIG-6": "migratepage", "MIG-7": "migratepage",
    "MIG-8": "migratepage", "PUT-1": "putback_page", "PUT-2": "putback_page",
}
#: what the VM finds when a driver released an isolated page but left it movable (REL-1)
RELEASED_MOVABLE = ("the driver dropped its last reference to an isolated page without "
                    "__ClearPageMovable()")
#: hooks a symptom is found in, not the call at fault
SYMPTOM_HOOKS = frozenset({"read", "verify", "pages"})


@frozen(slots=True)
class Violation:
    """What two failures must share to be the same violation."""

    rule: str
    driver: str
    culprit: str = ""
    what: str = ""

    @classmethod
    def of(cls, rule: str, driver: str | None, hook: str | None, what: str,
           function: str | None = None) -> Violation:
        """The violation of a finding: its rule, driver, the hook it names, what it says,
        and the driver function it was raised in (if it was)."""
        culprit = function or hook or ""
        if not culprit or culprit in SYMPTOM_HOOKS:
            culprit = RULE_CULPRITS.get(rule, "")
        return cls(rule, driver or "", culprit, "" if culprit else normalize(what))

    def describe(self) -> str:
        """"MIG-7 in migratepage", "REL-1: a page in use that nobody owns (leaked)"."""
        return f"{self.rule} in {self.culprit}" if self.culprit else f"{self.rule}: {self.what}"


_QUOTED = re.compile(r"b?'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"")
_REPR = re.compile(r"<[^<>]*>")
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+")
_CPU = re.compile(r"\s*\[cpu#\]")
_CONTEXT = re.compile(r"\s*\((?:driver|callback|page) [^()]*(?:\([^()]*\)[^()]*)*\)$")


def normalize(text: str) -> str:
    """A finding without what changes between runs and checks: its first line, with quoted
    values, reprs, numbers and the "(driver ..., page ...)" suffix taken out."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = _QUOTED.sub("'...'", line)
    line = _REPR.sub("<...>", line)
    line = _NUMBER.sub("#", line)
    line = _CPU.sub("", line)
    return _CONTEXT.sub("", line).strip()


__all__ = ["RELEASED_MOVABLE", "RULE_CULPRITS", "Violation", "normalize"]
