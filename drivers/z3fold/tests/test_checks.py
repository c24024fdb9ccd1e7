"""The checks z3fold brings to check-driver (DRV-3F1, DRV-3F2): the pool passes them, a pool
that isolates a page with a mapped object or makes a HEADLESS page movable fails them."""

from __future__ import annotations

import mmplug_z3fold
from mmplug.conformance import FAIL, OK, list_checks, run_suite
from mmplug.kernel import lock_page, set_page_movable, unlock_page
from mmplug_z3fold import migration
from mmplug_z3fold.instance import Z3fold

DRV = ["DRV-3F2/refuses-mapped", "DRV-3F1/headless-not-movable"]


def verdicts():
    return {r.check: r for r in run_suite("z3fold", select=["DRV"]).results}


def test_z3fold_brings_its_checks():
    assert [c.id for c in list_checks("z3fold") if c.id.startswith("DRV-")] == DRV


def test_the_pool_passes_them():
    assert {c: r.verdict for c, r in verdicts().items()} == {c: OK for c in DRV}


def test_isolating_a_page_with_a_mapped_object_is_caught(monkeypatch):
    def forgets_the_maps(page, mode):
        zhdr = page.zone.mappings[page.mapping & ~3].private_data.header_of(page)
        zhdr.mapped_count, was = 0, zhdr.mapped_count
        try:
            return migration.z3fold_page_isolate(page, mode)
        finally:
            zhdr.mapped_count = was

    monkeypatch.setattr(mmplug_z3fold, "z3fold_page_isolate", forgets_the_maps)
    result = verdicts()["DRV-3F2/refuses-mapped"]
    assert result.verdict == FAIL and result.rule == "DRV-3F2"


def test_a_movable_headless_page_is_caught(monkeypatch):
    store = Z3fold.store

    def store_movable(self, data):
        handle = store(self, data)
        for page in self.pages():
            if not page.mapping:
                lock_page(page)
                set_page_movable(page, self.mapping)
                unlock_page(page)
        return handle

    monkeypatch.setattr(Z3fold, "store", store_movable)
    result = verdicts()["DRV-3F1/headless-not-movable"]
    assert result.verdict == FAIL and result.rule == "DRV-3F1"
