"""Trace files: a history of allocations, frees and compactions, replayed exactly.

Fragmentation is what a history leaves behind, so a trace does not say "30 %
fragmented": it says which object was stored, which page faulted in, which
was freed, in order.  Every workload run can be saved as a trace
(`mmplug compare --save-trace`), and replaying it on another driver gives
that driver the very same history.

Format, one event per line, `#` starts a comment::

    mmplug-trace 2
    zone pages=4096 page_size=4096
    store ID BYTES        a driver object
    lru ID                an anonymous page on the LRU
    slab ID               a slab page (unmovable)
    free ID               whatever ID is
    pin ID | unpin ID | map ID | unmap ID
    hold | release        the driver's lock (knob "busy")
    compact               whole zone (/proc/sys/vm/compact_memory)
    direct ID ORDER       an allocation of ORDER through direct compaction
    kcompactd ORDER
    end EVENTS            the last line: how many events came before

A trace must be whole to be "replayed exactly": a file cut off in the middle
of a line, or (version 2) without its `end` line or with a different count,
is an error; so is an event on an id that is not live (never stored, already
freed) and a second store of a live id, each named with its line number.
Version 1 files, which have no `end` line, are still read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from attrs import frozen

from ..errors import UsageError
from ..outputs import write_atomic
from .workload import MAX_PAGE_SIZE, MAX_PAGES, read_input, shown

MAGIC = "mmplug-trace 2"
#: the versions read: 1 has no `end` line
MAGICS = ("mmplug-trace 1", MAGIC)
#: the largest trace file read
MAX_TRACE_BYTES = 128 << 20
#: ops that make an id live, and ops that need it live
CREATES = ("store", "lru", "slab", "direct")
NEEDS_LIVE_OBJECT = ("pin", "unpin", "map", "unmap")

#: op -> argument names; every argument is a non-negative integer
OPS: dict[str, tuple[str, ...]] = {
    "store": ("id", "bytes"),
    "lru": ("id",),
    "slab": ("id",),
    "free": ("id",),
    "pin": ("id",),
    "unpin": ("id",),
    "map": ("id",),
    "unmap": ("id",),
    "hold": (),
    "release": (),
    "compact": (),
    "direct": ("id", "order"),
    "kcompactd": ("order",),
}

Event = tuple[Any, ...]  # (op, *int args)


@frozen(slots=True)
class Trace:
    """A replayable history on a zone of `nr_pages` pages."""

    name: str
    nr_pages: int
    page_size: int
    events: tuple[Event, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(format_trace(self).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "trace", "nr_pages": self.nr_pages,
                "page_size": self.page_size, "events": len(self.events), "sha256": self.digest}


def format_trace(trace: Trace) -> str:
    lines = [MAGIC, f"zone pages={trace.nr_pages} page_size={trace.page_size}"]
    lines.extend(" ".join(str(x) for x in ev) for ev in trace.events)
    lines.append(f"end {len(trace.events)}")
    return "\n".join(lines) + "\n"


def write_trace(trace: Trace, path: str | Path) -> None:
    """Write the trace whole (a temporary file renamed over `path`)."""
    write_atomic(path, format_trace(trace))


def load_trace(path: str | Path) -> Trace:
    path = Path(path)
    text = read_input(path, "trace", MAX_TRACE_BYTES)
    lines = text.splitlines()
    if text and not text.endswith(("\n", "\r")):
        raise UsageError(f"{path}:{len(lines)}: the file ends in the middle of a line: it was "
                         "cut off; save or copy the trace again")
    return parse_trace(lines, path)


def parse_trace(lines: Iterable[str], path: str | Path = "<trace>") -> Trace:
    path = Path(path)
    events: list[Event] = []
    nr_pages: int | None = None
    page_size = 4096   # set with nr_pages, by the zone line
    magic = None
    ended = None
    #: id -> (op, line) while live; id -> line of its free
    live: dict[int, tuple[str, int]] = {}
    freed: dict[int, int] = {}
    lineno = 0
    for lineno, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue

        def bad(expected: str, lineno: int = lineno, text: str = text) -> UsageError:
            return UsageError(f"{path}:{lineno}: {shown(text)}: expected {expected}")

        if ended is not None:
            raise bad(f"nothing after the 'end' line (line {ended})")
        if magic is None:
            if text not in MAGICS:
                raise bad(f"the first line {MAGIC!r}")
            magic = text
            continue
        words = text.split()
        if nr_pages is None:
            if words[0] != "zone":
                raise bad("'zone pages=N page_size=BYTES' before any event")
            fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            try:
                nr_pages = int(fields["pages"])
                page_size = int(fields.get("page_size", "4096"))
            except (KeyError, ValueError):
                raise bad("'zone pages=N page_size=BYTES' with integers") from None
            if nr_pages < 512 or nr_pages % 512 or nr_pages > MAX_PAGES:
                raise bad(f"pages= a whole number of 512-page pageblocks, from 1 to "
                          f"{MAX_PAGES // 512:,}")
            if not 64 <= page_size <= MAX_PAGE_SIZE or page_size & (page_size - 1):
                raise bad(f"page_size= a power of two from 64 to {MAX_PAGE_SIZE}")
            continue
        op, args = words[0], words[1:]
        if op == "end" and magic == MAGIC:
            if len(args) != 1 or not args[0].isdigit() or int(args[0]) != len(events):
                raise bad(f"'end {len(events)}': the number of events before it")
            ended = lineno
            continue
        if op not in OPS:
            raise bad(f"an event ({', '.join(OPS)})")
        names = OPS[op]
        if len(args) != len(names):
            raise bad(f"'{op}{''.join(' ' + n.upper() for n in names)}'")
        try:
            values = tuple(int(a) for a in args)
        except ValueError:
            usage = op + "".join(" " + n.upper() for n in names)
            raise bad(f"integer arguments: '{usage}'") from None
        if any(v < 0 for v in values):
            raise bad("non-negative integers")
        if op == "store" and not 1 <= values[1] <= page_size:
            raise bad(f"an object size from 1 to the page size ({page_size})")
        if op in ("direct", "kcompactd") and not 0 <= values[-1] <= 10:
            raise bad("an order from 0 to 10")
        if names and names[0] == "id":
            _check_id(op, values[0], lineno, live, freed, bad)
        events.append((op, *values))
    if magic is None or nr_pages is None:
        raise UsageError(f"{path}: empty trace: expected {MAGIC!r} and a 'zone' line")
    if magic == MAGIC and ended is None:
        raise UsageError(f"{path}:{lineno}: no 'end {len(events)}' line: the trace was cut off "
                         "after its last whole line; save or copy it again")
    return Trace(path.stem, nr_pages, page_size, tuple(events))


def _check_id(op: str, key: int, lineno: int, live: dict[int, tuple[str, int]],
              freed: dict[int, int], bad: Callable[[str], UsageError]) -> None:
    """An id is made live by store/lru/slab/direct and ends with free; every other use
    needs it live, and a live id is never made again."""
    if op in CREATES:
        if key in live:
            raise bad(f"a new id: id {key} is still live ({live[key][0]} at line "
                      f"{live[key][1]}, not freed since)")
        live[key] = (op, lineno)
        freed.pop(key, None)
        return
    if key in live:
        if op == "free":
            freed[key] = lineno
            del live[key]
        elif live[key][0] != "store":
            raise bad(f"a driver object: id {key} is {live[key][0]} (line {live[key][1]})")
        return
    if key in freed:
        raise bad(f"a live id: id {key} was freed at line {freed[key]}"
                  + (" (a double free)" if op == "free" else ""))
    raise bad(f"a live id: id {key} was never stored")
