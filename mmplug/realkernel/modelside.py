"""The model from the kernel's starting point: every zone built from the `before` snapshot,
the driver's history replayed onto the driver's real pfns, compact_memory run zone by zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..compare.snapshot import (
    DRIVERS, ModelZone, PageFrames, build_zone, compact_node, fill_replay, model_frames,
)
from ..vmstat import KERNEL_EVENTS


@dataclass
class ModelRun:
    zones: list[ModelZone]
    before: PageFrames
    after: PageFrames
    meeting: dict[str, int]
    counters: dict[str, int]
    driver_zone: str | None
    placement: dict[str, int]
    #: the kernel's driver pages in zones other than the driver's own
    driver_elsewhere: int = 0
    #: each zone's free blocks per order right after compaction (what /proc/buddyinfo
    #: shows then), before anything the scenario does next (zram's own compact)
    buddyinfo: dict[str, list[int]] = field(default_factory=dict)
    #: the movable pages the model's instances in those other zones hold
    filled_elsewhere: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def instance(self) -> Any:
        """The driver instance of the driver's zone (the one replaying its history)."""
        for z in self.zones:
            if z.name == self.driver_zone:
                return z.instance
        return None

    def driver_pfns(self, frames: PageFrames, driver: str) -> set[int]:
        return set(frames.pfns_of(DRIVERS[driver][0]))


def driver_zone(frames: PageFrames, driver: str) -> str | None:
    """The zone holding most of the driver's pages (the model's driver lives in one zone)."""
    code = DRIVERS[driver][0]
    best, most = None, 0
    for z in frames.zones:
        n = len(frames.pfns_of(code, z.start_pfn, z.end_pfn))
        if n > most:
            best, most = z.name, n
    return best


def run_model(frames: PageFrames, host: Any, driver: str, replay: Callable[[Any], None],
              after_compaction: Callable[[Any], dict[str, Any]] | None = None,
              options: dict[str, bool] | None = None,
              plans: dict[Any, Any] | None = None) -> ModelRun:
    """Build every zone, compact each (in zone order, as compact_node does), collect.

    The model runs v4.19 with the newer-kernel `options` given (VMConfig fields;
    mmplug.vm.kernel_settings(release) for a release's).  Runs from the same frames
    and replay may share `plans` (snapshot.build_zone)."""
    home = driver_zone(frames, driver)
    models: list[ModelZone] = []
    elsewhere = 0
    code = DRIVERS[driver][0]
    for z in frames.zones:
        mine = z.name == home
        n = 0 if mine else len(frames.pfns_of(code, z.start_pfn, z.end_pfn))
        elsewhere += n
        # the driver's pages in another zone: an instance of their own, filled with
        # seeded objects (the kernel's pool allocates there too; which objects, no
        # file of the run says)
        zone_replay = replay if mine else fill_replay(n) if n else None
        models.append(build_zone(frames, z.name, host=host, driver=driver if zone_replay else None,
                                 replay=zone_replay, options=options,
                                 plans=plans if mine else None))
    before = model_frames(models, frames)
    meeting = {name: end["migrate_pfn"] for name, end in compact_node(models).items()}
    after = model_frames(models, frames)
    buddyinfo = {m.name: m.vm.zone.buddyinfo() for m in models}
    counters = {k: sum(m.vm.vmstat.events.get(k, 0) for m in models) for k in KERNEL_EVENTS}
    placement = next((m.placement for m in models if m.name == home), {})
    filled = sum(len(before.pfns_of(code, m.span.start_pfn, m.span.end_pfn))
                 for m in models if m.name != home)
    run = ModelRun(models, before, after, meeting, counters, home, placement, elsewhere,
                   buddyinfo, filled)
    if after_compaction is not None and run.instance is not None:
        run.extra = after_compaction(run.instance)
    return run
