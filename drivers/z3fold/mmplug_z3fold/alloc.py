"""Allocating and freeing objects: z3fold_alloc, __z3fold_alloc, z3fold_free.

mm/z3fold.c (v6.0).  A new object first looks for a page on this CPU's
unbuddied lists with at least its chunk count free (then an exact fit on
other CPUs' lists), skipping pages that need compaction or are claimed;
else it takes a fresh page, makes it movable under the page lock and puts
its header in front.  Objects too big for a shared page get a HEADLESS page.
Freeing an object zeroes its chunks, clears its slot (unless somebody has
claimed the page), drops its header reference, and has the page compacted,
inline if it is on no CPU's list, else as queued work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmplug import NoMemory
from mmplug.kernel import (
    EINVAL,
    ENOMEM,
    ENOSPC,
    GFP_DIRECT_RECLAIM,
    GFP_HIGHMEM,
    alloc_page,
    lock_page,
    schedule_point,
    set_page_movable,
    trylock_page,
    unlock_page,
)

from . import compact as _compact
from .flags import (
    BUDDY_MASK,
    BUDDY_SHIFT,
    FIRST,
    HANDLES_NOFREE,
    HEADLESS,
    LAST,
    MIDDLE,
    MIDDLE_CHUNK_MAPPED,
    NEEDS_COMPACTING,
    PAGE_CLAIMED,
    PAGE_HEADLESS,
    PAGE_MIGRATED,
    PAGE_STALE,
    Buddy,
    clear_bit,
    set_bit,
    test_and_set_bit,
    test_bit,
)
from .geometry import DIRECT_MAP
from .handles import (
    _BUDDY,
    _SLOT_OFFSET,
    _SLOT_WORD,
    SLOTS_SHIFT,
    encode_handle,
    free_handle,
    get_z3fold_header,
    handle_to_buddy,
    is_headless_handle,
    locked_header_slot,
    put_z3fold_header,
)
from .header import (
    Z3foldHeader,
    kref_get,
    kref_put,
    z3fold_page_lock,
    z3fold_page_trylock,
    z3fold_page_unlock,
)
from .release import free_z3fold_page, release_z3fold_page_locked, release_z3fold_page_locked_list
from .workqueue import Work

if TYPE_CHECKING:
    from .pool import Z3foldPool

#: the state bits init_z3fold_page() clears
_INIT_CLEARED = sum(1 << bit for bit in (PAGE_HEADLESS, MIDDLE_CHUNK_MAPPED, NEEDS_COMPACTING,
                                         PAGE_STALE, PAGE_CLAIMED, PAGE_MIGRATED))


def init_z3fold_page(pool: Z3foldPool, page: Any, headless: bool) -> Z3foldHeader | None:
    """init_z3fold_page(): clear the state bits; a shared page gets a header and slots."""
    page.lru = None
    page.private &= ~_INIT_CLEARED
    if headless:
        return None
    slots = pool.slots_cache.alloc()
    zhdr = Z3foldHeader(page=page, pool=pool,
                        page_lock=pool.new_spinlock(f"z3fold_header.page_lock[{page.pfn:#x}]"),
                        slots=slots)
    zhdr.work = Work(_compact.compact_page_work, zhdr)
    pool.headers[page.pfn] = zhdr
    return zhdr


def num_free_chunks(pool: Z3foldPool, zhdr: Z3foldHeader) -> int:
    """num_free_chunks(): with a middle object, the larger gap on either side of it."""
    geo = pool.geometry
    if zhdr.middle_chunks:
        before = 0 if zhdr.first_chunks else zhdr.start_middle - geo.zhdr_chunks
        after = 0 if zhdr.last_chunks else (
            geo.total_chunks - (zhdr.start_middle + zhdr.middle_chunks))
        return max(before, after)
    return geo.nchunks - zhdr.first_chunks - zhdr.last_chunks


def add_to_unbuddied(pool: Z3foldPool, zhdr: Z3foldHeader) -> None:
    """add_to_unbuddied(): onto this CPU's list for its free chunks, if a buddy is free."""
    if zhdr.first_chunks == 0 or zhdr.last_chunks == 0 or zhdr.middle_chunks == 0:
        freechunks = num_free_chunks(pool, zhdr)
        cpu = pool.this_cpu()
        unbuddied = pool.unbuddied_of(cpu)
        pool.lock.lock()
        unbuddied[freechunks].add(zhdr)
        pool.lock.unlock()
        zhdr.cpu = cpu


