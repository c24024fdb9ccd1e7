"""The model from the kernel's starting point: every zone built from the `before` snapshot,
the driver's history replayed onto the driver's real pfns, compact_memory run zone by zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..compare.snapshot import (
    DRIVERS, ModelZone, PageFrames, build_zone, compact_whole_zone, model_frames,
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
    #: driver pages in zones other than the driver's own, held as unmovable memory there
    driver_elsewhere: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def instance(self) -> Any:
        for z in self.zones:
            if z.instance is not None:
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
              after_compaction: Callable[[Any], dict[str, Any]] | None = None) -> ModelRun:
    """Build every zone, compact each (in zone order, as compact_node does), collect."""
    home = driver_zone(frames, driver)
    models: list[ModelZone] = []
    elsewhere = 0
    code = DRIVERS[driver][0]
    for z in frames.zones:
        mine = z.name == home
        if not mine:
            elsewhere += len(frames.pfns_of(code, z.start_pfn, z.end_pfn))
        models.append(build_zone(frames, z.name, host=host, driver=driver if mine else None,
                                 replay=replay if mine else None))
    before = model_frames(models, frames)
    meeting: dict[str, int] = {}
    for m in models:
        meeting[m.name] = compact_whole_zone(m)["migrate_pfn"]
    after = model_frames(models, frames)
    counters = {k: sum(m.vm.vmstat.events.get(k, 0) for m in models) for k in KERNEL_EVENTS}
    placement = next((m.placement for m in models if m.instance is not None), {})
    run = ModelRun(models, before, after, meeting, counters, home, placement, elsewhere)
    if after_compaction is not None and run.instance is not None:
        run.extra = after_compaction(run.instance)
    return run
