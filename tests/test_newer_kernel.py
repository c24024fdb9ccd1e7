"""The newer-kernel options of VMConfig that a Debian 6.1 guest runs with (mmplug kernel run).

Each test builds a zone pfn by pfn (corehelp.Layout) and checks the outcome
worked out by hand from Linux 6.1.192's mm/compaction.c (Debian's
linux-source-6.1); the v4.19 outcome of the same zone, the default, is
checked beside it.  Line numbers are those of that file.
"""

from __future__ import annotations

import pytest

from corehelp import Layout
import mmplug.compaction as compaction
from mmplug.compaction import (
    CompactControl, compact_memory, compact_zone, isolate_freepages, isolate_freepages_block,
    reset_cached_positions,
)
from mmplug.constants import GFP_KERNEL, MigrateMode
from mmplug.errors import UsageError
from mmplug.vm import VMConfig, kernel_options, kernel_settings

NEWER_61 = ("free_scan_stride", "rescan_block", "scan_counts_isolated", "zone_scan_counts")


def whole_zone_cc(vm, **kw) -> CompactControl:
    """compact_node()'s compact_control (6.1 :2674-2681): order -1, SYNC, skip bits ignored."""
    return CompactControl(zone=vm.zone, order=-1, mode=MigrateMode.SYNC, ignore_skip_hint=True,
                          whole_zone=True, gfp_mask=GFP_KERNEL, **kw)


# --- the release presets ------------------------------------------------------------------

def test_a_release_turns_on_the_options_of_that_release_and_earlier():
    on = {name for name, value in kernel_settings("6.1.0-57-amd64").items() if value}
    assert on == set(NEWER_61)                       # slab_fix is v6.2's
    assert {n for n, v in kernel_settings("v5.4").items() if v} == {
        "free_scan_stride", "rescan_block", "zone_scan_counts"}
    assert not any(kernel_settings("4.19").values())
    config = VMConfig.for_kernel("6.1", nr_pages=1024)
    assert config.nr_pages == 1024 and all(getattr(config, n) for n in NEWER_61)
    assert not config.slab_fix and VMConfig().free_scan_stride is False
    with pytest.raises(UsageError, match="MAJOR.MINOR"):
        kernel_settings("bookworm")


def test_every_option_names_release_and_commit():
    for opt in kernel_options():
        assert opt["kernel"].startswith("v") and len(opt["commit"]) == 12, opt
        int(opt["commit"], 16)


# --- free_scan_stride (4fca9730c51d) ------------------------------------------------------

# Four pageblocks of 64 pages: one movable page at pfn 0; the only free pages at
# 64 (block 1) and 129 (block 2, an odd pfn); blocks 0 and 3 otherwise in use.
STRIDE_ZONE = ("D" + "U" * 63) + ("." + "U" * 63) + ("U" + "." + "U" * 62) + "U" * 64


def stride_run(**config):
    lay = Layout(STRIDE_ZONE, pageblock_order=6, max_order=8, **config)
    result = compact_memory(lay.vm)
    return lay, result


def test_free_scan_stride_v419_takes_the_odd_free_page():
    """v4.19 isolate_freepages_block() looks at every pfn: block 3 (64 scanned), then
    128 and 129, which it isolates; the page moves to 129 and the scanners meet."""
    lay, _ = stride_run()
    vm = lay.vm
    assert lay.pfn_of(0) == 129 and lay.intact()
    assert vm.vmstat["pgmigrate_success"] == 1 and vm.vmstat["pgmigrate_fail"] == 0
    assert vm.vmstat["compact_free_scanned"] == 64 + 2


def test_free_scan_stride_61_passes_the_odd_free_page_by():
    """6.1 isolate_freepages() (:1591) starts SYNC at stride 1: block 3 is 64 pfns, none
    free, so the stride doubles (:1656); block 2 is scanned at stride 2 (:562, the loop's
    `blockpfn += stride`), 32 even pfns, and 129 is never looked at; stride 4.  Block 1 is
    below pageblock_end_pfn(migrate_pfn 64) = 128 (:1590), so the search ends with no
    target: compaction_alloc() returns NULL, migrate_pages() fails with -ENOMEM (one
    page counted failed, migrate_pages_batch() in mm/migrate.c), the page is put back
    and, the scanners having met, compaction completes."""
    lay, _ = stride_run(free_scan_stride=True)
    vm = lay.vm
    assert lay.pfn_of(0) == 0 and lay.intact()
    assert vm.vmstat["pgmigrate_success"] == 0 and vm.vmstat["pgmigrate_fail"] == 1
    assert vm.vmstat["compact_free_scanned"] == 64 + 32
    assert vm.vmstat["compact_isolated"] == 1
    assert vm.zone.pages[129].flags & 0x400 or vm.zone.pages[129]._refcount == 0


