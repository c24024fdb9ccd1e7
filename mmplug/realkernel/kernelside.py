"""What the guest kernel did, read from the files its run left (a `--keep` folder).

Layout of a run folder (written by guest/lib.sh): before/ and after/ each
hold vmstat, buddyinfo, pagetypeinfo, zoneinfo, blocks (the probe's
pageblock types), kpageflags, kpagecount, movable (the probe's list of
non-LRU movable pages) and free (the free pfns the probe recorded when
buddyinfo was read), and mm_stat or zswap where the scenario has them;
before/ also holds free.start, blocks.start and buddyinfo.start, recorded the
moment each zone's compaction began, after/ free.end, blocks.end and buddyinfo.end,
recorded the moment it ended (the probe's compaction hooks; the first line of a
free file names the zones they recorded, else the records are of the moments
compact_memory was written and returned), and vmstat.start / vmstat.end, read right
before and after it; beside them trace (the compaction tracepoints around
compact_memory), mm_stat.filled / mm_stat.compacted (zram), zswap.filled /
zswap.removed.  Runs kept before the probe recorded free pfns have no free
files: their free pages are those /proc/kpageflags shows as PG_buddy.
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
    #: /proc/buddyinfo read the moment the frames' free pfns were recorded (None: the
    #: run recorded none, its free pfns are kpageflags' PG_buddy pages)
    buddyinfo_at_record: dict[str, list[int]] | None = None
    #: /proc/vmstat right before (vmstat.start) or after (vmstat.end) compact_memory
    vmstat_at_record: dict[str, int] | None = None
    #: the zones whose free pfns compact_zone() itself recorded as it began (.start) or
    #: ended (.end), after draining the per-cpu lists again (the probe's compaction hooks)
    hooked: tuple[str, ...] = ()


def read_moment(d: Path, source: dict[str, Any] | None = None, *, record: str = ""
                ) -> Moment:
    """One moment's files.  Its free pfns are those the probe recorded as free`record`
    (".start": when compact_memory began, ".end": when it returned), else as free."""
    try:
        flags = procfs.u64_array(_bytes(d / "kpageflags"))
        zones = procfs.zoneinfo(_text(d / "zoneinfo"))
        movable = procfs.probe_movable(_text(d / "movable"))
        suffix = record if record and _opt(d / f"free{record}") is not None else ""
        blocks = procfs.probe_blocks(_opt(d / f"blocks{suffix}") or _text(d / "blocks"))
        free_text = _opt(d / f"free{suffix}")
        free = procfs.probe_free(free_text) if free_text is not None else None
        mapcount = procfs.u64_array(_bytes(d / "kpagecount"))
        frames = from_machine(flags, zones, movable=movable, blocks=blocks, free=free,
                              mapcount=mapcount, source=source)
        bi = procfs.buddyinfo(_text(d / "buddyinfo"))
        bi_rec = _opt(d / f"buddyinfo{suffix}") if free is not None else None
        vs_rec = _opt(d / f"vmstat{record}") if record else None
        mm = _opt(d / "mm_stat")
        zs = _opt(d / "zswap")
        return Moment(procfs.vmstat(_text(d / "vmstat")), bi,
                      procfs.pagetypeinfo(_text(d / "pagetypeinfo")), zones, frames,
                      procfs.mm_stat(mm) if mm else None, procfs.zswap(zs) if zs else None,
                      procfs.buddyinfo(bi_rec) if bi_rec else None,
                      procfs.vmstat(vs_rec) if vs_rec else None,
                      procfs.probe_free_hooked(free_text) if free_text is not None else ())
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
        """The change of a /proc/vmstat counter across compact_memory (read right before
        and after it where the run did, else at the two snapshots)."""
        before, after = self.before.vmstat_at_record, self.after.vmstat_at_record
        if before is None or after is None:
            before, after = self.before.vmstat, self.after.vmstat
        return after.get(name, 0) - before.get(name, 0)

    def driver_pfns(self, moment: Moment, driver: str) -> set[int]:
        code = DRIVERS[driver][0]
        return set(moment.frames.pfns_of(code))

    def allocated_during(self, zone_start: int) -> list[procfs.AllocatedBlock]:
        """The pages the allocator took off the zone's buddy lists while its compaction
        ran (empty where the trace has no mm_page_alloc_zone_locked events)."""
        return [a for run in self.trace if run.zone_start == zone_start for a in run.allocated]

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
    before = read_moment(out / "before", source, record=".start")
    after = read_moment(out / "after", source, record=".end")
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
