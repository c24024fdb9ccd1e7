"""Kernel scenarios worked out by hand from v4.19's mm/compaction.c, mm/page_alloc.c and
mm/migrate.c (the 0x88888888/Linux-4.19 mirror; line numbers are that tree's, as in
docs/fidelity.md), each checked against the model.

Zones are built page by page with `corehelp.Layout` (pageblocks of 8 pages, no min
watermark unless a test sets one), so every free list and counter can be followed.
"""

from __future__ import annotations

from corehelp import Layout, PoolPlugin
from mmplug import hookimpl
from mmplug.compaction import (
    CompactControl,
    alloc_pages_direct_compact,
    compact_finished,
    compact_memory,
    compact_zone,
    compaction_deferred,
    compaction_suitable,
    defer_compaction,
    isolate_freepages_block,
    isolate_migratepages_block,
    kcompactd_do_work,
    reset_cached_positions,
    reset_isolation_suitable,
)
from mmplug.constants import (
    GFP_HIGHUSER_MOVABLE,
    ISOLATE_ASYNC_MIGRATE,
    ISOLATE_UNEVICTABLE,
    CompactPriority,
    CompactResult,
    MigrateMode,
    MigrateType,
)
from mmplug.migrate import putback_movable_pages
from mmplug.vmstat import fragmentation_index


def test_release_freepages_frees_from_the_head_of_cc_freepages():
    """release_freepages() (compaction.c:52-66) frees cc->freepages from its head.

    Pageblocks of 8.  Block 0 = D D and six free pages (2-3 order 1, 4-7 order 2),
    block 1 all in use, block 2 = U . U U U . U U: free pages 17 and 21, whose
    buddies (16, 20) and order-1 buddies (18-19, 22-23) are in use.  The driver
    answers every migratepage with -EAGAIN.

    The migrate scanner isolates 0 and 1 (list [1, 0]).  The free scanner
    (low_pfn = pageblock_end_pfn(8) = 16) scans block 2 upwards: 17, then 21
    (isolate_freepages_block list_add_tail()s them, 524), and stops with
    2 >= 2 targets.  map_pages (68-91) list_add()s page by page: cc->freepages
    is [21, 17].  Each of the ten passes of migrate_pages takes 21 for pfn 1 and
    gives it back to the head (compaction_free, 1201-1207), and takes 21 again
    for pfn 0: the list stays [21, 17].  The scanners meet (COMPLETE) and
    release_freepages frees 21, then 17: 17 is the head of the order-0 MOVABLE
    list, the page the next order-0 movable allocation gets.
    """
    lay = Layout("DD......" "UUUUUUUU" "U.UUU.UU")
    vm, zone = lay.vm, lay.vm.zone
    lay.pool.hold()
    assert compact_memory(vm) == CompactResult.COMPLETE
    assert vm.vmstat["pgmigrate_fail"] == 2
    assert list(zone.free_area[0][MigrateType.MOVABLE]) == [21, 17]    # tail .. head
    assert zone.free_list_head(0, MigrateType.MOVABLE) == 17
    zone.check_free_lists()
    assert lay.intact()


