"""Parsers, on the files a real 6.1 guest printed (tests/realkernel/fixtures/zram-6.1)."""

import gzip

import pytest

from mmplug.realkernel import procfs

from kernelhelp import ZRAM_RUN


def text(name: str) -> str:
    p = ZRAM_RUN / name
    if not p.exists():
        return gzip.decompress((ZRAM_RUN / (name + ".gz")).read_bytes()).rstrip(b"\0").decode()
    return p.read_text()


def test_vmstat_has_the_compaction_counters():
    before = procfs.vmstat(text("before/vmstat"))
    after = procfs.vmstat(text("after/vmstat"))
    for name in procfs.COUNTERS:
        assert name in before and name in after
    assert before["compact_migrate_scanned"] == 0
    assert after["pgmigrate_success"] > 0


def test_buddyinfo_zones_and_orders():
    info = procfs.buddyinfo(text("before/buddyinfo"))
    assert list(info) == ["DMA", "DMA32"]
    assert all(len(v) == 11 for v in info.values())


def test_pagetypeinfo_free_lists_and_block_counts():
    info = procfs.pagetypeinfo(text("before/pagetypeinfo"))
    dma32 = info["DMA32"]
    assert set(dma32["free"]) >= {"Unmovable", "Movable", "Reclaimable"}
    assert sum(dma32["blocks"].values()) >= 247   # 126,938 pfns: 248 pageblocks, one partial
    # the free lists by type add up to /proc/buddyinfo of a moment before (the shell
    # read that right after the drain; the cat that read pagetypeinfo started after it
    # and took its own pages, from the smaller blocks)
    buddy = procfs.buddyinfo(text("before/buddyinfo"))["DMA32"]
    by_order = [sum(v[o] for v in dma32["free"].values()) for o in range(11)]
    assert by_order[6:] == buddy[6:]
    assert 0 <= sum(n << o for o, n in enumerate(buddy)) - \
        sum(n << o for o, n in enumerate(by_order)) < 128


def test_probe_records_of_free_pfns():
    """mmplug_pfn/freeN: the pfns free the moment compaction began, as [first, end)
    ranges; they merge into the buddy blocks /proc/buddyinfo showed then."""
    text_free = text("before/free.start")
    assert text_free.startswith("# record 1, drain ")
    ranges = procfs.probe_free(text_free)
    assert ranges == sorted(ranges) and all(lo < hi for lo, hi in ranges)
    free = sum(hi - lo for lo, hi in ranges)
    start = procfs.buddyinfo(text("before/buddyinfo.start"))
    assert free == sum(n << o for v in start.values() for o, n in enumerate(v))
    assert procfs.probe_blocks(text("before/blocks.start")).keys() == {"DMA", "DMA32"}
    with pytest.raises(procfs.ParseError, match="free line 2"):
        procfs.probe_free("# record 0, drain 1\n12 x\n")


def test_zoneinfo_watermarks_and_spans():
    zones = procfs.zoneinfo(text("before/zoneinfo"))
    assert [z.name for z in zones] == ["DMA", "DMA32"]
    dma, dma32 = zones
    assert (dma.start_pfn, dma32.start_pfn) == (1, 4096)
    assert dma32.end_pfn == 4096 + dma32.spanned
    assert 0 < dma32.min < dma32.low < dma32.high
    assert dma32.pcp_count >= 0


def test_mm_stat_fields():
    st = procfs.mm_stat(text("before/mm_stat"))
    assert st["mem_used_total"] % 4096 == 0
    assert st["orig_data_size"] > st["compr_data_size"] > 0
    assert "huge_pages_since" in st          # 6.1 prints nine fields
    with pytest.raises(procfs.ParseError):
        procfs.mm_stat("1 2 3")


def test_probe_movable_names_the_owner():
    pages = procfs.probe_movable(text("before/movable"))
    assert pages and {p.owner for p in pages} == {"zsmalloc_mops"}
    assert all(p.refcount >= 1 for p in pages)
    with pytest.raises(procfs.ParseError):
        procfs.probe_movable("123 ffff")


def test_probe_blocks_give_every_pageblock_a_type():
    blocks = procfs.probe_blocks(text("before/blocks"))
    assert len(blocks["DMA32"]) == 248
    assert set(blocks["DMA32"].values()) <= set(range(6))


def test_kpageflags_is_one_u64_per_pfn():
    flags = procfs.u64_array(gzip.decompress((ZRAM_RUN / "before/kpageflags.gz").read_bytes()))
    assert len(flags) == 131072      # max_pfn rounded up to a memory section
    with pytest.raises(procfs.ParseError):
        procfs.u64_array(b"1234567")


def test_compaction_trace_finds_both_zones():
    runs = procfs.compaction_trace(text("trace"))
    assert [hex(r.zone_start) for r in runs] == ["0x1", "0x1000"]
    dma32 = runs[1]
    assert dma32.status == "complete"
    assert dma32.migrate_end and dma32.free_end
    after = procfs.vmstat(text("after/vmstat"))
    assert sum(s for s, _ in dma32.migrate_batches) + sum(
        s for s, _ in runs[0].migrate_batches) == after["pgmigrate_success"]


def test_zswap_debugfs_lines():
    got = procfs.zswap("/sys/kernel/debug/zswap/stored_pages:41816\n"
                       "/sys/kernel/debug/zswap/pool_total_size:86306816\n")
    assert got == {"stored_pages": 41816, "pool_total_size": 86306816}
