"""The bundled drivers leave the very same bytes in zone memory, run after run.

A digest is the SHA-256 of the whole zone buffer as `run_one` of the
`small` preset with seed 1 leaves it, just before the run destroys the
instance: everything the driver models keep in page memory
(zsmalloc's object heads and free-list links, z3fold's buddies, the objects'
bytes) and the LRU pages around them.  It pins the layout: a speed-up of a
model, or of the core under it, must not move a byte.  A change that is
meant to move bytes (a model or the allocator placing pages differently)
updates the digest with the value the failure prints, and says why.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from unittest import mock

import pytest

from mmplug import PluginHost, hookimpl
from mmplug.compare.machine import Machine
from mmplug.compare.runner import iter_public, run_one
from mmplug.compare.workload import preset

#: driver -> SHA-256 of the zone buffer after the small preset, seed 1
ZONE_DIGESTS = {
    "balloon": "e304def5669285cb9851ec1e81393c9e236078f6b7fefbe287f4d3b73fd7bcb3",
    "z3fold": "d253992135bf79d45583ee61a2385b90810f26e2a8377af82196797b6c0eb1ff",
    "zsmalloc": "03989e49663ded776ccc37ce82d4c2ca1873dcd3ab7e1cb519ab560ab02b5b67",
}


class _ZoneOfTheRun:
    """An event listener that keeps the zone the run compacts."""

    def __init__(self) -> None:
        self.zone: Any = None

    @hookimpl
    def mmplug_after_compact_zone(self, zone: Any, order: int, mode: Any, result: Any) -> None:
        self.zone = zone


def zone_after_run(driver: str) -> tuple[str, dict[str, Any]]:
    """(digest of the zone buffer before destroy(), the run's JSON-ready result without
    timings)."""
    host = PluginHost()
    host.load_entry_points()
    listener = _ZoneOfTheRun()
    host.pm.register(listener)
    digests: list[str] = []
    destroy = Machine.destroy

    def digest_then_destroy(m: Machine) -> None:
        zone = m.vm.zone
        digest = hashlib.sha256()
        for page in zone.pages:
            digest.update(zone.page_address(page))
        digests.append(digest.hexdigest())
        destroy(m)

    with mock.patch.object(Machine, "destroy", digest_then_destroy):
        result = run_one(host, driver, preset("small").with_overrides(seed=1))
    assert result["status"] == "ok", result["error"]
    assert listener.zone is not None, "the small preset compacts: the listener saw no zone"
    assert len(digests) == 1, "the run destroys its instance once"
    public = dict(iter_public(result))
    public.pop("wall_seconds")
    return digests[0], public


@pytest.mark.parametrize("driver", sorted(ZONE_DIGESTS))
def test_zone_bytes_are_the_pinned_ones(driver: str) -> None:
    digest, _ = zone_after_run(driver)
    assert digest == ZONE_DIGESTS[driver], f"{driver}: the zone now hashes to {digest}"


@pytest.mark.parametrize("driver", sorted(ZONE_DIGESTS))
@pytest.mark.slow
def test_same_seed_same_zone_and_result(driver: str) -> None:
    first = zone_after_run(driver)
    again = zone_after_run(driver)
    assert first[0] == again[0]
    assert json.dumps(first[1], sort_keys=True, default=str) == \
        json.dumps(again[1], sort_keys=True, default=str)
