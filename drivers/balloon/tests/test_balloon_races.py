"""Several simulated CPUs: deflation, frees and compaction interleaved at random (seeded).

The fixed driver keeps DRV-B1..B3 under every schedule tried; with BUG-9 or
BUG-12 reintroduced the same search finds the failure within a few seeds.
"""

from __future__ import annotations

import pytest

import mmplug
import mmplug_balloon
from mmplug.compaction import compact_memory
from mmplug.migrate import PageList
from mmplug_balloon.scenarios import isolate, migrate

scheduler_module = pytest.importorskip("mmplug.cpus.scheduler")
schedule = pytest.importorskip("mmplug.cpus.schedule")


def run_once(seed: int, bugs: tuple[str, ...] = (), whole_zone: bool = False) -> str | None:
    """One 2-CPU run: a deflater against a compactor; returns what went wrong, or None.

    The compactor either isolates and migrates the balloon's first pages
    (the narrow race) or runs compact_memory over a full, fragmented zone.
    """
    scheduler = scheduler_module.Scheduler(cpus=2)
    host = mmplug.PluginHost()
    host.register(mmplug_balloon)
    vm = mmplug.VM(mmplug.VMConfig(nr_pages=128, pageblock_order=5, max_order=7,
                                   min_free_pages=1), plugins=host, cpus=scheduler)
    balloon = vm.create_driver("balloon", bugs=bugs)
    if whole_zone:
        balloon.inflate(vm.config.nr_pages)
        for handle in list(balloon.handles)[::2]:
            balloon.free(handle)
    else:
        balloon.inflate(6)
    handles = sorted(balloon.handles)

    def free(handle: int) -> None:
        try:
            balloon.free(handle)
        except KeyError:
            pass  # deflate() took that page first

    def deflater() -> None:
        free(handles[0])
        balloon.deflate(2)
        balloon.inflate(1)
        free(handles[1])

    def compactor() -> None:
        if whole_zone:
            compact_memory(vm)
            return
        pagelist = PageList()
        for handle in handles[:4]:
            page = balloon.handles.get(handle)
            if page is not None:
                isolate(vm, page, pagelist)
        migrate(vm, pagelist)

    out = scheduler.run([deflater, compactor], schedule.RandomStrategy(seed))
    if out.error is not None or out.deadlock or out.livelock:
        return (f"{out.error!r} deadlock={out.deadlock} livelock={out.livelock} "
                f"schedule={out.schedule}")
    try:
        balloon.verify()
        vm.zone.check_free_lists()
    except AssertionError as exc:
        return f"verify: {exc}"
    leaked = vm.unclaimed_pages()
    return f"leaked {leaked}" if leaked else None


@pytest.mark.parametrize("whole_zone", [False, True], ids=["pages", "zone"])
def test_fixed_driver_survives_random_schedules(whole_zone):
    failures = {seed: r for seed in range(150)
                if (r := run_once(seed, whole_zone=whole_zone)) is not None}
    assert not failures, failures


@pytest.mark.parametrize("bug, symptom", [("BUG-9", "DRV-B3"), ("BUG-12", "BUG-12")])
def test_reintroduced_race_is_found_by_the_same_search(bug, symptom):
    found = [r for seed in range(100) if (r := run_once(seed, (bug,))) is not None]
    assert any(symptom in r for r in found), found[:3]
