"""Trace files: parsing, errors, and exact replay of a saved history."""

from __future__ import annotations

import pytest
from comparehelp import KNOBPOOL, host, tiny, without_wall

from mmplug import UsageError
from mmplug.compare.runner import run_one
from mmplug.compare.trace import Trace, format_trace, load_trace, parse_trace, write_trace


def test_round_trip():
    t = Trace("t", 1024, 4096, (("store", 0, 100), ("lru", 1), ("pin", 0), ("compact",),
                                ("direct", 2, 9), ("kcompactd", 3), ("free", 1)))
    again = parse_trace(format_trace(t).splitlines(), "t.trace")
    assert again == t


@pytest.mark.parametrize("lines, expected", [
    (["zone pages=1024"], "expected the first line 'mmplug-trace 2'"),
    (["mmplug-trace 1", "store 1 10"], "'zone pages=N page_size=BYTES' before any event"),
    (["mmplug-trace 1", "zone pages=1000"], "512-page pageblocks"),
    (["mmplug-trace 1", "zone pages=1024", "explode 3"], "an event (store, lru"),
    (["mmplug-trace 1", "zone pages=1024", "store 1"], "'store ID BYTES'"),
    (["mmplug-trace 1", "zone pages=1024", "free x"], "integer arguments"),
    (["mmplug-trace 1", "zone pages=1024", "store 1 9000"], "object size from 1 to the page size"),
    (["mmplug-trace 1", "zone pages=1024", "direct 1 11"], "an order from 0 to 10"),
    ([], "empty trace"),
])
def test_errors_name_file_and_line(lines, expected):
    with pytest.raises(UsageError) as err:
        parse_trace(lines, "h.trace")
    assert "h.trace" in str(err.value) and expected in str(err.value)
    if lines:
        assert f"h.trace:{len(lines)}:" in str(err.value)


def test_saved_history_replays_exactly(tmp_path):
    """A workload run saved as a trace and replayed gives the very same metrics."""
    h = host()
    first = run_one(h, KNOBPOOL, tiny(seed=5), record=True)
    trace = Trace("saved", 2048, 4096, tuple(first["_trace"]))
    path = tmp_path / "saved.trace"
    write_trace(trace, path)
    replay = run_one(h, KNOBPOOL, load_trace(path))
    a, b = without_wall(first), without_wall(replay)
    a.pop("seed"), b.pop("seed")
    assert a == b
    assert first["isolation"]["refused_by_driver"] > 0   # the knobs are in the history


def test_comments_and_blank_lines():
    t = parse_trace(["# a history", "mmplug-trace 1", "", "zone pages=512 page_size=4096  # z",
                     "lru 1  # one page"], "c.trace")
    assert t.events == (("lru", 1),) and t.nr_pages == 512


def test_the_shipped_sample_trace_replays():
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "examples" / "workloads" / "sample.trace"
    trace = load_trace(path)
    assert trace.nr_pages == 2048 and len(trace.events) > 1000
    r = run_one(host(), KNOBPOOL, trace)
    assert r["status"] == "ok" and r["integrity"]["objects_lost"] == 0
    assert r["counters"]["compact_migrate_scanned"] > 0


@pytest.mark.parametrize("cpus", [1, 2])
def test_a_run_that_records_nothing_gives_the_metrics_of_a_recorded_one(cpus):
    """Unrecorded, the free phase and the compaction triggers call the ops directly;
    the metrics are those of the run that goes through Machine.execute()."""
    h = host()
    w = tiny(seed=9, cpus=cpus, free_during=0.05, rounds=2)
    recorded = run_one(h, KNOBPOOL, w, record=True)
    direct = run_one(h, KNOBPOOL, w)
    assert recorded["_trace"] and direct["_trace"] is None
    assert recorded["status"] == direct["status"] == "ok", recorded["error"]
    assert without_wall(recorded) == without_wall(direct)
    assert direct["workload_stats"]["frees"] > 100 and direct["workload_stats"]["pins"] > 0