def get_free_buddy(zhdr: Z3foldHeader, chunks: int, zhdr_chunks: int) -> Buddy:
    """get_free_buddy(): which buddy a new object of `chunks` goes into (HEADLESS: none)."""
    if zhdr.middle_chunks:
        if not zhdr.first_chunks and chunks <= zhdr.start_middle - zhdr_chunks:
            return FIRST
        if not zhdr.last_chunks:
            return LAST
        return HEADLESS
    if not zhdr.first_chunks:
        return FIRST
    if not zhdr.last_chunks:
        return LAST
    return MIDDLE


def _take_from_list(pool: Z3foldPool, lst: Any, zhdr: Z3foldHeader) -> str:
    """Re-check under the pool lock, trylock, unlist; "retry", "skip" or "ok"."""
    pool.lock.lock()
    if lst.first() is not zhdr or not z3fold_page_trylock(zhdr):
        pool.lock.unlock()
        return "retry"
    lst.delete(zhdr)
    zhdr.cpu = -1
    pool.lock.unlock()
    page = zhdr.page
    if test_bit(NEEDS_COMPACTING, page) or test_bit(PAGE_CLAIMED, page):
        z3fold_page_unlock(zhdr)
        return "skip"
    # Unlisted under the pool lock, then locked: no kref_put could have run.
    kref_get(zhdr)
    return "ok"


def z3fold_alloc_existing(pool: Z3foldPool, size: int, can_sleep: bool) -> Z3foldHeader | None:
    """__z3fold_alloc(): a locked header with room for `size`, or None."""
    geo = pool.geometry
    chunks = geo.size_to_chunks(size)
    found: Z3foldHeader | None = None
    while found is None:
        unbuddied = pool.unbuddied_of(pool.this_cpu())
        retry = False
        for lst in unbuddied[chunks:geo.nchunks]:
            if not lst.entries:
                continue
            zhdr = lst.first()
            verdict = _take_from_list(pool, lst, zhdr)
            if verdict == "ok":
                found = zhdr
            else:
                retry = True
            break
        if found is not None or not retry:
            break
        if can_sleep:
            schedule_point(pool.vm, "__z3fold_alloc: cond_resched")
    if found is None:
        # An exact fit on any CPU's lists.
        for cpu in sorted(pool.unbuddied):
            lst = pool.unbuddied[cpu][chunks]
            pool.lock.lock()
            zhdr = lst.first()
            if zhdr is None or not z3fold_page_trylock(zhdr):
                pool.lock.unlock()
                continue
            lst.delete(zhdr)
            zhdr.cpu = -1
            pool.lock.unlock()
            page = zhdr.page
            if test_bit(NEEDS_COMPACTING, page) or test_bit(PAGE_CLAIMED, page):
                z3fold_page_unlock(zhdr)
                if can_sleep:
                    schedule_point(pool.vm, "__z3fold_alloc: cond_resched")
                continue
            kref_get(zhdr)
            found = zhdr
            break
    if found is not None and found.slots is None:
        found.slots = pool.slots_cache.alloc()
    return found


