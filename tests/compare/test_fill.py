"""A fill's unrolled step takes the same users in the same order as the general loop."""

from __future__ import annotations

from collections import Counter

import pytest
from comparehelp import SIMPLEPOOL, host, tiny

from mmplug.compare.machine import Machine
from mmplug.compare.runner import _fill, _Streams
from mmplug.compare.workload import Workload


def _history(w: Workload, unrolled: bool) -> list[tuple]:
    h = host()
    m = Machine(h.get(SIMPLEPOOL), h, w.nr_pages, w.page_size, record=True)
    next_id = _fill(m, w, _Streams(w.seed), 0, unrolled=unrolled)
    assert m.trace is not None
    return [*m.trace, ("next_id", next_id)]


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
