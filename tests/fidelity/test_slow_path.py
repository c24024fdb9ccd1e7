"""The allocator's slow path around direct compaction, worked out by hand from v4.19's
mm/page_alloc.c and include/linux/gfp.h (the 0x88888888/Linux-4.19 mirror; line
numbers are that tree's, as in docs/fidelity.md).

Schedule points are what another CPU would run at.  The tests record them on a
one-CPU scheduler whose `point` they replace; where a test frees a page at a point,
that stands for the other CPU's work, done in the kernel's window.
"""

from __future__ import annotations

from corehelp import Layout
from mmplug import hookimpl
from mmplug.compaction import alloc_pages_compact, reset_cached_positions, should_reclaim_retry
from mmplug.constants import (
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_MEMALLOC,
    GFP_MOVABLE,
    GFP_NOMEMALLOC,
    GFP_RECLAIMABLE,
    MAX_RECLAIM_RETRIES,
    CompactResult,
    MigrateMode,
    MigrateType,
    gfp_migratetype,
)
from mmplug.cpus.backend import PF_MEMALLOC
from mmplug.cpus.scheduler import Scheduler
from mmplug.page import WRITEBACK


def _recorded(layout: str, **config):
    """A Layout on one scheduled CPU whose schedule points are listed as they pass."""
    lay = Layout(layout, cpus=Scheduler(1), **config)
    points: list[str] = []
    lay.vm.cpus.point = lambda what, obj=None: points.append(what)
    return lay, points


def _free_at_point(lay, points: list[str], n: int, page) -> None:
    """Another CPU puts `page` at the `n`th schedule point (counting those already listed)."""
    def other_cpu(what, obj=None):
        points.append(what)
        if len(points) == n:
            lay.vm.cpus.put_page(page)

    lay.vm.cpus.point = other_cpu


def test_should_reclaim_retry_gives_up_after_sixteen_rounds_without_progress():
    """should_reclaim_retry() (page_alloc.c:4412-4504) counts a round without progress, and
    every round of a costly order (4425-4428); past MAX_RECLAIM_RETRIES in a row it says
    no (4434-4437: unreserve_highatomic_pageblock() finds no reserve to give back).

    Two pageblocks of 8: block 0 = U U . . U U U U, block 1 in use.  The free order-1
    block at 2 passes the min watermark (0) for order 1 (4461-4462), so each counted
    round up to the sixteenth is a retry, after a cond_resched() (4494-4497).  A round
    with progress for order 1 starts the count again; for order 4 (costly) it counts.
    """
    lay, points = _recorded("UU..UUUU" "UUUUUUUU")
    vm = lay.vm
    loops, answers = 0, []
    for _ in range(MAX_RECLAIM_RETRIES + 1):
        retry, loops = should_reclaim_retry(vm, 1, False, loops)
        answers.append(retry)
    assert answers == [True] * 16 + [False] and loops == 17
    assert points == ["cond_resched"] * 16
    assert should_reclaim_retry(vm, 1, True, loops) == (True, 0)
    assert should_reclaim_retry(vm, 4, True, 16) == (False, 17)


def test_should_reclaim_retry_waits_for_writeback_when_nothing_was_reclaimed():
    """should_reclaim_retry() (page_alloc.c:4469-4482): no progress and write-pending pages
    more than half of the reclaimable ones (none in the model) mean congestion_wait()
    instead of cond_resched(); its sleep answers need_resched() too.

    The zone above, with pfn 0 under writeback.
    """
    lay, points = _recorded("UU..UUUU" "UUUUUUUU")
    vm = lay.vm
    lay.unmovable[0].flags |= WRITEBACK
    task = vm.cpus.current()
    task.need_resched = True
    assert should_reclaim_retry(vm, 1, False, 0) == (True, 1)
    assert points == ["congestion_wait"] and not task.need_resched
    assert should_reclaim_retry(vm, 1, True, 0) == (True, 0)
    assert points == ["congestion_wait", "cond_resched"]


def test_direct_reclaim_reschedules_and_then_takes_what_was_freed_meanwhile():
    """__perform_reclaim() (page_alloc.c:4224-4251) passes a cond_resched() before and after
    try_to_free_pages(); after progress __alloc_pages_direct_reclaim() (4262-4293) tries
    the free lists before any compaction.

    Block 0 = U . U . U . U ., block 1 in use: no free order-1 block.  A movable order-1
    request is not costly: no ASYNC compaction first (4632-4640).  The first attempt
    fails (4696); direct reclaim yields at its first cond_resched(), where another CPU
    frees pfn 0, which merges with 1.  Reclaim reports progress, and the order-1 block
    at 0 is taken at once: no compaction stall.
    """
    lay, points = _recorded("U.U.U.U." "UUUUUUUU")
    vm, zone = lay.vm, lay.vm.zone
    _free_at_point(lay, points, 1, lay.unmovable[0])
    page = alloc_pages_compact(vm, 1, GFP_HIGHUSER_MOVABLE)
    assert page is not None and page.pfn == 0
    assert points == ["cond_resched", "cond_resched"]
    assert vm.vmstat["compact_stall"] == 0
    zone.check_free_lists()


