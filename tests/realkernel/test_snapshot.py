"""Page-frame snapshots: classification of real kpageflags, the file, and the model built from it."""

import gzip
import json

import pytest

from mmplug.compare import snapshot as S
from mmplug.plugins import PluginHost


def test_snapshot_of_the_real_guest_counts_what_the_kernel_reported(zram_run):
    frames = zram_run.before.frames
    st = zram_run.before.mm_stat
    # every zsmalloc page the probe named, and no other page, is the driver's
    assert len(frames.pfns_of("z")) == st["mem_used_total"] // 4096
    # zspages' first pages carry PG_private (KPF_PRIVATE): one per zspage, fewer than pages
    first = frames.drivers["zsmalloc"]["first"]
    assert 0 < len(first) < len(frames.pfns_of("z"))
    # after a drain of the per-cpu lists, free pages are the buddy's: within a few pages
    for zone in frames.zones:
        snap = sum(n << o for o, n in enumerate(frames.buddy_blocks(zone)))
        proc = sum(n << o for o, n in enumerate(zram_run.before.buddyinfo[zone.name]))
        assert abs(snap - proc) <= max(16, proc // 200)


def test_classify_order_of_tests():
    b = S._BIT
    flags = [b["NOPAGE"], b["BUDDY"], b["COMPOUND_HEAD"] | b["SLAB"], b["COMPOUND_TAIL"],
             b["PGTABLE"], b["OFFLINE"], b["LRU"], 0, b["RESERVED"] | b["LRU"], 0]
    kinds, compound = S.classify(flags, movable={9: "zsmalloc"})
    assert kinds.decode() == "r.s+tblkrz"
    assert compound == {2: 1}


def test_classify_takes_free_pages_from_the_probes_record():
    """Where the probe recorded the free pfns, they and only they are free: a page the
    reader of kpageflags held counts free, a PG_buddy page allocated since the record
    counts as kernel memory; a mapped page without PG_lru is an LRU page."""
    b = S._BIT
    flags = [b["BUDDY"], b["BUDDY"], b["ANON"] | b["LRU"], 0, 0, b["RESERVED"]]
    kinds, _ = S.classify(flags, free=[(0, 1), (2, 3), (5, 6)], mapcount=[0, 0, 1, 1, 0, 0])
    assert kinds.decode() == ".k.lkr"
    assert S.classify(flags)[0].decode() == "..lkkr"


def test_compact_node_counts_earlier_zones_again_in_v419(zram_run, host):
    """compact_node() on the fixture's two zones: v4.19 counts DMA's scans again with
    DMA32's; with zone_scan_counts (a94b525241c0) each zone counts its own."""
    frames = zram_run.before.frames
    totals = {}
    for zeroes in (False, True):
        models = [S.build_zone(frames, z.name, host=host, options={"zone_scan_counts": zeroes})
                  for z in frames.zones]
        ends = S.compact_node(models)
        events = [m.vm.vmstat.events["compact_migrate_scanned"] for m in models]
        totals[zeroes] = (events, ends)
    (v419, ends419), (v61, ends61) = totals[False], totals[True]
    assert v419[0] == v61[0] == ends61["DMA"]["migrate_scanned"] > 0
    assert v419[1] == v61[1] + v61[0]
    assert ends419["DMA32"]["migrate_pfn"] == ends61["DMA32"]["migrate_pfn"]


def test_model_zone_spans_the_zone_not_its_pageblocks(zram_run, host):
    """The DMA zone starts at pfn 1 and its model's memmap at 0: compaction starts at 1."""
    frames = zram_run.before.frames
    model = S.build_zone(frames, "DMA", host=host)
    zone = model.vm.zone
    assert (model.base_pfn + zone.zone_start_pfn, zone.start_pfn) == (1, 0)
    assert model.base_pfn + zone.zone_end_pfn == frames.zone("DMA").end_pfn
    assert zone.compact_cached_migrate_pfn == [1, 1]


def test_file_round_trip(tmp_path, zram_run):
    frames = zram_run.before.frames
    path = tmp_path / "snap.json.gz"
    frames.write(path)
    back = S.PageFrames.read(path)
    assert back.kinds == frames.kinds and back.compound == frames.compound
    assert [z.as_dict() for z in back.zones] == [z.as_dict() for z in frames.zones]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "not a page-frame snapshot"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.update(kinds="3.2x"), "unknown page kind"),
    (lambda d: d.update(nr_pfns=7), "pfns decoded"),
    (lambda d: d["zones"][0].update(end_pfn=10 ** 9), "lies outside"),
    (lambda d: d.pop("zones"), "malformed snapshot"),
])
def test_bad_snapshot_files_are_one_line_errors(tmp_path, mutate, message):
    d = {"format": S.FORMAT, "version": S.VERSION, "page_size": 4096, "nr_pfns": 5,
         "kinds": "3.2l", "zones": [{"name": "Z", "start_pfn": 0, "end_pfn": 5}]}
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(S.SnapshotError, match=message):
        S.PageFrames.read(path)


def test_not_a_snapshot(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"not json"))
    with pytest.raises(S.SnapshotError, match="not a snapshot file"):
        S.PageFrames.read(path)
    with pytest.raises(S.SnapshotError, match="cannot read"):
        S.PageFrames.read(tmp_path / "missing")


def test_rle():
    assert S.rle("...ll.") == "3.2l1."
    assert S.unrle("3.2l1.") == "...ll."
    with pytest.raises(ValueError):
        S.unrle("3.x")


@pytest.fixture(scope="module")
def host():
    h = PluginHost()
    h.load_entry_points()
    return h


def test_model_zone_is_the_snapshot(zram_run, host):
    """Every frame holds the same kind of user; free pages merge into the same blocks."""
    frames = zram_run.before.frames
    zone = frames.zone("DMA32")
    model = S.build_zone(frames, "DMA32", host=host, driver="zsmalloc",
                         replay=S.fill_replay(len(frames.pfns_of("z", zone.start_pfn, zone.end_pfn))))
    assert model.vm.zone.buddyinfo() == frames.buddy_blocks(zone)
    assert model.driver_pfns() == set(frames.pfns_of("z", zone.start_pfn, zone.end_pfn))
    again = S.model_frames([model], frames)
    lo, hi = zone.start_pfn, zone.end_pfn
    for code in ".lsz":
        assert again.pfns_of(code, lo, hi) == frames.pfns_of(code, lo, hi), code
    # the probe's pageblock types are the model's
    for pfn, mt in zone.blocks.items():
        assert model.vm.zone.get_pageblock_migratetype(pfn - model.base_pfn) == mt
    model.vm.zone.check_free_lists()
    assert model.vm.unclaimed_pages(extra=[p for p, _ in model.held]) == []


def test_compare_snapshot_runs_every_driver(zram_run, host):
    result = S.compare_snapshot(zram_run.before.frames, host, ["zsmalloc", "balloon"],
                                "DMA32", seed=3)
    for name in ("zsmalloc", "balloon"):
        d = result["drivers"][name]
        # objects are stored until the driver holds at least the snapshot's driver pages
        assert d["driver_pages"] >= len(zram_run.before.frames.pfns_of("z"))
        assert d["placement"]["unfilled"] == 0
        assert d["pgmigrate_success"] >= d["driver_pages_migrated"] > 0
    text = S.snapshot_table(result)
    assert "zone DMA32, seed 3" in text and "driver_pages_migrated" in text