def z3fold_alloc(pool: Z3foldPool, size: int, gfp: int) -> tuple[int, int]:
    """z3fold_alloc(): (0, handle), or (-EINVAL / -ENOSPC / -ENOMEM, 0)."""
    geo = pool.geometry
    chunks = geo.size_to_chunks(size)
    can_sleep = bool(gfp & GFP_DIRECT_RECLAIM)
    if not size or gfp & GFP_HIGHMEM:
        return -EINVAL, 0
    if size > geo.page_size:
        return -ENOSPC, 0
    zhdr: Z3foldHeader | None = None
    if size > geo.headless_above:
        bud = HEADLESS
    else:
        while True:
            zhdr = z3fold_alloc_existing(pool, size, can_sleep)
            if zhdr is None:
                bud = FIRST
                break
            bud = get_free_buddy(zhdr, chunks, geo.zhdr_chunks)
            if bud != HEADLESS:
                break
            if not kref_put(zhdr, release_z3fold_page_locked):
                z3fold_page_unlock(zhdr)
            pool.warn("no free chunks in a page from the unbuddied lists", zhdr.page)
    if zhdr is None:
        page = alloc_page(pool.vm, gfp)
        if page is None:
            return -ENOMEM, 0
        zhdr = init_z3fold_page(pool, page, bud == HEADLESS)
        pool.pages_nr += 1
        if bud == HEADLESS:
            set_bit(PAGE_HEADLESS, page)
            pool.headless[page.pfn] = page
            return 0, _list_and_encode(pool, page, None, bud)
        if can_sleep:
            lock_page(page)
        elif not trylock_page(page):
            pool.warn("z3fold_alloc: trylock_page() of a page just allocated failed", page)
        set_page_movable(page, pool.mapping)
        unlock_page(page)
        z3fold_page_lock(zhdr)
    if bud == FIRST:
        zhdr.first_chunks = chunks
    elif bud == LAST:
        zhdr.last_chunks = chunks
    else:
        zhdr.middle_chunks = chunks
        zhdr.start_middle = zhdr.first_chunks + geo.zhdr_chunks
    add_to_unbuddied(pool, zhdr)
    handle = _list_and_encode(pool, zhdr.page, zhdr, bud)
    z3fold_page_unlock(zhdr)
    return 0, handle


def z3fold_alloc_one_cpu(pool: Z3foldPool, data: bytes) -> int | None:
    """z3fold_alloc() of len(data) bytes and the copy of `data` (z3fold_map, memcpy,
    z3fold_unmap) on one CPU, when nothing is in the way: the handle, or None with
    nothing changed, for the caller to take the two steps themselves (NoMemory if
    no page can be had, as store() says -ENOMEM).

    The steps are those of z3fold_alloc() and __z3fold_alloc() (mm/z3fold.c, v6.0) in
    their order: the first page of this CPU's unbuddied lists with room, unlisted,
    referenced, given the buddy get_free_buddy() picks, listed again by its free
    chunks, moved to the LRU head and its slot encoded; or, with every list empty, a
    fresh page made movable.  On one CPU every lock taken on the way is free and is
    dropped again before the copy, so none is taken: it is checked to be free first.
    Whatever would make the general path do more (a page it would skip because it
    needs compacting or is claimed, a header it would find freed, a HEADLESS object,
    a lock held) returns None before anything changes
    (drivers/z3fold/tests/test_access.py holds both ways to the same state).
    """
    size = len(data)
    geo = pool.geometry
    if not size or size > geo.headless_above or pool.lock.held:
        return None
    chunks = (size + geo.chunk_size - 1) >> geo.chunk_shift   # size_to_chunks()
    unbuddied = pool.unbuddied.get(0)
    if unbuddied is None or len(pool.unbuddied) != 1:
        return None
    zhdr = None
    for lst in unbuddied[chunks:geo.nchunks]:
        if lst.entries:
            zhdr = next(reversed(lst.entries))   # list_first_entry()
            break
    if zhdr is not None:
        page = zhdr.page
        if zhdr.freed or zhdr.page_lock.held or zhdr.refcount <= 0 \
                or page.private & _NOT_UNCONTENDED:
            return None
        bud = get_free_buddy(zhdr, chunks, geo.zhdr_chunks)
        slots = zhdr.slots
        if bud == HEADLESS or (slots is not None and (slots.lock.writer or slots.lock.readers)):
            return None
        # _take_from_list(): off its list, one more reference
        lst.entries.popitem()     # list_del_init() of the head (BuddyList.delete)
        zhdr.buddy = None
        zhdr.cpu = -1
        zhdr.refcount += 1
        if zhdr.slots is None:
            zhdr.slots = pool.slots_cache.alloc()
    else:
        # nothing listed: a fresh page, as z3fold_alloc() makes one
        page = alloc_page(pool.vm, pool.gfp)
        if page is None:
            raise NoMemory("z3fold: no page for a new object")   # store()'s -ENOMEM
        zhdr = init_z3fold_page(pool, page, False)
        assert zhdr is not None
        pool.pages_nr += 1
        if pool.gfp & GFP_DIRECT_RECLAIM:
            lock_page(page)
        elif not trylock_page(page):
            pool.warn("z3fold_alloc: trylock_page() of a page just allocated failed", page)
        set_page_movable(page, pool.mapping)
        unlock_page(page)
        bud = FIRST
    if bud == FIRST:
        zhdr.first_chunks = chunks
        off = geo.zhdr_size_aligned
    elif bud == LAST:
        zhdr.last_chunks = chunks
        off = geo.page_size - (chunks << geo.chunk_shift)
    else:
        zhdr.middle_chunks = chunks
        zhdr.start_middle = zhdr.first_chunks + geo.zhdr_chunks
        off = zhdr.start_middle << geo.chunk_shift
    # add_to_unbuddied()
    if zhdr.first_chunks == 0 or zhdr.last_chunks == 0 or zhdr.middle_chunks == 0:
        unbuddied[num_free_chunks(pool, zhdr)].add(zhdr)
        zhdr.cpu = 0
    # _list_and_encode(): to the LRU head, then encode_handle() into the page's slots
    lru = pool.lru
    if page.lru is lru:
        lru.delete(page)
    lru.add(page)
    slots = zhdr.slots
    idx = (bud + zhdr.first_num) & BUDDY_MASK
    value = DIRECT_MAP + page.pfn * geo.page_size + idx
    if bud == LAST:
        value |= chunks << BUDDY_SHIFT
    slots.slot[idx] = value
    # the copy: z3fold_map() would set MIDDLE_CHUNK_MAPPED, z3fold_unmap() clears it
    if bud == MIDDLE:
        page.private &= ~(1 << MIDDLE_CHUNK_MAPPED)
    memory = pool.memory
    at = (page.pfn - memory.start_pfn) * geo.page_size + off
    memory.view[at:at + size] = data
    return slots.addr + idx * _SLOT_WORD


