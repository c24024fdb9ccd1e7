"""The balloon bugs a device can be told to reintroduce (contract BUG-9, BUG-10, BUG-12).

The fixed behaviour is the default; `Balloon(..., bugs={"BUG-12"})` brings one
back so that a scenario (mmplug_balloon.scenarios) or a concurrency search can
show the failure next to the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

#: bug id -> what the reintroduced code does differently
KNOWN_BUGS: Mapping[str, str] = MappingProxyType({
    "BUG-9": "virtballoon_migratepage() does not take the balloon mutex, so a migration can run "
             "while leak_balloon() waits for the host and rewrite the shared pfn array: the "
             "host never hears of the deflated page (it stays ballooned at the host, leaked)",
    "BUG-10": "balloon_page_dequeue() tests PageIsolated() even when balloon compaction is "
              "off, where the bit is PG_reclaim and means something else: such pages are "
              "skipped forever and deflation stalls",
    "BUG-12": "deflation of one page clears page->private before it holds the page lock, while "
              "isolate_page() reads page->private to find the device (8202313e3dfa)",
})


def parse_bugs(bugs: Iterable[str] | str | None) -> frozenset[str]:
    """Validate a set of bug ids; a single id may be passed as a string."""
    if bugs is None:
        return frozenset()
    if isinstance(bugs, str):
        bugs = [b for b in bugs.replace(",", " ").split() if b]
    chosen = frozenset(bugs)
    unknown = sorted(chosen - KNOWN_BUGS.keys())
    if unknown:
        raise ValueError(f"unknown balloon bug(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(KNOWN_BUGS))}")
    return chosen
