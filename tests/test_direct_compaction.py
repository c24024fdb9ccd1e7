"""Direct compaction from the allocator's slow path (mm/page_alloc.c:4006-4826, v4.19):
compact_priority ASYNC -> SYNC_LIGHT -> SYNC_FULL, should_compact_retry, __GFP_IO."""

from __future__ import annotations

import pytest

from corehelp import Layout
from mmplug import hookimpl
from mmplug.compaction import (
    alloc_pages_compact,
    compaction_zonelist_suitable,
    reset_cached_positions,
    should_compact_retry,
    try_to_compact_pages,
)
from mmplug.constants import (
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_MOVABLE,
    GFP_NOIO,
    GFP_NORETRY,
    CompactPriority,
    CompactResult,
    MigrateMode,
    MigrateType,
)

FULL, LIGHT, ASYNC = CompactPriority.SYNC_FULL, CompactPriority.SYNC_LIGHT, CompactPriority.ASYNC
R = CompactResult

#: Pageblocks of 8 pages.  Block 0: a driver page at 0, a free page at 1, the rest in use.
#: Blocks 1 and 2: in use.  Block 3, UNMOVABLE: free pages 25, 27, 29, 31.  So 5 free pages,
#: no free block of order 1 anywhere, and the only targets lie in an UNMOVABLE block.
TARGETS_IN_UNMOVABLE_BLOCK = "D.UUUUUU" "UUUUUUUU" "UUUUUUUU" "U.U.U.U."


