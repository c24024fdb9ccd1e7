"""The checks zsmalloc brings to check-driver (DRV-Z5, DRV-Z6): the fixed pool passes them,
the pool with a bug back fails them, and a renamed copy brings them too."""

from __future__ import annotations

import mmplug_zsmalloc
from mmplug.conformance import FAIL, OK, list_checks, run_suite
from mmplug_zsmalloc import migration
from mmplug_zsmalloc.zspage import get_zspage

DRV = ["DRV-Z5/emptied-while-isolated", "DRV-Z6/compaction-skips-isolated"]


def verdicts(**options):
    report = run_suite("zsmalloc", select=["DRV"], driver_options=options)
    return {r.check: r for r in report.results}


def test_the_pool_brings_its_checks_whatever_its_name():
    assert [c.id for c in list_checks("zsmalloc") if c.id.startswith("DRV-")] == DRV
    assert [c.id for c in list_checks("mine@mmplug_zsmalloc") if c.id.startswith("DRV-")] == DRV


def test_the_fixed_pool_passes_them():
    assert {c: r.verdict for c, r in verdicts().items()} == {c: OK for c in DRV}


def test_bug6_is_caught_without_a_race():
    result = verdicts(bugs={"BUG-6"})["DRV-Z5/emptied-while-isolated"]
    assert result.verdict == FAIL and result.rule == "DRV-Z4"
    assert "stays in ZS_EMPTY forever" in result.message and result.hook == "migratepage"


def test_object_compaction_on_an_isolated_zspage_is_caught(monkeypatch):
    def isolate_but_stay_listed(page, mode):
        ok = migration.zs_page_isolate(page, mode)
        if ok:   # the zspage goes back on its class list: zs_compact can pick it
            zspage = get_zspage(page)
            pool = page.zone.mappings[page.mapping & ~3].private_data
            pool.size_class[zspage.class_idx].insert_zspage(zspage, zspage.fullness)
        return ok

    monkeypatch.setattr(mmplug_zsmalloc, "zs_page_isolate", isolate_but_stay_listed)
    result = verdicts()["DRV-Z6/compaction-skips-isolated"]
    assert result.verdict == FAIL and result.rule == "DRV-Z6", result.message