class _ReschedOnFirstMigration(PoolPlugin):
    """simplepool whose first migratepage call finds need_resched() raised (a timer tick)."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def migratepage(self, mapping, newpage, page, mode):
        self.calls += 1
        if self.calls == 1:
            mapping.private_data.vm.cpus.current().need_resched = True
        return super().migratepage(mapping, newpage, page, mode)


def test_migrate_pages_reschedules_before_each_page_so_async_compaction_goes_on():
    """migrate_pages() calls cond_resched() before every page (migrate.c:1417-1419).

    Block 0 = D D D U U U U U, block 1 all in use, block 2 = U and free pages 17,
    18-19, 20-23.  ASYNC compaction of the whole zone (not direct: no
    skip_on_failure) isolates [2, 1, 0].  need_resched() comes up while pfn 2
    migrates; the cond_resched() before pfn 1 answers it, so ASYNC compaction
    never sees it: the migrate scanner scans block 1 (compact_should_abort,
    724, finds nothing to do), the free scanner stopped at 20, and the scanners
    meet in block 2: COMPLETE, with the three pages migrated.
    """
    plugin = _ReschedOnFirstMigration()
    lay = Layout("DDDUUUUU" "UUUUUUUU" "U.......", plugin=plugin)
    vm = lay.vm
    cc = CompactControl(zone=vm.zone, order=-1, mode=MigrateMode.ASYNC, whole_zone=True)
    assert compact_zone(vm, cc) == CompactResult.COMPLETE and not cc.contended
    assert plugin.calls == 3 and vm.vmstat["pgmigrate_success"] == 3
    assert not vm.cpus.current().need_resched
    assert (lay.pfn_of(2), lay.pfn_of(1), lay.pfn_of(0)) == (19, 18, 17) and lay.intact()


def test_async_direct_isolation_gives_up_an_order_block_at_its_first_failure():
    """isolate_migratepages_block() with skip_on_failure (compaction.c:727-730, 735-755,
    907-934): ASYNC direct compaction for order 2 works in order-2 blocks.

    Block 0 = D D U D  D D D D.  0 and 1 are isolated, 2 fails: they are put back
    (nr_isolated back to 0), low_pfn jumps to next_skip_pfn - 1 = 3 and on to 4,
    so 3 is never scanned.  4-7 are isolated; the loop ends at end_pfn 8.  Seven
    pfns scanned, compact_isolated counts the 4 kept, no skip bit (pages were
    isolated), and last_migrated_pfn is 4 (reset by the failure, 923).

    Block 1 = D . D D  D D U D.  A free page is not a failure (the PageBuddy
    branch continues, 782-793): 8, 10 and 11 are isolated, and at 12, the next
    order-2 block, the scanner stops to migrate them (742-743): low_pfn 12, four
    pfns scanned.
    """
    lay = Layout("DDUDDDDD" "D.DDDDUD" "U.......")
    vm, zone = lay.vm, lay.vm.zone
    mode = ISOLATE_UNEVICTABLE | ISOLATE_ASYNC_MIGRATE
    cc = CompactControl(zone=zone, order=2, mode=MigrateMode.ASYNC, direct_compaction=True,
                        gfp_mask=GFP_HIGHUSER_MOVABLE)
    assert isolate_migratepages_block(vm, cc, 0, 8, mode) == 8
    assert [p.pfn for p in cc.migratepages] == [7, 6, 5, 4] and cc.nr_migratepages == 4
    assert cc.total_migrate_scanned == 7 and vm.vmstat["compact_isolated"] == 4
    assert cc.last_migrated_pfn == 4 and zone.pageblock_skip[0] == 0
    assert vm.vmstat["putback_movable"] == 2
    putback_movable_pages(vm, cc.migratepages)
    cc = CompactControl(zone=zone, order=2, mode=MigrateMode.ASYNC, direct_compaction=True,
                        gfp_mask=GFP_HIGHUSER_MOVABLE)
    assert isolate_migratepages_block(vm, cc, 8, 16, mode) == 12
    assert [p.pfn for p in cc.migratepages] == [11, 10, 8]
    assert cc.total_migrate_scanned == 4 and vm.vmstat["compact_isolated"] == 4 + 3
    putback_movable_pages(vm, cc.migratepages)
    assert lay.intact()


def test_direct_compaction_that_failed_reschedules_before_the_next_attempt():
    """__alloc_pages_direct_compact() ends a failed attempt with cond_resched()
    (page_alloc.c:4048-4050), which answers need_resched().

    Block 0 = D D D D U . U ., blocks 1 and 2 = U . U . U . U .: ten free order-0
    pages, no order-2 block; compaction_suitable(2) is CONTINUE (10 > 0 +
    compact_gap 8).  With need_resched() raised, ASYNC direct compaction backs off
    at the top of isolate_migratepages_block (724): CONTENDED, a stall and a
    failure.  The cond_resched() after it clears need_resched(), so the next ASYNC
    attempt isolates 0-3, migrates them to 23, 21, 19, 17 and frees an order-2
    block at 0: SUCCESS, and the allocation gets it.  (The zone has been compacted
    before: its cached scanner positions are reset_cached_positions()'s.)
    """
    lay = Layout("DDDDU.U." + "U.U.U.U." * 2)
    vm = lay.vm
    reset_cached_positions(vm.zone)
    task = vm.cpus.current()
    task.need_resched = True
    page, result = alloc_pages_direct_compact(vm, 2, GFP_HIGHUSER_MOVABLE, CompactPriority.ASYNC)
    assert page is None and result == CompactResult.CONTENDED
    assert (vm.vmstat["compact_stall"], vm.vmstat["compact_fail"]) == (1, 1)
    assert not task.need_resched
    page, result = alloc_pages_direct_compact(vm, 2, GFP_HIGHUSER_MOVABLE, CompactPriority.ASYNC)
    assert result == CompactResult.SUCCESS and page is not None and page.pfn == 0
    assert (vm.vmstat["compact_stall"], vm.vmstat["compact_success"]) == (2, 1)
    assert [lay.pfn_of(p) for p in range(4)] == [17, 19, 21, 23] and lay.intact()


def test_compaction_restarting_reschedules_while_it_clears_the_skip_bits():
    """__reset_isolation_suitable() passes a cond_resched() at every pageblock
    (compaction.c:253-256); compact_zone() calls it when compaction_restarting()
    (1579-1580), before the scanners start.

    The layout of the test above, deferred to the limit for order 2 (shift 6, 63
    attempts skipped): the 64th is let through (compaction_deferred, 164-168), and
    compaction_restarting() holds.  need_resched() is pending, but the reset answers
    it, so ASYNC compaction runs and succeeds instead of backing off (724).
    """
    lay = Layout("DDDDU.U." + "U.U.U.U." * 2)
    vm, zone = lay.vm, lay.vm.zone
    for _ in range(7):
        defer_compaction(zone, 2)
    assert sum(compaction_deferred(zone, 2) for _ in range(63)) == 63
    zone.pageblock_skip[:] = b"\x01" * 3
    task = vm.cpus.current()
    task.need_resched = True
    page, result = alloc_pages_direct_compact(vm, 2, GFP_HIGHUSER_MOVABLE, CompactPriority.ASYNC)
    assert result == CompactResult.SUCCESS and page is not None and page.pfn == 0
    assert not task.need_resched and lay.intact()


def test_no_target_below_the_watermark_is_enomem_and_ends_compaction_contended():
    """-ENOMEM from compaction_alloc() (compaction.c:1181-1187) ends migrate_pages() at once
    (migrate.c:1428-1451: nr_failed++ and out, the pages not yet tried are not counted),
    and compact_zone() ends CONTENDED while the scanners have not met (1654-1656).

    Blocks 0 = D D U..., 1 = all in use, 2 = U . U...: one free page, min watermark
    1.  The migrate scanner isolates [1, 0].  __isolate_free_page() refuses pfn 17
    (1 free page is not above min 1 + 1 << 0, page_alloc.c:3254-3256), so
    isolate_freepages_block() stops there (518-519) after two pfns, the free scanner
    stops early (1146-1151) with free_pfn 17, and the first migration finds no
    target: pgmigrate_fail 1, not 2; both pages go back.  17 >> 3 > 8 >> 3: CONTENDED.
    """
    lay = Layout("DDUUUUUU" "UUUUUUUU" "U.UUUUUU")
    vm = lay.vm
    vm.zone.wmark_min = 1
    assert compact_memory(vm) == CompactResult.CONTENDED
    assert (vm.vmstat["pgmigrate_success"], vm.vmstat["pgmigrate_fail"]) == (0, 1)
    assert vm.vmstat["compact_isolated"] == 2
    assert (vm.vmstat["compact_migrate_scanned"], vm.vmstat["compact_free_scanned"]) == (8, 2)
    assert vm.vmstat["putback_movable"] == 2 and vm.zone.nr_free_pages == 1
    assert lay.pfn_of(0) == 0 and lay.pfn_of(1) == 1 and lay.intact()


def test_buddies_merge_across_pageblocks_of_different_migratetypes():
    """__free_one_page() (page_alloc.c:831-934) merges up to pageblock_order, then, with no
    isolated pageblock in the zone, goes on merging past it (880-902) whatever the
    buddy block's migratetype; the result goes on the list of the page being freed.

    Two pageblocks of 8, block 1 UNMOVABLE, all pages freed in pfn order: 0-7 make
    an order-3 block on the MOVABLE list; freeing 15 merges 8-15 and then 0-15, an
    order-4 block on the UNMOVABLE list (pfn 15's), and neither block changes type.
    A movable order-0 allocation then falls back to it (__rmqueue_fallback, 2689-
    2713): order 4 >= pageblock_order, so steal_suitable_fallback() claims both
    pageblocks (change_pageblock_range, 2446-2448), and the split (expand) leaves
    8-15, 4-7, 2-3 and 1 on the MOVABLE lists and hands out pfn 0.
    """
    lay = Layout("........" "........", types={1: MigrateType.UNMOVABLE}, max_order=5)
    zone = lay.vm.zone
    assert [list(zone.free_area[4][mt]) for mt in (MigrateType.MOVABLE,
                                                  MigrateType.UNMOVABLE)] == [[], [0]]
    assert list(zone.pageblock_mt) == [MigrateType.MOVABLE, MigrateType.UNMOVABLE]
    page = zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    assert page.pfn == 0
    assert list(zone.pageblock_mt) == [MigrateType.MOVABLE, MigrateType.MOVABLE]
    assert [list(zone.free_area[o][MigrateType.MOVABLE]) for o in range(4)] == [[1], [2], [4],
                                                                                [8]]
    zone.check_free_lists()


def test_a_pageblock_the_zone_ends_inside_is_never_claimed_by_a_steal():
    """move_freepages_block() (page_alloc.c:2331-2351) moves nothing when the zone does
    not span the pageblock's last pfn (2346-2347), so steal_suitable_fallback() (2427-
    2496) finds no free page moved and takes the one block alone (2480-2481).

    Two pageblocks of 8; the zone ends at pfn 14 (a machine's zone often ends inside
    a pageblock; 14 and 15 are in use).  Block 0 is in use; block 1 is UNMOVABLE
    with 8-11 free (order 2) and 12-13 (order 1).  A movable order-0 allocation
    falls back to the largest block, 8-11; order 2 >= pageblock_order / 2 may
    steal the whole block, but the block is the zone's last and partial: only
    8-11 moves to the MOVABLE list, 12-13 stays UNMOVABLE and so does the block.
    The split hands out 8 and leaves 10-11 and 9 on the MOVABLE lists.
    """
    lay = Layout("UUUUUUUU" "......UU", types={1: MigrateType.UNMOVABLE})
    zone = lay.vm.zone
    zone.zone_end_pfn = 14
    page = zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE)
    assert page.pfn == 8
    assert zone.get_pageblock_migratetype(8) == MigrateType.UNMOVABLE
    assert list(zone.free_area[1][MigrateType.UNMOVABLE]) == [12]
    assert [list(zone.free_area[o][MigrateType.MOVABLE]) for o in range(3)] == [[9], [10], []]
    zone.check_free_lists()


def test_resetting_skip_bits_steps_a_pageblock_at_a_time_from_the_zone_start():
    """__reset_isolation_suitable() (compaction.c:244-270) walks pfn = zone_start_pfn,
    + pageblock_nr_pages, ... while below zone_end_pfn (253) and clears the bit of
    each pfn's pageblock.

    Three pageblocks of 8; the zone spans pfns 5-18.  The walk visits 5 and 13 (21
    is past the end): blocks 0 and 1 are cleared, block 2, which the zone reaches
    only up to 18, keeps its skip bit.
    """
    lay = Layout("UUUUUUUU" * 3)
    zone = lay.vm.zone
    zone.zone_start_pfn, zone.zone_end_pfn = 5, 19
    zone.pageblock_skip[:] = b"\x01" * 3
    reset_isolation_suitable(zone)
    assert list(zone.pageblock_skip) == [0, 0, 1]
    assert zone.compact_cached_migrate_pfn == [5, 5] and zone.compact_cached_free_pfn == 16


def test_a_non_movable_sync_compaction_finishes_its_pageblock_before_it_stops():
    """__compact_finished() (compaction.c:1354-1410): for a non-movable request whose
    allocation would steal from another migratetype, SYNC compaction first finishes
    the pageblock it is in (cc->finishing_block), and says SUCCESS only at the next
    pageblock boundary; compact_finished() turns NO_SUITABLE_PAGE into CONTINUE.

    Four pageblocks of 8; the only free block is 16-23, order 3, MOVABLE.  An
    UNMOVABLE order-1 request: orders 1 and 2 have nothing; at order 3 the MOVABLE
    list is a fallback UNMOVABLE may steal from whole (can_steal_fallback: order
    >= pageblock_order).  With the migrate scanner at 12, SYNC_LIGHT goes on (at 12
    and 14) and stops at 16; ASYNC stops at once.  For order 4 no list has a block:
    NO_SUITABLE_PAGE, which compact_finished() returns as CONTINUE (1420-1421).
    """
    lay = Layout("UUUUUUUU" * 2 + "........" + "UUUUUUUU")
    vm, zone = lay.vm, lay.vm.zone
    cc = CompactControl(zone=zone, order=1, mode=MigrateMode.SYNC_LIGHT,
                        migratetype=MigrateType.UNMOVABLE, migrate_pfn=12, free_pfn=24)
    assert compact_finished(vm, cc) == CompactResult.CONTINUE and cc.finishing_block
    cc.migrate_pfn = 14
    assert compact_finished(vm, cc) == CompactResult.CONTINUE and cc.finishing_block
    cc.migrate_pfn = 16
    assert compact_finished(vm, cc) == CompactResult.SUCCESS and not cc.finishing_block
    cc = CompactControl(zone=zone, order=1, mode=MigrateMode.ASYNC,
                        migratetype=MigrateType.UNMOVABLE, migrate_pfn=12, free_pfn=24)
    assert compact_finished(vm, cc) == CompactResult.SUCCESS
    cc = CompactControl(zone=zone, order=4, mode=MigrateMode.SYNC_LIGHT,
                        migratetype=MigrateType.UNMOVABLE, migrate_pfn=12, free_pfn=24)
    assert compact_finished(vm, cc) == CompactResult.CONTINUE and not cc.finishing_block


def test_a_block_scanned_in_vain_is_skipped_and_moves_the_cached_pfn_of_its_mode():
    """update_pageblock_skip() (compaction.c:291-322), called when a scanner got to the end
    of a block without isolating anything (951-952, 568-569): the block's skip bit, and
    the cached restart pfn, only forward for the migrate scanner (ASYNC moves
    compact_cached_migrate_pfn[0] alone, the SYNC modes both) and only backward for
    the free scanner.  The pfn cached is the first one the call scanned.

    Four pageblocks of 8, every page in use; the cached positions are
    reset_cached_positions()'s, as after an earlier compaction.
    """
    lay = Layout("UUUUUUUU" * 4)
    vm, zone = lay.vm, lay.vm.zone
    reset_cached_positions(zone)
    mode = ISOLATE_UNEVICTABLE | ISOLATE_ASYNC_MIGRATE
    cc = CompactControl(zone=zone, order=2, mode=MigrateMode.ASYNC)
    assert isolate_migratepages_block(vm, cc, 10, 16, mode) == 16
    assert list(zone.pageblock_skip) == [0, 1, 0, 0]
    assert zone.compact_cached_migrate_pfn == [10, 0]
    cc.mode = MigrateMode.SYNC_LIGHT
    assert isolate_migratepages_block(vm, cc, 16, 24, mode) == 24
    assert zone.compact_cached_migrate_pfn == [16, 16]
    cc.mode = MigrateMode.ASYNC
    isolate_migratepages_block(vm, cc, 0, 8, mode)
    assert zone.compact_cached_migrate_pfn == [16, 16]           # never backward
    assert list(zone.pageblock_skip) == [1, 1, 1, 0]
    assert zone.compact_cached_free_pfn == 24
    assert isolate_freepages_block(vm, cc, 20, 24, []) == 24       # the free scanner
    assert zone.compact_cached_free_pfn == 20
    assert isolate_freepages_block(vm, cc, 24, 32, []) == 32
    assert zone.compact_cached_free_pfn == 20                      # never forward
    assert list(zone.pageblock_skip) == [1, 1, 1, 1]
    assert cc.total_migrate_scanned == 6 + 8 + 8 and cc.total_free_scanned == 4 + 8


def test_fragmentation_index_of_an_order_past_max_order_is_zero():
    """__fragmentation_index() (vmstat.c:1053-1074) returns 0 after its WARN_ON_ONCE for
    an order >= MAX_ORDER (1057-1058), so compaction_suitable() (1501-1509) calls such
    a request NOT_SUITABLE_ZONE, SKIPPED to its callers.

    Max order 5, one free order-3 block and nothing else: for order 4 the index is
    1000 - (1000 + 8 * 1000 / 16) / 1 = -500; for order 5 it is 0.  A zone of 80
    free order-0 pages passes the order-0 watermark for order 5 (80 > low 0 +
    compact_gap 64), and its index for order 4 is 1000 - (1000 + 80 * 1000 / 16) /
    80 = 925: compaction would run for order 4 and is not suitable for order 5.
    """
    nr_free = [0, 0, 0, 1, 0]
    assert fragmentation_index(nr_free, 4) == -500
    assert fragmentation_index(nr_free, 5) == 0
    lay = Layout("U." * 80, max_order=5)
    zone = lay.vm.zone
    assert fragmentation_index(zone.buddyinfo(), 4) == 925
    assert compaction_suitable(zone, 4) == CompactResult.CONTINUE
    assert compaction_suitable(zone, 5) == CompactResult.SKIPPED


def test_the_first_compaction_of_a_zone_at_pfn_0_finds_the_scanners_met():
    """struct zone starts zeroed: compact_cached_free_pfn and compact_cached_migrate_pfn[]
    are 0 until reset_cached_positions() (compaction.c:213-219) first runs.
    compact_zone() (1590-1605) puts a cached pfn outside the zone back, but in a zone
    that starts at pfn 0 a free pfn of 0 is inside it: the first compaction that starts
    from the cached positions finds the scanners met at once (compact_scanners_met,
    1059-1063; __compact_finished, 1331-1344), resets them and ends COMPLETE (whole
    zone: the migrate pfn is the zone start) having scanned nothing.

    Four pageblocks of 8, each U . U . U . U ., kcompactd for order 2
    (kcompactd_do_work, 1985-2068): COMPLETE, nothing scanned, deferred (shift 1);
    the next wake is deferred; the one after runs from the reset positions and scans
    blocks 0-2 in vain (24 pfns).  A zone that starts at pfn 1 puts both cached pfns
    back in range (free 24, migrate 1) and scans 1-23 the first time.
    """
    lay = Layout("U.U.U.U." * 4)
    vm, zone = lay.vm, lay.vm.zone
    assert (zone.compact_cached_free_pfn, zone.compact_cached_migrate_pfn) == (0, [0, 0])
    assert kcompactd_do_work(vm, 2) == CompactResult.COMPLETE
    assert vm.vmstat["compact_daemon_migrate_scanned"] == 0 and not any(zone.pageblock_skip)
    assert (zone.compact_cached_free_pfn, zone.compact_cached_migrate_pfn) == (24, [0, 0])
    assert zone.compact_defer_shift == 1
    assert kcompactd_do_work(vm, 2) == CompactResult.DEFERRED
    assert kcompactd_do_work(vm, 2) == CompactResult.COMPLETE
    assert vm.vmstat["compact_daemon_migrate_scanned"] == 24
    assert list(zone.pageblock_skip) == [1, 1, 1, 0] and zone.compact_defer_shift == 2

    lay = Layout("U.U.U.U." * 4)
    vm, zone = lay.vm, lay.vm.zone
    zone.zone_start_pfn = 1
    assert kcompactd_do_work(vm, 2) == CompactResult.COMPLETE
    assert vm.vmstat["compact_daemon_migrate_scanned"] == 23
    assert (zone.compact_cached_free_pfn, zone.compact_cached_migrate_pfn) == (24, [1, 1])


def test_a_fragmentation_index_of_exactly_extfrag_threshold_is_not_suitable():
    """compaction_suitable() (compaction.c:1476-1512) calls a costly request
    COMPACT_NOT_SUITABLE_ZONE when 0 <= fragmentation_index <= sysctl_extfrag_threshold
    (500, both ends included: 1501-1504), and its callers see SKIPPED (1508-1509).

    Order 4, pageblocks of 8, min watermark 0.  Zone A: four free order-3 blocks
    (each beside a pageblock in use) and four free order-2 ones: 48 free pages in 8
    blocks, none of order 4, so __compaction_suitable() (1433-1474) is CONTINUE (48 >
    low 0 + compact_gap 32) and __fragmentation_index() (vmstat.c:1053-1074) is
    1000 - (1000 + 48 * 1000 / 16) / 8 = 500: not suitable; kcompactd_do_work() does
    not compact (2016-2018), nor defer.  Zone B has three order-2 and two order-1
    blocks instead of four order-2 ones: 48 pages in 9 blocks, 1000 - 4000 / 9 = 556:
    compaction runs.
    """
    pair = "........" "UUUUUUUU"
    lay = Layout(pair * 4 + "....UUUU" * 4)
    vm, zone = lay.vm, lay.vm.zone
    assert zone.nr_free_pages == 48 and zone.buddyinfo() == [0, 0, 4, 4, 0]
    assert fragmentation_index(zone.buddyinfo(), 4) == 500
    assert compaction_suitable(zone, 4) == CompactResult.SKIPPED
    assert kcompactd_do_work(vm, 4) == CompactResult.SKIPPED
    assert zone.compact_defer_shift == 0 and vm.vmstat["compact_daemon_migrate_scanned"] == 0

    lay = Layout(pair * 4 + "....UUUU" * 3 + "..UUUUUU" * 2)
    zone = lay.vm.zone
    assert zone.nr_free_pages == 48 and zone.buddyinfo() == [0, 2, 3, 4, 0]
    assert fragmentation_index(zone.buddyinfo(), 4) == 556
    assert compaction_suitable(zone, 4) == CompactResult.CONTINUE


def test_compact_memory_leaves_skip_bits_that_kcompactd_then_obeys():
    """compact_node() (compaction.c:1860-1893) ignores skip bits but does not stop
    update_pageblock_skip() (291-322, which only no_set_skip_hint stops) from setting
    them; kcompactd (ignore_skip_hint false, 1999) then passes those blocks by
    (isolation_suitable, 204-211; isolate_migratepages, 1281-1282).

    Pageblocks of 8: 0 = all in use, 1 = D U U U U U U U, 2 and 3 = U . U . U . U .
    compact_memory: block 0 gives nothing (skip bit); block 1 isolates pfn 8; the
    free scanner starts at block 3 and takes 25 (enough: it stops at 26); 8 moves to
    25.  Block 2 gives nothing (skip bit); the migrate scanner is at 24, the free
    scanner at 26: met, COMPLETE, the cached positions reset.  Skip bits 1 0 1 0.

    kcompactd for order 1 (GFP_KERNEL: UNMOVABLE): 8 free order-0 pages and no
    order-1 block, so compaction_suitable is CONTINUE (8 > compact_gap 4).  From the
    cached migrate pfn 0 (the zone start: whole zone) it passes block 0 by, scans
    block 1 in vain (8 pfns; its skip bit, and both cached migrate pfns to 8, 313-317),
    passes block 2 by and stops below the free scanner at 24: the scanners meet,
    COMPLETE, deferred, cached positions reset again.
    """
    lay = Layout("UUUUUUUU" "DUUUUUUU" "U.U.U.U." "U.U.U.U.")
    vm, zone = lay.vm, lay.vm.zone
    assert compact_memory(vm) == CompactResult.COMPLETE
    assert lay.pfn_of(8) == 25 and lay.intact()
    assert list(zone.pageblock_skip) == [1, 0, 1, 0]
    assert (zone.compact_cached_migrate_pfn, zone.compact_cached_free_pfn) == ([0, 0], 24)
    assert zone.nr_free_pages == 8 and zone.buddyinfo()[1:] == [0, 0, 0, 0]
    assert kcompactd_do_work(vm, 1) == CompactResult.COMPLETE
    assert vm.vmstat["compact_daemon_migrate_scanned"] == 8
    assert list(zone.pageblock_skip) == [1, 1, 1, 0]
    assert zone.compact_defer_shift == 1 and not zone.compact_blockskip_flush   # 1336-1343
    assert (zone.compact_cached_migrate_pfn, zone.compact_cached_free_pfn) == ([0, 0], 24)


def test_async_direct_compaction_leaves_an_order_block_whose_migration_failed():
    """compact_zone() (compaction.c:1648-1667): when migrate_pages() fails in ASYNC direct
    compaction, the migrate scanner moves on to the end of the cc->order-aligned block
    (block_end_pfn(cc->migrate_pfn - 1, cc->order)); the rest of it is not tried.

    Pageblocks of 64 (order 6), six of them: block 0 = 40 driver pages and 24 in use,
    blocks 1-5 = U . repeated (160 free order-0 pages).  Order 6: 160 > low 0 +
    compact_gap 128 and fragmentation index 1000 - (1000 + 2500) / 160 = 979: CONTINUE.
    The zone has been compacted before (cached positions reset: free pfn 320).  The
    driver refuses every migratepage (-EAGAIN).

    Round 1 isolates 0-31 and stops at COMPACT_CLUSTER_MAX (migrate pfn 32); the free
    scanner takes the 32 free pages of block 5 (64 pfns scanned) and stops with
    free pfn 256; ten passes fail all 32 (pgmigrate_fail 32), they go back, and the
    migrate pfn jumps to 64: 32-39 are never isolated.  Blocks 1-3 each fail at their
    first pfn (skip_on_failure: one pfn scanned, skip bit, cached ASYNC migrate pfn);
    at 256 the scanners meet: COMPLETE (the run began at the zone start), 35 pfns
    scanned, 64 pages isolated by the two scanners.
    """
    lay = Layout("D" * 40 + "U" * 24 + "U." * 32 * 5, pageblock_order=6, max_order=8)
    vm, zone = lay.vm, lay.vm.zone
    reset_cached_positions(zone)
    assert compaction_suitable(zone, 6) == CompactResult.CONTINUE
    lay.pool.hold()
    cc = CompactControl(zone=zone, order=6, mode=MigrateMode.ASYNC, direct_compaction=True,
                        gfp_mask=GFP_HIGHUSER_MOVABLE)
    assert compact_zone(vm, cc) == CompactResult.COMPLETE
    assert (vm.vmstat["pgmigrate_fail"], vm.vmstat["putback_movable"]) == (32, 32)
    assert vm.vmstat["compact_isolated"] == 32 + 32
    assert (vm.vmstat["compact_migrate_scanned"], vm.vmstat["compact_free_scanned"]) == (35, 64)
    assert list(zone.pageblock_skip) == [0, 1, 1, 1, 0, 0]
    assert zone.compact_blockskip_flush and zone.nr_free_pages == 160 and lay.intact()
