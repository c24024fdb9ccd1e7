"""What the guest kernel did, read from the files its run left (a `--keep` folder).

Layout of a run folder (written by guest/lib.sh): before/ and after/ each
hold vmstat, buddyinfo, pagetypeinfo, zoneinfo, blocks (the probe's
pageblock types), kpageflags, kpagecount and movable (the probe's list of
non-LRU movable pages), and mm_stat or zswap where the scenario has them;
beside them trace (the compaction tracepoints around compact_memory),
mm_stat.filled / mm_stat.compacted (zram), zswap.filled / zswap.removed.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..compare.snapshot import DRIVERS, PageFrames, from_machine
from . import procfs


class RunFilesError(Exception):
    """A run folder lacks a file or holds one that does not parse."""


def _bytes(path: Path) -> bytes:
    """A file's bytes; `name.gz` stands for `name` (fixtures and kept runs may be gzip'd)."""
    gz = path.with_name(path.name + ".gz")
    try:
        if not path.exists() and gz.exists():
            return gzip.decompress(gz.read_bytes())
        return path.read_bytes()
    except OSError as exc:
        raise RunFilesError(f"{path}: {exc.strerror}") from None


def _text(path: Path) -> str:
    # the guest pads what it dumps to whole 4 KiB blocks with NULs
    return _bytes(path).rstrip(b"\0").decode()


def _opt(path: Path) -> str | None:
    gz = path.with_name(path.name + ".gz")
    return _text(path) if path.exists() or gz.exists() else None


@dataclass
class Moment:
    """One snapshot of the guest: before or after compaction."""

    vmstat: dict[str, int]
    buddyinfo: dict[str, list[int]]
    pagetypeinfo: dict[str, Any]
    zones: list[procfs.ZoneInfo]
    frames: PageFrames
    mm_stat: dict[str, int] | None = None
    zswap: dict[str, int] | None = None


def read_moment(d: Path, source: dict[str, Any] | None = None) -> Moment:
    try:
        flags = procfs.u64_array(_bytes(d / "kpageflags"))
        zones = procfs.zoneinfo(_text(d / "zoneinfo"))
        movable = procfs.probe_movable(_text(d / "movable"))
        blocks = procfs.probe_blocks(_text(d / "blocks"))
        frames = from_machine(flags, zones, movable=movable, blocks=blocks, source=source)
        mm = _opt(d / "mm_stat")
        zs = _opt(d / "zswap")
        return Moment(procfs.vmstat(_text(d / "vmstat")), procfs.buddyinfo(_text(d / "buddyinfo")),
                      procfs.pagetypeinfo(_text(d / "pagetypeinfo")), zones, frames,
                      procfs.mm_stat(mm) if mm else None, procfs.zswap(zs) if zs else None)
    except OSError as exc:
        raise RunFilesError(f"{d}: {exc.strerror}: {exc.filename}") from None
    except procfs.ParseError as exc:
        raise RunFilesError(f"{d}: {exc}") from None


@dataclass
class KernelRun:
    """Both moments, the compaction's trace and the scenario's own files."""

    before: Moment
    after: Moment
    trace: list[procfs.ZoneRun]
    extra: dict[str, Any] = field(default_factory=dict)
    release: str = ""
    package_version: str = ""

    def counter(self, name: str) -> int:
        """The change of a /proc/vmstat counter across compaction."""
        return self.after.vmstat.get(name, 0) - self.before.vmstat.get(name, 0)

    def driver_pfns(self, moment: Moment, driver: str) -> set[int]:
        code = DRIVERS[driver][0]
        return set(moment.frames.pfns_of(code))

    def meeting_point(self, zone_start: int) -> int | None:
        """Where the migrate scanner stopped in the zone starting at zone_start."""
        for run in self.trace:
            if run.zone_start == zone_start and run.migrate_end:
                return run.migrate_end
        return None


def read_run(out: Path) -> KernelRun:
    """A run folder -> KernelRun."""
    dmesg = _opt(out / "dmesg") or ""
    release = version = ""
    for line in dmesg.splitlines():
        if "Linux version" in line:
            release = line.split("Linux version", 1)[1].split()[0]
            # "... #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (date)": the last "Debian X"
            found = re.findall(r"Debian (\S+)", line)
            version = found[-1] if found else ""
            break
    source = {"kernel": release, "machine": "qemu guest", "probe": True}
    before = read_moment(out / "before", source)
    after = read_moment(out / "after", source)
    trace_text = _opt(out / "trace") or ""
    extra: dict[str, Any] = {}
    for name in ("mm_stat.filled", "mm_stat.compacted"):
        t = _opt(out / name)
        if t:
            extra[name] = procfs.mm_stat(t)
    for name in ("zswap.filled", "zswap.removed"):
        t = _opt(out / name)
        if t:
            extra[name] = procfs.zswap(t)
    return KernelRun(before, after, procfs.compaction_trace(trace_text), extra, release, version)
