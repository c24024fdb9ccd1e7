"""The table, the kernel's formats and the JSON document."""

from __future__ import annotations

import json
import re

import pytest
from comparehelp import KNOBPOOL, SIMPLEPOOL, host, tiny, without_wall

from mmplug.compare.metrics import Snapshot
from mmplug.compare.render import (
    buddyinfo_text,
    index_text,
    json_document,
    kernel_text,
    pagetypeinfo_text,
    table,
)
from mmplug.compare.runner import run_all, scenario_dict


def _results(seeds=(1,)):
    w = tiny()
    return run_all(host(), [KNOBPOOL, SIMPLEPOOL], w, list(seeds)), w


def test_table_has_drivers_as_columns_seed_and_real_differences():
    results, w = _results()
    text = table(results, scenario_dict(w), [1])
    head = text.splitlines()
    assert "seed 1" in head[0]
    assert re.search(r"^\s+knobpool\s+simplepool$", text, re.M)
    refused = re.search(r"refused by driver\s+(\S+)\s+(\S+)", text)
    assert int(refused.group(1).replace(",", "")) > 0 and refused.group(2) == "0"
    mapped = re.search(r"objects mapped \(knob map\)\s+(\S+)\s+(\S+)", text)
    assert mapped.group(2) == "n/a"
    assert re.search(r"objects lost\s+0\s+0", text)
    after = results[0][0]["outcome"]["after"]["buddyinfo"]
    assert re.search(r"knobpool\s+after\s+" + r"\s+".join(map(str, after)) + "$", text, re.M)


@pytest.mark.slow
def test_table_with_seeds_shows_mean_and_spread():
    results, w = _results(seeds=(1, 2, 3))
    text = table(results, scenario_dict(w), [1, 2, 3])
    assert "seeds 1..3 (3 runs, mean±stdev)" in text
    assert re.search(r"isolation attempts\s+[\d,.]+±[\d,.]+", text)


def test_kernel_formats_match_the_kernel_printf():
    snap = Snapshot(buddyinfo=(5, 4, 3, 2, 1, 0, 0, 0, 0, 1, 0),
                    free_by_type=tuple(tuple([1] * 11) for _ in range(6)),
                    blocks_by_type=(1, 7, 0, 0, 0, 0), nr_free_pages=0)
    # frag_show_print: "Node %d, zone %8s " then "%6lu " per order
    assert buddyinfo_text(snap) == ("Node 0, zone   Normal "
                                    + "".join(f"{n:6d} " for n in snap.buddyinfo) + "\n")
    pti = pagetypeinfo_text(snap).splitlines()
    assert pti[0] == "Page block order: 9" and pti[1] == "Pages per block:  512"
    # pagetypeinfo_showfree: "%-43s " then "%6d " per order
    assert pti[3].startswith(f"{'Free pages count per migrate type at order':<43} {0:6d} ")
    assert pti[4].startswith("Node    0, zone   Normal, type    Unmovable      1 ")
    assert pti[-2] == ("Number of blocks type     Unmovable      Movable  Reclaimable   "
                       "HighAtomic          CMA      Isolate ")
    assert pti[-1].startswith("Node 0, zone   Normal            1            7 ")
    assert index_text([-1000, 0, 512]) == "Node 0, zone   Normal -1.000 0.000 0.512 \n"


def test_kernel_text_of_a_run():
    results, _ = _results()
    text = kernel_text(results)
    for name in ("knobpool", "simplepool"):
        for f in ("/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/vmstat",
                  "/sys/kernel/debug/extfrag/unusable_index",
                  "/sys/kernel/debug/extfrag/extfrag_index"):
            assert f"==> {name}: {f} <==" in text
    assert re.search(r"^pgmigrate_success \d+$", text, re.M)
    assert re.search(r"^compact_stall \d+$", text, re.M)


@pytest.mark.slow
def test_json_has_everything_and_is_deterministic():
    results, w = _results(seeds=(1, 2))
    doc = json_document(results, scenario_dict(w), [1, 2])
    again = json_document(_results(seeds=(1, 2))[0], scenario_dict(w), [1, 2])
    json.dumps(doc)  # serialisable
    assert without_wall(doc) == without_wall(again)
    assert doc["seeds"] == [1, 2] and doc["workload"]["name"] == "tiny"
    assert doc["versions"]["knobpool"] == "0.1" and "mmplug" in doc["versions"]
    run = doc["drivers"]["knobpool"]["runs"][0]
    for group in ("counters", "isolation", "migration", "driver_callbacks", "outcome", "blocking",
                  "integrity", "cost", "wall_seconds", "workload_stats"):
        assert group in run, group
    for name in ("pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned",
                 "compact_free_scanned", "compact_isolated", "compact_stall", "compact_success",
                 "compact_fail"):
        assert name in run["counters"]
    for when in ("before", "after"):
        for k in ("buddyinfo", "unusable_index_3", "unusable_index_9", "extfrag_index_3",
                  "extfrag_index_9", "free_pageblocks"):
            assert k in run["outcome"][when]
    assert "order9_success_rate" in run["outcome"]
    summary = doc["drivers"]["knobpool"]["summary"]
    assert summary["isolation.attempts"]["n"] == 2
