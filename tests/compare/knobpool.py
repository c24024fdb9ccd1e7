"""knobpool: a small deterministic driver with all three knobs, for compare's tests.

Like tests/drivers/simplepool.py (fixed slots per page), plus the "map" knob:
a page holding a mapped object refuses isolation, and one mapped while
isolated fails migration permanently with -EBUSY (as z3fold does).  Pages are
kept in allocation order so that runs are reproducible in any process.
"""

from __future__ import annotations

from mmplug import Capabilities, DriverInfo, NoMemory, hookimpl
from mmplug.kernel import (
    EAGAIN,
    EBUSY,
    MIGRATEPAGE_SUCCESS,
    alloc_page,
    clear_page_movable,
    copy_highpage,
    get_page,
    lock_page,
    page_address,
    put_page,
    set_page_movable,
    spinlock,
    unlock_page,
)

SLOTS = 4


class Slot:
    __slots__ = ("page", "handles", "isolated", "pinned", "mapped")

    def __init__(self, page):
        self.page = page
        self.handles = [None] * SLOTS
        self.isolated = False
        self.pinned = 0
        self.mapped = 0


class Pool:
    def __init__(self, vm, mapping):
        self.vm = vm
        self.mapping = mapping
        self.lock = spinlock(vm, "knobpool.lock")
        self.size = vm.zone.page_size // SLOTS
        self.states: dict[int, Slot] = {}      # serial -> state, in allocation order
        self.serial = 0
        self.objects: dict[int, tuple[Slot, int, int]] = {}
        self.next_handle = 1
        self.held = False

    def store(self, data):
        if len(data) > self.size:
            raise ValueError(f"{len(data)} bytes > slot of {self.size}")
        with self.lock:
            for st in self.states.values():
                if not st.isolated and None in st.handles:
                    return self._put(st, data)
        page = alloc_page(self.vm)
        if page is None:
            raise NoMemory("knobpool: no page")
        st = Slot(page)
        lock_page(page)
        set_page_movable(page, self.mapping)
        page.private = st
        unlock_page(page)
        with self.lock:
            self.serial += 1
            self.states[self.serial] = st
            return self._put(st, data)

    def _put(self, st, data):
        i = st.handles.index(None)
        h = self.next_handle
        self.next_handle += 1
        st.handles[i] = h
        page_address(st.page)[i * self.size:i * self.size + len(data)] = data
        self.objects[h] = (st, i, len(data))
        return h

    def read(self, h):
        st, i, n = self.objects[h]
        return bytes(page_address(st.page)[i * self.size:i * self.size + n])

    def free(self, h):
        with self.lock:
            st, i, _ = self.objects.pop(h)
            st.handles[i] = None
            if any(st.handles):
                return
            serial = next(k for k, v in self.states.items() if v is st)
            del self.states[serial]
        page = st.page
        lock_page(page)
        clear_page_movable(page)
        page.private = 0
        unlock_page(page)
        put_page(page)

    def destroy(self):
        for h in list(self.objects):
            self.free(h)

    def pages(self):
        return [st.page for st in self.states.values()]

    def pin(self, h):
        self.objects[h][0].pinned += 1

    def unpin(self, h):
        self.objects[h][0].pinned -= 1

    def map(self, h):
        self.objects[h][0].mapped += 1

    def unmap(self, h):
        self.objects[h][0].mapped -= 1

    def hold(self):
        self.held = True

    def release(self):
        self.held = False


@hookimpl
def mmplug_driver():
    return DriverInfo(name="knobpool", version="0.1", factory=Pool,
                      summary="test driver with pin, map and busy knobs",
                      capabilities=Capabilities(knobs={"pin", "map", "busy"}))


@hookimpl
def isolate_page(page, mode):
    st = page.private
    if st.mapped:
        return False
    st.isolated = True
    return True


@hookimpl
def migratepage(mapping, newpage, page, mode):
    pool = mapping.private_data
    st = page.private
    if st.mapped:
        return -EBUSY
    if pool.held or st.pinned:
        return -EAGAIN
    copy_highpage(newpage, page)
    set_page_movable(newpage, mapping)
    get_page(newpage)
    newpage.private = st
    st.page = newpage
    st.isolated = False
    clear_page_movable(page)
    page.private = 0
    put_page(page)
    return MIGRATEPAGE_SUCCESS


@hookimpl
def putback_page(page):
    page.private.isolated = False
