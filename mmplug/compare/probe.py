"""Counting what one driver's callbacks answered, page by page.

The VM's counters say how many isolations failed; a comparison also wants to
know why a pageblock stayed busy at the end.  The probe is interposed
in front of one driver instance's callbacks (the `a_ops` of its AddressSpace,
as the kernel's mapping->a_ops) and records every answer, plus the last answer per
pfn, so that a page still refused, still -EAGAIN or permanently failed when
the run ends can be named as the cause that kept its pageblock from being
emptied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ..constants import EAGAIN, MIGRATEPAGE_SUCCESS, errno_name
from ..mapping import AddressSpace

REFUSED = "refused"
EAGAIN_LAST = "eagain"
PERMANENT = "permanent"


class Probe:
    """Callback results of one address space; `last[pfn]` is a page's latest failure."""

    __slots__ = ("isolate_calls", "isolate_refused", "migrate_calls", "migrate_rc",
                 "putback_calls", "last")

    def __init__(self) -> None:
        self.isolate_calls = 0
        self.isolate_refused = 0
        self.migrate_calls = 0
        self.migrate_rc: Counter[str] = Counter()
        self.putback_calls = 0
        self.last: dict[int, str] = {}

    def install(self, mapping: AddressSpace) -> None:
        """Put the probe in front of `mapping`'s callbacks (what the VM calls per page)."""
        mapping.interpose(isolate_page=self.isolate_page, migratepage=self.migratepage,
                          putback_page=self.putback_page)

    def isolate_page(self, call: Callable[..., Any], page: Any, mode: int) -> Any:
        self.isolate_calls += 1
        ok = call(page, mode)
        if ok is False:
            self.isolate_refused += 1
            self.last[page.pfn] = REFUSED
        return ok

    def migratepage(self, call: Callable[..., Any], mapping: Any, newpage: Any, page: Any,
                    mode: int) -> Any:
        self.migrate_calls += 1
        rc = call(mapping, newpage, page, mode)
        if isinstance(rc, int) and not isinstance(rc, bool):
            self.migrate_rc[errno_name(rc)] += 1
            if rc == MIGRATEPAGE_SUCCESS:
                self.last.pop(page.pfn, None)
            else:
                self.last[page.pfn] = EAGAIN_LAST if rc == -EAGAIN else PERMANENT
        return rc

    def putback_page(self, call: Callable[..., Any], page: Any) -> Any:
        self.putback_calls += 1
        return call(page)

    def as_dict(self) -> dict[str, Any]:
        permanent = {k: v for k, v in sorted(self.migrate_rc.items())
                     if k not in ("MIGRATEPAGE_SUCCESS", "-EAGAIN")}
        return {
            "isolate_page_calls": self.isolate_calls,
            "isolate_page_refused": self.isolate_refused,
            "migratepage_calls": self.migrate_calls,
            "migratepage_success": self.migrate_rc.get("MIGRATEPAGE_SUCCESS", 0),
            "migratepage_eagain": self.migrate_rc.get("-EAGAIN", 0),
            "migratepage_permanent": sum(permanent.values()),
            "migratepage_permanent_by_errno": permanent,
            "putback_page_calls": self.putback_calls,
        }
