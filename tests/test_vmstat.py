"""STA-1 counter names and STA-2 indices, computed by hand on small buddy states."""

from __future__ import annotations

from mmplug import VM
from mmplug.vmstat import (
    KERNEL_EVENTS,
    fill_contig_page_info,
    format_index,
    fragmentation_index,
    unusable_free_index,
    zone_indices,
)


def test_sta1_kernel_counter_names():
    """vmstat_text (mm/vmstat.c:1221-1233, 1268-1271), in the kernel's order."""
    assert KERNEL_EVENTS == (
        "pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned",
        "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
        "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
        "compact_daemon_free_scanned", "balloon_inflate", "balloon_deflate", "balloon_migrate")
    vm = VM(nr_pages=512, pageblock_order=6, max_order=8)
    vm.vmstat.count("pgmigrate_success", 3)
    assert "pgmigrate_success 3\n" in vm.vmstat.vmstat_lines()


def test_sta2_contig_info():
    # 4 order-0, 2 order-1, 1 order-3 blocks
    nr_free = [4, 2, 0, 1]
    info = fill_contig_page_info(nr_free, 1)
    assert info.free_pages == 4 + 4 + 8
    assert info.free_blocks_total == 7
    assert info.free_blocks_suitable == 2 + (1 << 2)


def test_sta2_unusable_index_by_hand():
    nr_free = [4, 2, 0, 1]            # 16 free pages
    assert unusable_free_index(nr_free, 0) == 0
    assert unusable_free_index(nr_free, 1) == (16 - 6 * 2) * 1000 // 16      # 250
    assert unusable_free_index(nr_free, 2) == (16 - 2 * 4) * 1000 // 16      # 500
    assert unusable_free_index(nr_free, 3) == (16 - 1 * 8) * 1000 // 16      # 500
    assert unusable_free_index([0, 0, 0], 1) == 1000


def test_sta2_fragmentation_index_by_hand():
    assert fragmentation_index([0, 0, 0, 0], 2) == 0            # no free blocks at all
    assert fragmentation_index([4, 2, 0, 1], 3) == -1000        # a suitable block exists
    # 10 order-0 blocks, want order 2: 1000 - (1000 + 10*1000/4) / 10 = 1000 - 350 = 650
    assert fragmentation_index([10, 0, 0], 2) == 650
    # 2 order-1 blocks, want order 3: 1000 - (1000 + 4000/8) / 2 = 1000 - 750 = 250
    assert fragmentation_index([0, 2, 0, 0], 3) == 250


def test_sta2_printed_like_the_kernel():
    assert format_index(-1000) == "-1.000"
    assert format_index(650) == "0.650"
    assert format_index(1000) == "1.000"
    assert format_index(0) == "0.000"


def test_indices_of_a_zone():
    vm = VM(nr_pages=1024, pageblock_order=6, max_order=8, min_free_pages=0)
    unusable, extfrag = zone_indices(vm.zone)
    assert unusable == [0] * 8 and extfrag == [-1000] * 8