#: page states in which the one-CPU store steps aside: __z3fold_alloc() skips a page
#: that needs compacting or is claimed; a HEADLESS, stale or migrated page is never listed
_NOT_UNCONTENDED = sum(1 << bit for bit in (PAGE_HEADLESS, NEEDS_COMPACTING, PAGE_STALE,
                                            PAGE_CLAIMED, PAGE_MIGRATED))


def _list_and_encode(pool: Z3foldPool, page: Any, zhdr: Z3foldHeader | None, bud: Buddy) -> int:
    """Move the page to the LRU head and encode the handle, under the pool lock."""
    pool.lock.lock()
    if pool.lru.holds(page):
        pool.lru.delete(page)
    pool.lru.add(page)
    if zhdr is None:
        handle = pool.virt(page) | 1 << PAGE_HEADLESS
    else:
        handle = encode_handle(pool, zhdr, bud)
    pool.lock.unlock()
    return handle


def _clear_buddy(zhdr: Z3foldHeader, bud: int) -> bool:
    """z3fold_free()'s switch on the buddy: its chunk count to 0; False for no buddy."""
    if bud == FIRST:
        zhdr.first_chunks = 0
    elif bud == MIDDLE:
        zhdr.middle_chunks = 0
    elif bud == LAST:
        zhdr.last_chunks = 0
    else:
        return False
    return True


def z3fold_free(pool: Z3foldPool, handle: int) -> None:
    """z3fold_free(): release one object; the page goes when its last reference does."""
    if is_headless_handle(handle):
        page = pool.virt_to_page(handle & pool.geometry.page_mask)
        if test_and_set_bit(PAGE_CLAIMED, page):
            return  # reclaim owns it and frees it
        pool.lock.lock()
        pool.lru.delete(page)
        pool.lock.unlock()
        free_z3fold_page(pool, page, True)
        pool.pages_nr -= 1
        return
    if pool.uniprocessor:
        if z3fold_free_one_cpu(pool, handle):
            return
        # One CPU: nothing rewrites the slot between get_z3fold_header()'s read and
        # those of handle_to_buddy() and free_handle(), so it is read and looked up once.
        zhdr, slots, addr = locked_header_slot(pool, handle)
        page = zhdr.page
        page_claimed = test_and_set_bit(PAGE_CLAIMED, page)
        bud = _BUDDY[(addr - zhdr.first_num) & BUDDY_MASK]
    else:
        zhdr, slots = get_z3fold_header(pool, handle), None
        page = zhdr.page
        page_claimed = test_and_set_bit(PAGE_CLAIMED, page)
        bud = handle_to_buddy(pool, handle)
    if not _clear_buddy(zhdr, bud):
        pool.warn(f"z3fold_free: unknown buddy {bud}", page)
        put_z3fold_header(zhdr)
        return
    if not page_claimed:
        free_handle(pool, handle, zhdr, slots)
    if kref_put(zhdr, release_z3fold_page_locked_list):
        return
    if page_claimed:
        # Isolation, reclaim or compaction owns the page and finishes the job.
        put_z3fold_header(zhdr)
        return
    if test_and_set_bit(NEEDS_COMPACTING, page):
        clear_bit(PAGE_CLAIMED, page)
        put_z3fold_header(zhdr)
        return
    if zhdr.cpu < 0 or zhdr.cpu not in pool.unbuddied:
        zhdr.cpu = -1
        kref_get(zhdr)
        clear_bit(PAGE_CLAIMED, page)
        _compact.do_compact_page(zhdr, True)
        return
    kref_get(zhdr)
    clear_bit(PAGE_CLAIMED, page)
    pool.compact_wq.queue_work(zhdr.work)
    put_z3fold_header(zhdr)


