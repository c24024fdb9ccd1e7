"""A fill's unrolled step takes the same users in the same order as the general loop."""

from __future__ import annotations

from collections import Counter

import pytest
from comparehelp import KNOBPOOL, SIMPLEPOOL, host, tiny

from mmplug.compare.machine import Machine
from mmplug.compare.runner import _fill, _Streams
from mmplug.compare.workload import Workload


def _history(w: Workload, unrolled: bool) -> list[tuple]:
    h = host()
    m = Machine(h.get(SIMPLEPOOL), h, w.nr_pages, w.page_size, record=True)
    next_id = _fill(m, w, _Streams(w.seed), 0, unrolled=unrolled)
    assert m.trace is not None
    return [*m.trace, ("next_id", next_id)]


def _state(driver: str, w: Workload, record: bool) -> dict:
    """What a fill leaves behind, through Machine.execute() (record) or the ops directly."""
    h = host()
    m = Machine(h.get(driver), h, w.nr_pages, w.page_size, record=record)
    next_id = _fill(m, w, _Streams(w.seed), 0)
    zone = m.vm.zone
    return dict(next_id=next_id, objects=m.objects, sizes=m.sizes, digests=m.digests,
                lru=m.lru_keys, slabs={k: p.pfn for k, p in m.slabs.items()}, stats=m.stats,
                rejected=m.last_store_rejected, buddy=zone.buddyinfo(),
                driver_pfns=m.driver_pfns())


@pytest.mark.parametrize("shares", [(0.7, 0.25, 0.05), (0.3, 0.3, 0.4), (0.5, 0.5, 0.0)])
@pytest.mark.parametrize("seed", [1, 7, 12345])
def test_unrolled_fill_step_equals_the_general_loop(shares, seed):
    driver, lru, slab = shares
    w = tiny(seed=seed, driver_share=driver, lru_share=lru, slab_share=slab)
    fast, slow = _history(w, True), _history(w, False)
    assert fast == slow
    kinds = Counter(ev[0] for ev in fast)
    # every user that has a share took pages, and no step was lost
    assert all(kinds[k] > 10 for k, s in (("store", driver), ("lru", lru), ("slab", slab)) if s)
    assert sum(kinds.values()) > 500


@pytest.mark.parametrize("driver", [SIMPLEPOOL, KNOBPOOL])
@pytest.mark.parametrize("seed", [3, 7])
def test_a_fill_that_records_nothing_calls_the_ops_as_execute_does(driver, seed):
    # sizes past the test drivers' slots: rejected, halved and retried on both paths
    w = tiny(seed=seed, sizes=((256, 1.0), (4096, 1.0), (3000, 0.5)))
    direct, executed = _state(driver, w, False), _state(driver, w, True)
    assert direct == executed
    assert direct["stats"]["store_rejected"] > 0 and direct["stats"]["objects_stored"] > 100
    assert direct["stats"]["lru_pages"] > 0 and direct["stats"]["slab_pages"] > 0
