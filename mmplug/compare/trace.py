"""Trace files: a history of allocations, frees and compactions, replayed exactly.

Fragmentation is what a history leaves behind, so a trace does not say "30 %
fragmented": it says which object was stored, which page faulted in, which
was freed, in order.  Every workload run can be saved as a trace
(`mmplug compare --save-trace`), and replaying it on another driver gives
that driver the very same history.

Format, one event per line, `#` starts a comment::

    mmplug-trace 1
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
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

from attrs import frozen

from ..errors import UsageError

MAGIC = "mmplug-trace 1"

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

Event = tuple  # (op, *int args)


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
    return "\n".join(lines) + "\n"


def write_trace(trace: Trace, path: str | Path) -> None:
    Path(path).write_text(format_trace(trace), encoding="utf-8")


def load_trace(path: str | Path) -> Trace:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such trace file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a text file ({exc.reason})") from None
    return parse_trace(text.splitlines(), path)


def parse_trace(lines: Iterable[str], path: str | Path = "<trace>") -> Trace:
    path = Path(path)
    events: list[Event] = []
    nr_pages = page_size = None
    seen_magic = False
    for lineno, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue

        def bad(expected: str) -> UsageError:
            return UsageError(f"{path}:{lineno}: {text!r}: expected {expected}")

        if not seen_magic:
            if text != MAGIC:
                raise bad(f"the first line {MAGIC!r}")
            seen_magic = True
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
            if nr_pages < 512 or nr_pages % 512:
                raise bad("pages= a whole number of 512-page pageblocks")
            if page_size < 64 or page_size & (page_size - 1):
                raise bad("page_size= a power of two >= 64")
            continue
        op, args = words[0], words[1:]
        if op not in OPS:
            raise bad(f"an event ({', '.join(OPS)})")
        names = OPS[op]
        if len(args) != len(names):
            raise bad(f"'{op}{''.join(' ' + n.upper() for n in names)}'")
        try:
            values = tuple(int(a) for a in args)
        except ValueError:
            raise bad(f"integer arguments: '{op}{''.join(' ' + n.upper() for n in names)}'") from None
        if any(v < 0 for v in values):
            raise bad("non-negative integers")
        if op == "store" and not 1 <= values[1] <= page_size:
            raise bad(f"an object size from 1 to the page size ({page_size})")
        if op in ("direct", "kcompactd") and not 0 <= values[-1] <= 10:
            raise bad("an order from 0 to 10")
        events.append((op, *values))
    if not seen_magic or nr_pages is None:
        raise UsageError(f"{path}: empty trace: expected {MAGIC!r} and a 'zone' line")
    return Trace(path.stem, nr_pages, page_size, tuple(events))