def z3fold_free_one_cpu(pool: Z3foldPool, handle: int) -> bool:
    """z3fold_free() of a shared page's object on one CPU when nothing is in the way:
    True once done, False with nothing changed, for z3fold_free() to take its steps.

    The steps of z3fold_free() (mm/z3fold.c, v6.0) in their order, from one read of
    the slot: claim the page, clear the buddy's chunks, free_handle(), drop the
    object's reference, then release the page, or mark it NEEDS_COMPACTING and compact
    it inline (on no CPU's list) or queue its work.  get_z3fold_header()'s page lock
    and free_handle()'s slots lock are free on one CPU; the page lock is taken only
    where a step that follows expects it held (the release, do_compact_page()).  A
    page somebody claimed or migrated, a lock held, a slot already clear or a header
    found freed returns False (drivers/z3fold/tests/test_access.py holds both ways to
    the same state).
    """
    slots = pool.slots_cache.live.get(handle >> SLOTS_SHIFT)
    if slots is None or slots.lock.writer or slots.lock.readers \
            or slots.pool_flags & 1 << HANDLES_NOFREE or pool.compact_wq.destroyed:
        return False
    idx = (handle & _SLOT_OFFSET) // _SLOT_WORD
    addr = slots.slot[idx]
    geo = pool.geometry
    zhdr = pool.headers.get(((addr & geo.page_mask) - DIRECT_MAP) // geo.page_size)
    if zhdr is None or zhdr.freed or zhdr.page_lock.held or zhdr.refcount <= 0 or not addr:
        return False
    page = zhdr.page
    state = page.private
    if state & _NOT_FREED_ONE_CPU:
        return False
    if not _clear_buddy(zhdr, (addr - zhdr.first_num) & BUDDY_MASK):
        return False
    page.private = state | 1 << PAGE_CLAIMED
    # free_handle()
    slots.slot[idx] = 0
    if zhdr.slots is not slots:
        zhdr.foreign_handles -= 1
    if not any(slots.slot):
        if zhdr.slots is slots:
            zhdr.slots = None
        pool.slots_cache.free(slots)
    # kref_put(): the last reference releases the page, with its lock held
    zhdr.refcount -= 1
    if not zhdr.refcount:
        zhdr.page_lock.lock()
        release_z3fold_page_locked_list(zhdr)
        return True
    state = page.private
    if state >> NEEDS_COMPACTING & 1:
        page.private = state & ~(1 << PAGE_CLAIMED)
        return True
    zhdr.refcount += 1
    page.private = (state | 1 << NEEDS_COMPACTING) & ~(1 << PAGE_CLAIMED)
    if zhdr.cpu < 0 or zhdr.cpu not in pool.unbuddied:
        zhdr.cpu = -1
        zhdr.page_lock.lock()
        _compact.do_compact_page(zhdr, True)
        return True
    pool.compact_wq.queue_work(zhdr.work)
    return True


#: page states in which z3fold_free_one_cpu() steps aside: claimed by somebody else,
#: migrated (get_z3fold_header() retries), headless or stale
_NOT_FREED_ONE_CPU = sum(1 << bit for bit in (PAGE_HEADLESS, PAGE_STALE, PAGE_CLAIMED,
                                              PAGE_MIGRATED))


__all__ = ["z3fold_alloc", "z3fold_free", "z3fold_alloc_existing", "add_to_unbuddied",
           "num_free_chunks", "get_free_buddy", "init_z3fold_page"]