class CompactionRuns:
    """A listener: every compact_zone() run's result and mode."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def mmplug_after_compact_zone(self, zone, order, mode, result):
        self.seen.append((result, mode))


def _runs(vm):
    listener = CompactionRuns()
    vm.plugins.register(listener)      # after the VM was made: it still hears the events
    return listener.seen


def layout(**config):
    """The zone above, compacted before: its cached scanner positions are
    reset_cached_positions()'s, not a fresh zone's zeroes."""
    lay = Layout(TARGETS_IN_UNMOVABLE_BLOCK, types={3: MigrateType.UNMOVABLE}, **config)
    reset_cached_positions(lay.vm.zone)
    assert lay.vm.zone.nr_free_pages == 5 and sum(lay.vm.zone.buddyinfo()[1:]) == 0
    return lay


def test_priorities_are_the_kernels():
    """enum compact_priority (include/linux/compaction.h:9-17): lower is harder."""
    from mmplug import constants as c
    assert (FULL, LIGHT, ASYNC) == (0, 1, 2)
    assert c.MIN_COMPACT_PRIORITY == FULL and c.MIN_COMPACT_COSTLY_PRIORITY == LIGHT
    assert c.DEF_COMPACT_PRIORITY == LIGHT and c.INIT_COMPACT_PRIORITY == ASYNC


def test_compact_result_numbering_is_the_kernels():
    """enum compact_result (include/linux/compaction.h:21-58): COMPACT_INACTIVE is
    COMPACT_DEFERRED, so SUCCESS is 8, not 9."""
    assert R.INACTIVE is R.DEFERRED
    assert [int(r) for r in (R.NOT_SUITABLE_ZONE, R.SKIPPED, R.DEFERRED, R.NO_SUITABLE_PAGE,
                             R.CONTINUE, R.COMPLETE, R.PARTIAL_SKIPPED, R.CONTENDED,
                             R.SUCCESS)] == list(range(9))


def test_gfp_bits_are_the_kernels():
    """include/linux/gfp.h:19-41, 291-302 (v4.19)."""
    from mmplug import constants as c
    assert c.GFP_KERNEL == 0x200000 | 0x400000 | 0x40 | 0x80
    assert c.GFP_NOIO == 0x600000 and c.GFP_NOFS == 0x600040
    assert c.GFP_HIGHUSER_MOVABLE == c.GFP_KERNEL | 0x20000 | 0x02 | 0x08
    assert (c.GFP_RETRY_MAYFAIL, c.GFP_NOFAIL, c.GFP_NORETRY, c.GFP_COMP) == (
        0x400, 0x800, 0x1000, 0x4000)


@pytest.mark.parametrize("order, result, prio, retries, expected", [
    # compaction_failed: straight to check_priority (4078-4079, 4111-4119)
    (3, R.COMPLETE, LIGHT, 5, (True, FULL, 0)),
    (3, R.COMPLETE, FULL, 0, (False, FULL, 0)),
    (9, R.COMPLETE, LIGHT, 0, (False, LIGHT, 0)),          # costly: stops at SYNC_LIGHT
    (9, R.COMPLETE, ASYNC, 0, (True, LIGHT, 0)),
    # progress counts a retry; up to 16, a quarter of that for costly orders (4100-4105)
    (3, R.SUCCESS, LIGHT, 3, (True, LIGHT, 4)),
    (3, R.SUCCESS, LIGHT, 16, (True, FULL, 0)),            # 17 > 16: raise the priority
    (9, R.SUCCESS, LIGHT, 4, (False, LIGHT, 5)),           # 5 > 4, already at the costly min
    (0, R.COMPLETE, LIGHT, 0, (False, LIGHT, 0)),          # order 0 never (4067)
])
def test_should_compact_retry(order, result, prio, retries, expected):
    lay = Layout("U" * 16, max_order=4)
    assert should_compact_retry(lay.vm.zone, order, result, prio, retries) == expected


def test_should_compact_retry_after_withdrawal_asks_compaction_zonelist_suitable():
    """compaction_withdrawn -> compaction_zonelist_suitable (4087-4090, 1514-1544): retry only
    if __compaction_suitable would not skip.  With 5 free pages, order 1 needs > 4: retry;
    order 2 needs > 8: no (the model has nothing reclaimable to add)."""
    zone = layout().vm.zone
    assert compaction_zonelist_suitable(zone, 1) and not compaction_zonelist_suitable(zone, 2)
    for result in (R.SKIPPED, R.DEFERRED, R.CONTENDED, R.PARTIAL_SKIPPED):
        assert should_compact_retry(zone, 1, result, LIGHT, 0) == (True, LIGHT, 0)
        assert should_compact_retry(zone, 2, result, LIGHT, 0) == (False, LIGHT, 0)


def test_movable_order_1_escalates_to_sync_full_which_takes_targets_from_any_block():
    """__alloc_pages_slowpath for a movable order-1 request (4632-4750).

    Not costly and movable: no ASYNC attempt first (4632-4635).  Round 1, SYNC_LIGHT
    (DEF_COMPACT_PRIORITY): the migrate scanner isolates pfn 0; the free scanner skips the
    UNMOVABLE block 3 (suitable_migration_target), finds nothing in block 2 and meets the
    migrate scanner: -ENOMEM with the scanners met, then COMPLETE (whole zone, cached
    positions at the start).  Deferred (1832-1839).  should_compact_retry: failed ->
    SYNC_LIGHT > MIN_COMPACT_PRIORITY -> SYNC_FULL.  Round 2: compact_zone_order at
    MIN_COMPACT_PRIORITY migrates SYNC_LIGHT (1745), ignores deferral (1808), skip bits
    and block suitability (1750-1752): the free scanner takes 25 in block 3, page 0 moves
    there, 0 and 1 merge into an order-1 block: SUCCESS, allocated at 0.
    """
    lay = layout()
    vm = lay.vm
    seen = _runs(vm)
    page = alloc_pages_compact(vm, 1, GFP_HIGHUSER_MOVABLE)
    assert page is not None and page.pfn == 0
    assert seen == [(R.COMPLETE, MigrateMode.SYNC_LIGHT), (R.SUCCESS, MigrateMode.SYNC_LIGHT)]
    assert lay.pfn_of(0) == 25 and lay.intact()
    assert (vm.vmstat["compact_stall"], vm.vmstat["compact_fail"],
            vm.vmstat["compact_success"]) == (2, 1, 1)
    assert vm.zone.compact_defer_shift == 0 and vm.zone.compact_order_failed == 2


def test_without_reclaim_progress_the_slow_path_stops_after_sync_light():
    """should_compact_retry only runs after direct reclaim made progress (4746-4750); on a
    machine with nothing to reclaim the request fails after the SYNC_LIGHT round."""
    lay = layout(reclaim_progress=False)
    zone = lay.vm.zone
    seen = _runs(lay.vm)
    assert alloc_pages_compact(lay.vm, 1, GFP_HIGHUSER_MOVABLE) is None
    assert seen == [(R.COMPLETE, MigrateMode.SYNC_LIGHT)]
    assert lay.pfn_of(0) == 0
    # The direct compaction met the scanners: compact_blockskip_flush (1342-1343); block 2
    # was scanned in vain by the free scanner.  kswapd, woken by the next request, clears
    # the skip bits (vmscan.c:4006); that request is deferred (considered 1 < 2).
    assert zone.compact_blockskip_flush and list(zone.pageblock_skip) == [0, 0, 1, 0]
    assert alloc_pages_compact(lay.vm, 1, GFP_HIGHUSER_MOVABLE) is None
    assert seen == [(R.COMPLETE, MigrateMode.SYNC_LIGHT)]
    assert not zone.compact_blockskip_flush and not any(zone.pageblock_skip)


def test_noretry_stops_after_one_round():
    """__GFP_NORETRY: no retry after the first reclaim/compaction round (4722-4724)."""
    lay = layout()
    seen = _runs(lay.vm)
    assert alloc_pages_compact(lay.vm, 1, GFP_HIGHUSER_MOVABLE | GFP_NORETRY) is None
    assert seen == [(R.COMPLETE, MigrateMode.SYNC_LIGHT)]


def test_unmovable_order_1_starts_async_then_escalates():
    """A non-movable order > 0 request tries ASYNC first (4632-4640).

    Round 0, ASYNC: suitable_migration_source (1013-1027) only takes UNMOVABLE blocks,
    there is none below the free scanner: COMPLETE, not deferred (ASYNC).  Round 1,
    SYNC_LIGHT: as for a movable request, COMPLETE.  Round 2, SYNC_FULL: page 0 moves to
    25; compact_finished finds the order-1 block 0-1 on the MOVABLE list stealable
    (find_suitable_fallback, only_stealable) with migrate_pfn at a pageblock boundary:
    SUCCESS.  The allocation steals it: steal_suitable_fallback claims block 0 (2 free +
    6 alike of 8).
    """
    lay = layout()
    vm = lay.vm
    seen = _runs(vm)
    page = alloc_pages_compact(vm, 1, GFP_KERNEL)
    assert page is not None and page.pfn == 0
    assert seen == [(R.COMPLETE, MigrateMode.ASYNC), (R.COMPLETE, MigrateMode.SYNC_LIGHT),
                    (R.SUCCESS, MigrateMode.SYNC_LIGHT)]
    assert vm.zone.get_pageblock_migratetype(0) == MigrateType.UNMOVABLE
    assert lay.pfn_of(0) == 25 and lay.intact()


def test_no_compaction_without_gfp_io():
    """try_to_compact_pages (1786-1796): GFP_NOIO is skipped before anything else."""
    lay = layout()
    vm = lay.vm
    seen = _runs(vm)
    assert try_to_compact_pages(vm, 1, GFP_NOIO | GFP_MOVABLE, LIGHT) == R.SKIPPED
    assert alloc_pages_compact(vm, 1, GFP_NOIO | GFP_MOVABLE) is None
    assert seen == [] and vm.vmstat["compact_stall"] == 0
    assert try_to_compact_pages(vm, 1, GFP_HIGHUSER_MOVABLE, FULL) == R.SUCCESS


def test_deferral_is_ignored_at_full_priority_only():
    """try_to_compact_pages (1808-1812): every priority above MIN_COMPACT_PRIORITY
    respects compaction_deferred()."""
    lay = layout()
    zone = lay.vm.zone
    for _ in range(3):
        from mmplug.compaction import defer_compaction
        defer_compaction(zone, 1)
    assert try_to_compact_pages(lay.vm, 1, GFP_HIGHUSER_MOVABLE, LIGHT) == R.DEFERRED
    assert try_to_compact_pages(lay.vm, 1, GFP_HIGHUSER_MOVABLE, FULL) == R.SUCCESS


def test_a_task_with_a_fatal_signal_gets_no_page():
    """The dying task's request fails instead of looping on COMPACT_CONTENDED (the OOM
    victim's exit, 4763-4767; the OOM killer itself is not modelled)."""
    lay = layout()
    lay.vm.cpus.current().sigkill_pending = True
    seen = _runs(lay.vm)
    assert alloc_pages_compact(lay.vm, 1, GFP_HIGHUSER_MOVABLE) is None
    assert seen == [(R.CONTENDED, MigrateMode.SYNC_LIGHT)]
