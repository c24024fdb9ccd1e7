"""nullpool: a movable driver whose callbacks cost next to nothing, for bench_core.py.

Each object takes one page that holds no data, as a balloon page holds none
(mm/balloon_compaction.c: balloon_page_migrate() moves the page's bookkeeping
and copies nothing).  isolate_page says yes, putback_page does nothing, and
migratepage moves the pool's record of the page to the new page, so that a
whole-zone compaction measures the framework alone: the scanners, isolation,
migrate_pages() and the buddy allocator.
"""

from __future__ import annotations

from mmplug import Capabilities, DriverInfo, NoMemory, hookimpl
from mmplug.kernel import (
    MIGRATEPAGE_SUCCESS,
    PAGE_SIZE,
    alloc_page,
    clear_page_movable,
    get_page,
    lock_page,
    put_page,
    set_page_movable,
    unlock_page,
)


class NullPage:
    """The pool's record of one page: which page it is now."""

    __slots__ = ("page",)

    def __init__(self, page):
        self.page = page


class Pool:
    def __init__(self, vm, mapping):
        self.vm = vm
        self.mapping = mapping
        #: one object per page, whatever its size
        self.slot_size = PAGE_SIZE(vm)
        self.states: dict[NullPage, None] = {}   # ordered: runs repeat exactly
        self.handles: dict[int, NullPage] = {}
        self.next_handle = 1

    def store(self, data: bytes) -> int:
        page = alloc_page(self.vm)
        if page is None:
            raise NoMemory("nullpool: no page")
        st = NullPage(page)
        lock_page(page)
        set_page_movable(page, self.mapping)
        page.private = st
        unlock_page(page)
        self.states[st] = None
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = st
        return handle

    def read(self, handle: int) -> bytes:
        if handle not in self.handles:
            raise KeyError(handle)
        return b""

    def free(self, handle: int) -> None:
        st = self.handles.pop(handle)
        del self.states[st]
        # Release the page (REL-1) under its lock, which a migration may hold: the
        # page to release is the one the record names once the lock is ours.
        page = st.page
        lock_page(page)
        while st.page is not page:
            unlock_page(page)
            page = st.page
            lock_page(page)
        clear_page_movable(page)
        page.private = 0
        unlock_page(page)
        put_page(page)

    def destroy(self) -> None:
        while self.handles:
            self.free(next(iter(self.handles)))

    def pages(self):
        return [st.page for st in tuple(self.states)]


@hookimpl
def mmplug_driver():
    return DriverInfo(name="nullpool", version="1.0", factory=Pool,
                      summary="one empty page per object; callbacks that cost next to nothing",
                      capabilities=Capabilities(max_object_size=None, may_refuse_isolation=False,
                                                may_fail_migration=False, stores_data=False))


@hookimpl
def isolate_page(page, mode):
    return True


@hookimpl
def migratepage(mapping, newpage, page, mode):
    st = page.private
    set_page_movable(newpage, mapping)
    get_page(newpage)
    newpage.private = st
    st.page = newpage
    clear_page_movable(page)
    page.private = 0
    put_page(page)
    return MIGRATEPAGE_SUCCESS


@hookimpl
def putback_page(page):
    """Nothing to undo: isolation changed nothing of the pool's."""
