"""In-page compaction (do_compact_page, z3fold_compact_page, compact_single_buddy), the
workqueue that runs it, and verify() catching a broken pool."""

from __future__ import annotations

import pytest

from mmplug_z3fold import flags as zf
from mmplug_z3fold.flags import Buddy
from mmplug_z3fold.handles import SLOTS_SHIFT, handle_to_buddy


def _full_page(pool, first=600, last=900, middle=700):
    """A page holding FIRST (b"F"), LAST (b"L") and MIDDLE (b"M"), stored in that order."""
    handles = {Buddy.FIRST: pool.store(b"F" * first), Buddy.LAST: pool.store(b"L" * last),
               Buddy.MIDDLE: pool.store(b"M" * middle)}
    for bud, h in handles.items():
        assert handle_to_buddy(pool, h) == bud
    return handles, pool.header_of_handle(handles[Buddy.FIRST])


def test_a_lone_middle_object_moves_to_first_and_its_handle_still_reads(make_pool):
    vm, pool = make_pool()
    pool.store(b"z" * 3700)  # another page with too little room to take the middle object
    by_buddy, zhdr = _full_page(pool)
    middle = by_buddy[Buddy.MIDDLE]
    pool.free(by_buddy[Buddy.FIRST])  # a full page is on no list: compacted inline
    pool.free(by_buddy[Buddy.LAST])  # now listed on this CPU: compaction is queued work
    assert zhdr.work.pending and zhdr.middle_chunks
    pool.run_workqueues()
    assert zhdr.middle_chunks == 0 and zhdr.first_chunks and zhdr.first_num == 1
    assert handle_to_buddy(pool, middle) == Buddy.FIRST and pool.read(middle) == b"M" * 700
    pool.verify()


def test_the_middle_object_slides_toward_last_for_a_big_enough_gap(make_pool):
    vm, pool = make_pool()
    geo = pool.geometry
    by_buddy, zhdr = _full_page(pool, first=1000, last=500, middle=300)
    assert zhdr.start_middle == geo.zhdr_chunks + zhdr.first_chunks
    pool.free(by_buddy[Buddy.FIRST])
    assert zhdr.start_middle == geo.total_chunks - zhdr.last_chunks - zhdr.middle_chunks
    assert pool.read(by_buddy[Buddy.MIDDLE]) == b"M" * 300
    assert pool.read(by_buddy[Buddy.LAST]) == b"L" * 500
    pool.verify()


def test_a_mapped_middle_object_is_not_moved(make_pool):
    vm, pool = make_pool()
    by_buddy, zhdr = _full_page(pool, first=1000, last=500, middle=300)
    middle = by_buddy[Buddy.MIDDLE]
    pool.map(middle)
    start = zhdr.start_middle
    pool.free(by_buddy[Buddy.FIRST])
    pool.run_workqueues()
    assert zf.test_bit(zf.MIDDLE_CHUNK_MAPPED, zhdr.page) and zhdr.start_middle == start
    pool.unmap(middle)
    assert pool.read(middle) == b"M" * 300
    pool.verify()


def test_compaction_work_is_queued_once_per_page(make_pool):
    vm, pool = make_pool()
    a = pool.store(b"a" * 100)
    b = pool.store(b"b" * 100)
    c = pool.store(b"c" * 100)
    zhdr = pool.header_of_handle(a)
    pool.free(c)  # the page was full: compacted inline, now on this CPU's list
    assert not zhdr.work.pending
    from mmplug_z3fold.alloc import z3fold_free
    del pool.objects[a], pool.objects[b]
    z3fold_free(pool, a)  # queues the work
    z3fold_free(pool, b)  # already NEEDS_COMPACTING: nothing more is queued
    assert len(pool.compact_wq) == 1 and zhdr.refcount == 1
    pool.run_workqueues()
    assert pool.pages() == []


def test_verify_reports_a_broken_kref(make_pool):
    vm, pool = make_pool()
    h = pool.store(b"x" * 100)
    pool.verify()
    pool.header_of_handle(h).refcount += 1
    with pytest.raises(AssertionError, match="kref"):
        pool.verify()


