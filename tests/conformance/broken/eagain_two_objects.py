"""broken_eagain_two_objects: simplepool with one mistake, which breaks MIG-8.

migratepage returns -EAGAIN, every time, for a page that holds exactly two objects, as
if one of the two were always about to be freed.

Generated from tests/drivers/simplepool.py and this mistake's row in
mistakes.py (python -m tests.conformance.broken.regenerate): edit those.
"""

from __future__ import annotations

from mmplug import Capabilities, DriverInfo, NoMemory, hookimpl
from mmplug.kernel import (
    EAGAIN,
    MIGRATEPAGE_SUCCESS,
    PAGE_SIZE,
    alloc_page,
    clear_page_movable,
    copy_highpage,
    get_page,
    lock_page,
    page_address,
    page_mapping,
    put_page,
    set_page_movable,
    spinlock,
    unlock_page,
)

SLOTS = 4


class PoolPage:
    """The pool's bookkeeping of one page."""

    __slots__ = ("page", "slots", "nused", "isolated", "pinned")

    def __init__(self, page):
        self.page = page
        self.slots = [None] * SLOTS      # handle or None
        self.nused = 0
        self.isolated = False
        self.pinned = 0

    def used(self):
        return self.nused


class Pool:
    def __init__(self, vm, mapping):
        self.vm = vm
        self.mapping = mapping
        self.lock = spinlock(vm, "simplepool.lock")
        self.slot_size = PAGE_SIZE(vm) // SLOTS
        self.states: dict[PoolPage, None] = {}  # ordered: runs repeat exactly
        # pages with a free slot that are not isolated, most recently used last
        self.partial: dict[PoolPage, None] = {}
        self.handles: dict[int, tuple[PoolPage, int, int]] = {}
        self.next_handle = 1
        self.held = False

    # --- the driver-facing protocol ---
    def store(self, data: bytes) -> int:
        if len(data) > self.slot_size:
            raise ValueError(f"object of {len(data)} bytes exceeds slot size {self.slot_size}")
        with self.lock:
            if self.partial:
                st = next(reversed(self.partial))
                return self._place(st, data)
        page = alloc_page(self.vm)
        if page is None:
            raise NoMemory("simplepool: no page")
        st = PoolPage(page)
        lock_page(page)
        set_page_movable(page, self.mapping)
        page.private = st
        unlock_page(page)
        with self.lock:
            self.states[st] = None
            self.partial[st] = None
            return self._place(st, data)

    def _place(self, st, data):
        slot = st.slots.index(None)
        handle = self.next_handle
        self.next_handle += 1
        st.slots[slot] = handle
        st.nused += 1
        if st.nused == SLOTS:
            del self.partial[st]
        off = slot * self.slot_size
        page_address(st.page)[off:off + len(data)] = data
        self.handles[handle] = (st, slot, len(data))
        return handle

    def read(self, handle: int) -> bytes:
        with self.lock:
            st, slot, length = self.handles[handle]
            off = slot * self.slot_size
            return bytes(page_address(st.page)[off:off + length])

    def free(self, handle: int) -> None:
        with self.lock:
            st, slot, _ = self.handles.pop(handle)
            st.slots[slot] = None
            st.nused -= 1
            if st.nused or st.pinned:
                if not st.isolated:
                    self.partial[st] = None
                return
            self.states.pop(st, None)
            self.partial.pop(st, None)
        # Release the empty page (REL-1): under its lock, which a migration may hold.
        while True:
            page = st.page
            lock_page(page)
            if st.page is page:
                break
            unlock_page(page)
        clear_page_movable(page)
        page.private = 0
        unlock_page(page)
        put_page(page)

    def destroy(self) -> None:
        for handle in list(self.handles):
            self.free(handle)

    def pages(self):
        return [st.page for st in self.states]

    def pin(self, handle):
        with self.lock:
            self.handles[handle][0].pinned += 1

    def unpin(self, handle):
        with self.lock:
            self.handles[handle][0].pinned -= 1

    def hold(self):
        self.held = True

    def release(self):
        self.held = False


@hookimpl
def mmplug_driver():
    return DriverInfo(name="broken_eagain_two_objects", version="1.0", factory=Pool,
                      summary="simplepool that breaks MIG-8",
                      capabilities=Capabilities(max_object_size=None, may_refuse_isolation=False,
                                                knobs={"pin", "busy"}))


@hookimpl
def isolate_page(page, mode):
    pool = page_mapping(page).private_data
    with pool.lock:
        st = page.private
        st.isolated = True
        pool.partial.pop(st, None)
    return True


@hookimpl
def migratepage(mapping, newpage, page, mode):
    pool = mapping.private_data
    with pool.lock:
        st = page.private
        if pool.held or st.pinned:
            return -EAGAIN
        if st.used() == 2:
            return -EAGAIN  # the mistake: nothing is in its way
        copy_highpage(newpage, page)
        set_page_movable(newpage, mapping)
        get_page(newpage)
        newpage.private = st
        st.page = newpage
        st.isolated = False
        # free() may have emptied the page meanwhile: it releases the page once it may
        # lock it, so only a page still in the pool goes back on the list.
        if st.used() < SLOTS and st in pool.states:
            pool.partial[st] = None
        clear_page_movable(page)
        page.private = 0
    put_page(page)
    return MIGRATEPAGE_SUCCESS


@hookimpl
def putback_page(page):
    pool = page_mapping(page).private_data
    with pool.lock:
        st = page.private
        st.isolated = False
        if st not in pool.states:
            return  # emptied by free() meanwhile, which releases the page
        if st.used() < SLOTS:
            pool.partial[st] = None