def test_free_scan_stride_resets_after_a_block_that_gave_pages():
    """:1652-1656: a block that isolated something sets the stride back to 1, so the
    next block is scanned whole; ASYNC starts at COMPACT_CLUSTER_MAX (:1591)."""
    # (block 0's free pages, below the free scanner's reach, keep the zone above its
    # watermark for __isolate_free_page())
    zone = ("." * 8 + "U" * 56) + ("U" + "." + "U" * 62) + ("U" * 62 + ".U") + ("U" * 64)
    lay = Layout(zone, pageblock_order=6, max_order=8, free_scan_stride=True)
    vm = lay.vm
    cc = whole_zone_cc(vm, migrate_pfn=0, free_pfn=192, nr_migratepages=3)
    isolate_freepages(vm, cc)
    # block 3: 64 pfns at stride 1, nothing; block 2 at stride 2: 128..190, 190 is free;
    # block 1 at stride 1 again: 64..127, 65 is free
    assert cc.total_free_scanned == 64 + 32 + 64
    assert sorted(p.pfn for p in cc.freepages) == [65, 190]
    async_lay = Layout(zone, pageblock_order=6, max_order=8, free_scan_stride=True)
    async_cc = CompactControl(zone=async_lay.vm.zone, order=-1, mode=MigrateMode.ASYNC,
                              ignore_skip_hint=True, migrate_pfn=0, free_pfn=192,
                              nr_migratepages=3)
    isolate_freepages(async_lay.vm, async_cc)
    # stride 32 from the start: 2 pfns a block (192, 224; 128, 160; 64, 96), nothing found
    assert async_cc.total_free_scanned == 2 + 2 + 2 and not async_cc.freepages


# --- rescan_block (804d3121ba5f) -----------------------------------------------------------

# Four pageblocks of 128 pages: a movable page at 0; 80 movable pages at 128..207;
# block 2 in use; block 3 with 40 free pages at 472..511 (an order-3 and an order-5 block).
RESCAN_ZONE = ("D" + "U" * 127) + ("D" * 80 + "U" * 48) + "U" * 128 + ("U" * 88 + "." * 40)


def rescan_run(monkeypatch, **config):
    batches = []
    real = compaction.migrate_pages

    def counting(vm, pagelist, *args, **kw):
        batches.append(len(pagelist))
        return real(vm, pagelist, *args, **kw)

    monkeypatch.setattr(compaction, "migrate_pages", counting)
    lay = Layout(RESCAN_ZONE, pageblock_order=7, max_order=9, **config)
    compact_memory(lay.vm)
    assert lay.intact()
    return lay.vm, batches


def test_rescan_v419_isolates_32_pages_a_round(monkeypatch):
    """v4.19: 1 page in block 0, then 32 and 32 from block 1; 40 targets in all, so the
    third batch migrates 7 (left from the free scanner's order-5 block), gets -ENOMEM and
    puts 25 back."""
    vm, batches = rescan_run(monkeypatch)
    assert batches == [1, 32, 32]
    assert vm.vmstat["pgmigrate_success"] == 40 and vm.vmstat["pgmigrate_fail"] == 1
    assert vm.vmstat["putback_movable"] == 25
    assert vm.vmstat["compact_isolated"] == (1 + 32 + 32) + 40


def test_rescan_61_takes_the_rest_of_a_block_it_comes_back_to(monkeypatch):
    """6.1 compact_zone() (:2384-2389): round 1 starts at the zone's first pfn 0 and
    last_migrated_pfn is 0: same pageblock, a rescan (it takes block 0's one page
    anyway); round 2 starts at 128, block 1, last round began in block 0: no rescan, 32
    pages (:1109-1112); round 3 starts at 160 in block 1, where round 2 began: cc->rescan,
    and isolate_migratepages_block() takes all 48 left.  7 targets are left, so 7 move,
    -ENOMEM, and 41 go back."""
    vm, batches = rescan_run(monkeypatch, rescan_block=True)
    assert batches == [1, 32, 48]
    assert vm.vmstat["pgmigrate_success"] == 40 and vm.vmstat["pgmigrate_fail"] == 1
    assert vm.vmstat["putback_movable"] == 41
    assert vm.vmstat["compact_isolated"] == (1 + 32 + 48) + 40