def test_freeing_a_moved_object_drops_the_foreign_handle_and_its_slots(make_pool, steps):
    """compact_single_buddy() moved b into d's page, leaving b's handle in the old
    page's slots: a foreign handle of d's page (see test_isolate.py).

    z3fold_free(b) (mm/z3fold.c:1109-1182) calls free_handle() (:292-329): the
    slot is cleared; the slots are not d's own, so d's foreign_handles drops
    to 0; a and c already cleared the other slots, so the slots structure is
    freed.  The free also queued compaction of d's page (:1166-1181); once it
    has run, with no foreign handle left, the page can be isolated again
    (z3fold_page_isolate, :1474-1479).
    """
    vm, pool = make_pool()
    a, b, c = (pool.store(bytes([i]) * 900) for i in (1, 2, 3))
    d = pool.store(b"d" * 900)
    old_slots = pool.slots_cache.lookup(b)
    pool.free(a)
    pool.free(c)
    pool.run_workqueues()
    target = pool.header_of_handle(d)
    assert pool.header_of_handle(b) is target and target.foreign_handles == 1
    assert target.slots is not old_slots
    pool.free(b)
    assert target.foreign_handles == 0
    assert old_slots.addr >> SLOTS_SHIFT not in pool.slots_cache.live
    pool.run_workqueues()
    st = steps(vm)
    assert st.isolate(target.page)
    st.putback()
    pool.verify()


def _verdict(pool, monkeypatch, slow):
    """verify()'s outcome, with the handles' slots read once each (one CPU) or, `slow`,
    through handle_to_z3fold_header() and friends as on several CPUs."""
    from mmplug_z3fold import verify as zv
    with monkeypatch.context() as m:
        if slow:
            m.setattr(zv, "_read_uncontended", lambda pool, handle: None)
        try:
            pool.verify()
        except AssertionError as exc:
            return str(exc)
        return "ok"


@pytest.mark.parametrize("corrupt", [None, "chunks", "two handles, one buddy", "foreign",
                                     "past the page", "freed slots"])
def test_verify_reads_each_slot_once_with_the_verdict_of_the_locked_reads(make_pool,
                                                                        monkeypatch, corrupt):
    import random
    vm, pool = make_pool(nr_pages=1024)
    rng = random.Random(5)
    handles = [pool.store(bytes(rng.randint(1, 4000))) for _ in range(900)]
    for h in rng.sample(handles, 300):
        pool.free(h)
        handles.remove(h)
    pool.run_workqueues()
    shared = [h for h in handles if not h & 1 << zf.PAGE_HEADLESS]
    by_buddy = {b: [h for h in shared if handle_to_buddy(pool, h) == b] for b in Buddy
                if b != Buddy.HEADLESS}
    assert all(by_buddy.values())
    if corrupt == "chunks":
        pool.header_of_handle(by_buddy[Buddy.FIRST][0]).first_chunks = 1
    elif corrupt == "two handles, one buddy":
        a, b = by_buddy[Buddy.FIRST][:2]
        pool.slots_cache.lookup(b).slot[(b & 0x3F) // 8] = \
            pool.slots_cache.lookup(a).slot[(a & 0x3F) // 8]
    elif corrupt == "foreign":
        pool.header_of_handle(by_buddy[Buddy.MIDDLE][0]).slots = None
    elif corrupt == "past the page":
        h = by_buddy[Buddy.LAST][0]
        slots = pool.slots_cache.lookup(h)
        slots.slot[(h & 0x3F) // 8] &= pool.geometry.page_mask | zf.BUDDY_MASK
    elif corrupt == "freed slots":
        pool.slots_cache.free(pool.slots_cache.lookup(by_buddy[Buddy.LAST][0]))
    fast = _verdict(pool, monkeypatch, slow=False) if corrupt != "freed slots" else None
    slow = _verdict(pool, monkeypatch, slow=True) if corrupt != "freed slots" else None
    if corrupt == "freed slots":
        from mmplug import ContractViolation
        with pytest.raises(ContractViolation, match="use after free") as fast_exc:
            pool.verify()
        with monkeypatch.context() as m:
            from mmplug_z3fold import verify as zv
            m.setattr(zv, "_read_uncontended", lambda pool, handle: None)
            with pytest.raises(ContractViolation, match="use after free") as slow_exc:
                pool.verify()
        assert str(fast_exc.value) == str(slow_exc.value)
        return
    assert fast == slow
    assert (fast == "ok") == (corrupt is None), fast