def test_a_gfp_with_both_mobility_bits_is_highatomic_and_falls_back_to_unmovable():
    """gfpflags_to_migratetype() (include/linux/gfp.h:311-322) shifts the two mobility bits
    down: both set is 3, MIGRATE_HIGHATOMIC, after a VM_WARN_ON (313).

    Block 0 (MOVABLE) = U U U U . . U U, block 1 (UNMOVABLE) = U U U U . . . .  An
    order-1 request with both bits finds nothing on the HIGHATOMIC lists
    (__rmqueue_smallest) and falls back (__rmqueue_fallback, 2673-2748) through
    fallbacks[MIGRATE_HIGHATOMIC], a row of zeroes: MIGRATE_UNMOVABLE only (2213-2223,
    2514-2517), so the MOVABLE block's free pair is never looked at.  The order-2 block
    at 12 may be stolen whole (can_steal_fallback: 2 >= pageblock_order / 2); its 4
    free pages are half the block, so block 1 becomes HIGHATOMIC (2486-2489); the split
    hands out 12 and leaves 14-15 on the HIGHATOMIC order-1 list.  A movable request
    would have taken 4.
    """
    both = GFP_KERNEL | GFP_MOVABLE | GFP_RECLAIMABLE
    assert gfp_migratetype(both) == MigrateType.HIGHATOMIC == 3
    lay = Layout("UUUU..UU" "UUUU....", types={1: MigrateType.UNMOVABLE})
    vm, zone = lay.vm, lay.vm.zone
    page = zone.alloc_pages(1, both)
    assert page is not None and page.pfn == 12
    assert zone.get_pageblock_migratetype(12) == MigrateType.HIGHATOMIC
    assert list(zone.free_area[1][MigrateType.HIGHATOMIC]) == [14]
    assert list(zone.free_area[1][MigrateType.MOVABLE]) == [4]
    assert [w.rule for w in vm.warnings] == ["VM_WARN_ON"]
    assert "__GFP_RECLAIMABLE" in vm.warnings[0].message
    zone.check_free_lists()
    movable = Layout("UUUU..UU" "UUUU....", types={1: MigrateType.UNMOVABLE}).vm
    assert movable.zone.alloc_pages(1, GFP_HIGHUSER_MOVABLE).pfn == 4
    assert movable.warnings == []


def test_an_order_0_request_takes_the_slow_path_too():
    """__alloc_pages_slowpath() (page_alloc.c:4546-4826) has no shortcut for order 0: it
    reclaims (4710-4713, with __perform_reclaim()'s two cond_resched()s) before it
    gives up; __alloc_pages_direct_compact() returns at once for order 0 (4014-4015)
    and should_compact_retry() never retries it (4066-4067).

    Two pageblocks of 8, every page in use.  An order-0 request fails on the free
    lists; at reclaim's first cond_resched() another CPU frees pfn 3, which the
    allocation after reclaim's progress takes.  Without that free the request fails
    after one round: the watermark test of should_reclaim_retry() fails, no retry.
    """
    lay, points = _recorded("UUUUUUUU" "UUUUUUUU")
    vm = lay.vm
    assert alloc_pages_compact(vm, 0, GFP_HIGHUSER_MOVABLE) is None
    assert points == ["cond_resched", "cond_resched"]
    _free_at_point(lay, points, 3, lay.unmovable[3])
    page = alloc_pages_compact(vm, 0, GFP_HIGHUSER_MOVABLE)
    assert page is not None and page.pfn == 3
    assert points == ["cond_resched"] * 4 and vm.vmstat["compact_stall"] == 0


class _Runs:
    """Every compact_zone() run: (mode, result)."""

    def __init__(self) -> None:
        self.seen: list[tuple[MigrateMode, CompactResult]] = []

    @hookimpl
    def mmplug_after_compact_zone(self, zone, order, mode, result):
        self.seen.append((mode, result))


def test_a_request_that_may_use_the_reserves_skips_the_first_async_compaction():
    """__alloc_pages_slowpath() (page_alloc.c:4632-4636) tries ASYNC compaction first
    for a costly or non-movable order only if !gfp_pfmemalloc_allowed() (4373-4394):
    not for __GFP_MEMALLOC (unless __GFP_NOMEMALLOC), nor for a task in PF_MEMALLOC
    context, which then gives up without any compaction at all (4704-4706).

    Pageblocks of 8: 0 = D . U U U U U U, 1 and 2 in use, 3 (UNMOVABLE) = U . U . U .
    U .: no free order-1 block; compacted before (cached positions reset).  An
    unmovable order-1 request (GFP_KERNEL) compacts ASYNC (COMPLETE), SYNC_LIGHT
    (COMPLETE), then SYNC_FULL (page 0 moves to 25: SUCCESS, SYNC_LIGHT migration).
    With __GFP_MEMALLOC the ASYNC round is not there; with __GFP_NOMEMALLOC as well it
    is; a PF_MEMALLOC task gets no page and no compaction.
    """
    def runs(gfp, pf_memalloc=False):
        lay = Layout("D.UUUUUU" "UUUUUUUU" "UUUUUUUU" "U.U.U.U.",
                     types={3: MigrateType.UNMOVABLE})
        vm = lay.vm
        reset_cached_positions(vm.zone)
        listener = _Runs()
        vm.plugins.register(listener)
        if pf_memalloc:
            vm.cpus.current().flags |= PF_MEMALLOC
        page = alloc_pages_compact(vm, 1, gfp)
        return (page.pfn if page is not None else None), listener.seen

    assert (GFP_MEMALLOC, GFP_NOMEMALLOC) == (0x2000, 0x10000)      # gfp.h:32, 35
    async_, light = MigrateMode.ASYNC, MigrateMode.SYNC_LIGHT
    complete, success = CompactResult.COMPLETE, CompactResult.SUCCESS
    assert runs(GFP_KERNEL) == (0, [(async_, complete), (light, complete), (light, success)])
    assert runs(GFP_KERNEL | GFP_MEMALLOC) == (0, [(light, complete), (light, success)])
    assert runs(GFP_KERNEL | GFP_MEMALLOC | GFP_NOMEMALLOC) == (
        0, [(async_, complete), (light, complete), (light, success)])
    assert runs(GFP_KERNEL, pf_memalloc=True) == (None, [])
