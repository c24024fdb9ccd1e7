"""How a check says what it found: a rule broken (`CheckFailed`), or that it does not apply
to the driver (`NotSupported`).  The runner turns them, and any ContractViolation the
core raises, into verdicts."""

from __future__ import annotations

from typing import Any

from ..drivercode import Site
from ..errors import ContractViolation


class CheckFailed(ContractViolation):
    """A check found a rule broken: the rule, what was expected and what happened.

    A ContractViolation, so that one raised while a driver callback runs (the
    spy's lru check) passes through the VM with the callback named.  `what`
    names the finding without the moment it was looked at ("an object reads
    back different bytes"): two checks that find the same `what` of the same
    rule found the same violation (mmplug.conformance.violations).
    """

    def __init__(self, rule: str, message: str, page: Any = None,
                 hook: str | None = None, page_desc: str | None = None,
                 what: str | None = None, site: Site | None = None) -> None:
        super().__init__(rule, message, hook=hook, page=page)
        self.what = what
        #: where in the driver's code it happened, when the check knows (a race's run)
        self.site = site
        if page is None and page_desc:
            self.page_desc = page_desc
            self.args = (self.render(),)


class NotSupported(Exception):
    """The check does not apply to this driver (a capability or knob it does not declare)."""