def test_rescan_of_a_zone_that_starts_in_a_pageblock_of_its_own(monkeypatch):
    """With the zone starting at 128 (zone_start_pfn), round 1 starts in block 1 while
    last_migrated_pfn 0 lies in block 0: 32 pages, then the rescan takes the other 48."""
    batches = []
    real = compaction.migrate_pages
    monkeypatch.setattr(compaction, "migrate_pages",
                        lambda vm, lst, *a, **k: batches.append(len(lst)) or real(vm, lst, *a, **k))
    lay = Layout(RESCAN_ZONE, pageblock_order=7, max_order=9, rescan_block=True)
    lay.vm.zone.zone_start_pfn = 128
    reset_cached_positions(lay.vm.zone)
    compact_memory(lay.vm)
    assert batches == [32, 48]
    assert lay.pfn_of(0) == 0            # outside the zone: never scanned


# --- scan_counts_isolated (b717d6b93b54) ----------------------------------------------------

def test_scan_counts_isolated_counts_each_page_of_a_free_block():
    """6.1 isolate_freepages_block() (:614-618): nr_scanned += isolated - 1, so a free
    order-2 block counts 4 scanned pages; v4.19 counts the pfn it looked at, 1.  (The
    second pageblock, free, keeps the zone above __isolate_free_page()'s watermark.)"""
    zone = "UUUU....UUUUUUUU" + "." * 16
    for counts, expected in ((False, 4 + 1 + 8), (True, 4 + 4 + 8)):
        lay = Layout(zone, pageblock_order=4, max_order=6, scan_counts_isolated=counts)
        vm = lay.vm
        cc = whole_zone_cc(vm, nr_migratepages=10)
        found = []
        assert isolate_freepages_block(vm, cc, 0, 16, found) == 16
        assert [(p.pfn, order) for p, order in found] == [(4, 2)]
        assert cc.total_free_scanned == expected


# --- zone_scan_counts (a94b525241c0) --------------------------------------------------------

def test_zone_scan_counts_are_each_zones_own():
    """v4.19 compact_node() reuses one compact_control for every zone, and compact_zone()
    counts cc->total_*_scanned at its end without zeroing them first: a zone compacted
    after another counts that zone's scans again.  6.1 compact_zone() (:2304-2305) zeroes
    them."""
    zone = ("D" + "U" * 63) + ("." * 8 + "U" * 56) + ("U" * 63 + ".")
    for zeroes in (False, True):
        lay = Layout(zone, pageblock_order=6, max_order=8, zone_scan_counts=zeroes)
        vm = lay.vm
        cc = whole_zone_cc(vm, total_migrate_scanned=1000, total_free_scanned=500)
        compact_zone(vm, cc)
        own_migrate, own_free = (64, 64) if zeroes else (1064, 564)
        assert (cc.total_migrate_scanned, cc.total_free_scanned) == (own_migrate, own_free)
        assert vm.vmstat["compact_migrate_scanned"] == own_migrate
        assert vm.vmstat["compact_free_scanned"] == own_free
        assert lay.pfn_of(0) == 191


# --- the zone's span (both versions) --------------------------------------------------------

def test_compaction_scans_the_zone_span_not_the_whole_memmap():
    """zone_start_pfn and zone_end_pfn() bound both scanners (compact_zone(),
    isolate_freepages(): min(block_start + pageblock_nr_pages, zone_end_pfn(zone))): a
    free page past the zone's end is never a target, though its pageblock is scanned."""
    zone = ("D" + "U" * 63) + ("." * 8 + "U" * 56) + ("U" * 60 + "....")
    lay = Layout(zone, pageblock_order=6, max_order=8)
    vm = lay.vm
    vm.zone.zone_end_pfn = 188               # 188..191 lie past the zone's end
    reset_cached_positions(vm.zone)
    cc = whole_zone_cc(vm)
    compact_zone(vm, cc)
    assert lay.pfn_of(0) == 0                # no target inside the zone
    assert cc.total_free_scanned == 60       # 128..187
    assert vm.vmstat["pgmigrate_fail"] == 1
    vm.zone.zone_end_pfn = 192               # the whole memmap: the order-2 block at 188
    reset_cached_positions(vm.zone)
    compact_zone(vm, whole_zone_cc(vm))
    assert lay.pfn_of(0) == 191              # split_map_pages(): its last page is the head
