"""racypool: a one-object-per-page driver with two deliberate, race-only bugs.

The factory option `bug` picks one:
- "release": free() of an isolated page clears PG_isolated itself and drops the
  page, instead of leaving PG_isolated to the VM (REL-2).  Harmless unless the
  VM holds the page isolated at that moment.
- "order": free() takes the pool mutex and then the page lock, while
  migratepage() takes the pool mutex under the page lock the VM holds: the
  two orders deadlock when they meet (LCK-3).
- "flaky": free() takes the pool mutex once more on every other call, counted
  across instances: the run depends on what ran before it, which no schedule
  fixes (the nondeterminism check must notice).
With bug=None it is a correct driver.
"""

from mmplug import Capabilities, DriverInfo, NoMemory, hookimpl
from mmplug.kernel import (
    MIGRATEPAGE_SUCCESS,
    alloc_page,
    clear_page_movable,
    copy_highpage,
    get_page,
    lock_page,
    mutex,
    page_address,
    page_isolated,
    put_page,
    set_page_movable,
    unlock_page,
)
from mmplug.page import ISOLATED


class Obj:
    __slots__ = ("page", "length")

    def __init__(self, page, length):
        self.page = page
        self.length = length


class RacyPool:
    #: calls of free() with bug="flaky", over every instance ever made
    flaky_calls = 0

    def __init__(self, vm, mapping, bug=None):
        self.vm = vm
        self.mapping = mapping
        self.bug = bug
        self.lock = mutex(vm, "racypool.mutex")
        self.objs = {}
        self.next_handle = 1

    def store(self, data):
        page = alloc_page(self.vm)
        if page is None:
            raise NoMemory("racypool: no page")
        lock_page(page)
        set_page_movable(page, self.mapping)
        page_address(page)[:len(data)] = data
        unlock_page(page)
        with self.lock:
            handle = self.next_handle
            self.next_handle += 1
            obj = Obj(page, len(data))
            page.private = obj
            self.objs[handle] = obj
        return handle

    def read(self, handle):
        with self.lock:
            obj = self.objs[handle]
            return bytes(page_address(obj.page)[:obj.length])

    def free(self, handle):
        if self.bug == "flaky":
            RacyPool.flaky_calls += 1
            if RacyPool.flaky_calls % 2:
                with self.lock:
                    pass
        if self.bug == "order":
            with self.lock:
                obj = self.objs.pop(handle)
                page = obj.page
                lock_page(page)            # page lock under the mutex: the wrong order
                self._release(page)
            return
        with self.lock:
            obj = self.objs.pop(handle)
        while True:
            page = obj.page
            lock_page(page)
            if obj.page is page:
                break
            unlock_page(page)
        self._release(page)

    def _release(self, page):
        clear_page_movable(page)
        page.private = 0
        if self.bug == "release" and page_isolated(page):
            page.flags &= ~ISOLATED        # the VM's flag: not the driver's to clear
        unlock_page(page)
        put_page(page)

    def destroy(self):
        for handle in list(self.objs):
            self.free(handle)

    def pages(self):
        return [obj.page for obj in self.objs.values()]


@hookimpl
def mmplug_driver():
    return DriverInfo(name="racypool", version="1.0", factory=RacyPool,
                      summary="one object per page, with optional race bugs",
                      capabilities=Capabilities(may_refuse_isolation=False))


@hookimpl
def isolate_page(page, mode):
    return True


@hookimpl
def migratepage(mapping, newpage, page, mode):
    pool = mapping.private_data
    pool.lock.lock()
    try:
        obj = page.private
        copy_highpage(newpage, page)
        set_page_movable(newpage, mapping)
        get_page(newpage)
        newpage.private = obj
        obj.page = newpage
        clear_page_movable(page)
        page.private = 0
    finally:
        pool.lock.unlock()
    put_page(page)
    return MIGRATEPAGE_SUCCESS


@hookimpl
def putback_page(page):
    pass
