"""Errors mmplug raises.

A `ContractViolation` is the model's VM_BUG_ON: the VM found a rule of the
VM <-> driver contract broken (docs/contract.md).  It names the rule, the driver,
the callback and the page, so that a report needs nothing else.
"""

from __future__ import annotations

from typing import Any


class MmplugError(Exception):
    """Base class of every error mmplug raises on purpose."""


class UsageError(MmplugError):
    """Bad input from a user: an unknown driver, a malformed file, a bad option."""


class PluginError(MmplugError):
    """A driver plugin could not be loaded or validated."""


class NoMemory(MmplugError):
    """An allocation failed (the model's -ENOMEM); drivers raise it from `store`."""


class Deadlock(MmplugError):
    """Every CPU is blocked, or a single CPU waits for a lock only it could release."""


class ContractViolation(MmplugError):
    """A rule of the VM <-> driver contract was broken (the model's VM_BUG_ON)."""

    def __init__(
        self,
        rule: str,
        message: str,
        *,
        driver: str | None = None,
        hook: str | None = None,
        page: Any = None,
    ) -> None:
        self.rule = rule
        self.message = message
        self.driver = driver
        self.hook = hook
        self.page = page
        # The page is described now: by the time the error is read the page may
        # have changed state again.
        self.page_desc = page.describe() if page is not None and hasattr(page, "describe") else None
        super().__init__(self.render())

    def render(self) -> str:
        where = []
        if self.driver:
            where.append(f"driver {self.driver}")
        if self.hook:
            where.append(f"callback {self.hook}")
        if self.page_desc:
            where.append(f"page {self.page_desc}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.rule}: {self.message}{suffix}"

    def with_context(self, *, driver: str | None = None, hook: str | None = None,
                     page: Any = None) -> ContractViolation:
        """Fill in what the raiser did not know (e.g. which callback was running)."""
        if self.driver is None and driver is not None:
            self.driver = driver
        if self.hook is None and hook is not None:
            self.hook = hook
        if self.page_desc is None and page is not None:
            self.page = page
            self.page_desc = page.describe()
        self.args = (self.render(),)
        return self


class DriverError(ContractViolation):
    """A driver callback raised, returned a value of the wrong type, or hung."""


class CallbackTimeout(BaseException):
    """Raised inside driver code that ran past its time limit (mmplug.watchdog).

    A BaseException, like asyncio.CancelledError: it must unwind through driver
    code that catches Exception (or MmplugError).  The call site turns it into a
    DriverError naming the driver, the callback and the page.
    """

    #: the limit in seconds (a class attribute where the watchdog raises a class)
    limit: float | None = None

    def __init__(self, limit: float | None = None) -> None:
        if limit is not None:
            self.limit = limit
        super().__init__(self.limit)

    def __str__(self) -> str:
        return f"did not return within {self.limit:g} s" if self.limit is not None else \
            "did not return in time"
