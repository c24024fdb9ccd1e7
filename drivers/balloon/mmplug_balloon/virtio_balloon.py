"""The virtio balloon device: drivers/virtio/virtio_balloon.c, v4.19 (DRV-B1, DRV-B3).

One `VirtioBalloon` is one device and one driver instance.  Inflation
(fill_balloon) allocates pages, enqueues them under the balloon mutex and
tells the host their pfns; deflation (leak_balloon) dequeues pages, tells the
host, then gives them back to the guest.  Migration (virtballoon_migratepage)
swaps one ballooned page for another and tells the host both halves, under
the same mutex, taken with a trylock: the mutex holder may be inflating, and
inflation allocates, and allocation may compact, so a migration that waited
for the mutex could wait for itself.

The instance protocol maps onto the device so the VM and the conformance
suite can drive it like any driver: one object is one ballooned page.
`store()` inflates one page (the bytes are not kept: a balloon page holds
nothing), `read()` returns a token of the handle that survives migration,
`free()` deflates that very page.  `hold()`/`release()` take the balloon
mutex (the "busy" knob): migration then returns -EAGAIN.

free() of an isolated page.  The kernel's dequeue never has to: it skips
isolated pages and takes another.  A handle names one page, so free()
releases it the way REL-1/REL-2 prescribe: under the page lock it clears
the movable mapping and page->private, leaves page->lru to the VM, gives up
the isolation count (the VM will not call putback or migratepage for a page
that is no longer PageMovable), tells the host and drops the balloon's
reference.  The VM then finishes the page (MIG-3, MIG-6 or PUT-1) and frees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mmplug import ContractViolation, NoMemory
from mmplug.kernel import (
    EAGAIN,
    MIGRATEPAGE_SUCCESS,
    PAGE_SIZE,
    Page,
    count_vm_event,
    get_page,
    has_movable_tag,
    lock_page,
    mutex,
    page_isolated,
    page_mapping,
    put_page,
    schedule_point,
    unlock_page,
)

from .balloon_compaction import (
    BalloonDevInfo,
    balloon_devinfo_init,
    balloon_page_alloc,
    balloon_page_delete,
    balloon_page_dequeue,
    balloon_page_enqueue,
    balloon_page_insert,
)
from .bugs import parse_bugs
from .host import DEFLATE, INFLATE, Host

if TYPE_CHECKING:
    from mmplug import VM, AddressSpace

#: VIRTIO_BALLOON_ARRAY_PFNS_MAX: pfns per message, so per fill/leak call
ARRAY_PFNS_MAX = 256
#: schedule points remove_common() spends waiting for compaction to give isolated
#: pages back before it reports that it would wait forever
REMOVE_WAIT_POINTS = 1000


class VirtioBalloon:
    """struct virtio_balloon, and the driver instance of the `balloon` plugin.

    Options: `bugs` (ids of mmplug_balloon.bugs.KNOWN_BUGS to reintroduce) and
    `compaction` (CONFIG_BALLOON_COMPACTION; default True).  `on_point`, if set,
    is called with the name of every place where the kernel code may sleep;
    single-CPU scenarios use it to run another path at exactly that moment.
    """

    def __init__(self, vm: VM, mapping: AddressSpace, *,
                 bugs: Iterable[str] | str | None = None, compaction: bool = True) -> None:
        self.vm = vm
        self.mapping = mapping
        self.bugs = parse_bugs(bugs)
        self.compaction = bool(compaction)
        self.balloon_lock = mutex(vm, f"{mapping.name}.balloon_lock")
        self.vb_dev_info: BalloonDevInfo = balloon_devinfo_init(
            vm, mapping, compaction=self.compaction, migratepage=self._migratepage,
            bugs=self.bugs)
        self.host = Host()
        #: pages the host was told the guest does not use
        self.num_pages = 0
        #: the one pfn array every message is built in (shared by inflate, deflate, migrate)
        self.pfns = [0] * ARRAY_PFNS_MAX
        self.num_pfns = 0
        #: model book-keeping: handle -> page, and pfn -> handle
        self.handles: dict[int, Page] = {}
        self._handle_of: dict[int, int] = {}
        self._next_handle = 1
        self.on_point: Callable[[str], Any] | None = None
        mapping.private_data = self

    # --- the device ----------------------------------------------------------------------
    def _point(self, what: str) -> None:
        schedule_point(self.vm, f"balloon:{what}")
        if self.on_point is not None:
            self.on_point(what)

    def _tell_host(self, queue: str) -> None:
        """tell_host(): queue the pfn array, kick, sleep until the host has read it.

        The buffer's length is fixed when it is queued; its contents are read by
        the host while the guest sleeps, which is why every writer of `pfns`
        must hold the balloon mutex (BUG-9).
        """
        n = self.num_pfns
        self._point(f"tell_host:{queue}")
        self.host.receive(queue, self.pfns[:n])

    def _set_pfns(self, page: Page) -> None:
        """set_page_pfns(): append one page to the message being built."""
        self.pfns[self.num_pfns] = page.pfn
        self.num_pfns += 1

    def _fill_balloon(self, num: int) -> list[int]:
        """fill_balloon(): inflate by up to `num` pages (one message); returns the new handles.

        Pages are allocated before the mutex is taken: allocation may enter
        direct compaction, which may migrate balloon pages, which needs the mutex.
        They wait on a local list through balloon_page_push() (list_add) and
        leave it through balloon_page_pop() (the head), so the last page
        allocated is enqueued, and announced, first; the first one allocated
        ends up at the head of the balloon list and is the first to deflate.
        """
        num = min(num, ARRAY_PFNS_MAX)
        new_pages = []
        for _ in range(num):
            page = balloon_page_alloc(self.vb_dev_info)
            if page is None:
                break  # "Out of puff!"
            new_pages.append(page)
        handles = []
        with self.balloon_lock:
            self.num_pfns = 0
            for page in reversed(new_pages):
                handles.append(self._new_handle(page))
                balloon_page_enqueue(self.vb_dev_info, page)
                self._set_pfns(page)
                self.num_pages += 1
            if self.num_pfns:
                self._tell_host(INFLATE)
        return handles

    def _leak_balloon(self, num: int) -> int:
        """leak_balloon(): deflate by up to `num` pages (one message); returns how many.

        The host hears of the pages before the guest reuses them
        (VIRTIO_BALLOON_F_MUST_TELL_HOST order).  Dequeued pages are collected
        with list_add() and released from the head, so they go back to the
        allocator in the reverse of the order they were dequeued in.
        """
        num = min(num, ARRAY_PFNS_MAX)
        released = []
        with self.balloon_lock:
            num = min(num, self.num_pages)
            self.num_pfns = 0
            while self.num_pfns < num:
                page = balloon_page_dequeue(self.vb_dev_info)
                if page is None:
                    break
                self._set_pfns(page)
                released.append(page)
                self.num_pages -= 1
            freed = self.num_pfns
            if freed:
                self._tell_host(DEFLATE)
            released.reverse()
            self._release_pages_balloon(released)
        return freed

    def _release_pages_balloon(self, pages: list[Page]) -> None:
        """release_pages_balloon(): drop the balloon's reference on each deflated page."""
        for page in pages:
            self._drop_handle(page)
            put_page(page)

    def _migratepage(self, b_dev_info: BalloonDevInfo, newpage: Page, page: Page,
                     mode: int) -> int:
        """virtballoon_migratepage(): swap `page` for `newpage`, host told both (DRV-B3).

        Under pages_lock newpage joins the balloon and the isolation count
        drops; the host hears "inflate newpage", then the old page leaves and
        the host hears "deflate page"; last the balloon's reference on the old
        page goes.  The mutex is only tried: a busy balloon is -EAGAIN.
        """
        locked = "BUG-9" not in self.bugs
        if locked and not self.balloon_lock.trylock():
            return -EAGAIN
        try:
            get_page(newpage)
            with b_dev_info.pages_lock:
                balloon_page_insert(b_dev_info, newpage)
                b_dev_info.isolated_pages -= 1
                count_vm_event(self.vm, "balloon_migrate")
                self._move_handle(page, newpage)
            self.num_pfns = 0
            self._set_pfns(newpage)
            self._tell_host(INFLATE)
            with b_dev_info.pages_lock:
                balloon_page_delete(b_dev_info, page)
            self.num_pfns = 0
            self._set_pfns(page)
            self._tell_host(DEFLATE)
        finally:
            if locked:
                self.balloon_lock.unlock()
        put_page(page)
        return MIGRATEPAGE_SUCCESS

    # --- handles (model book-keeping) ------------------------------------------------------
    def _new_handle(self, page: Page) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self.handles[handle] = page
        self._handle_of[page.pfn] = handle
        return handle

    def _drop_handle(self, page: Page) -> None:
        handle = self._handle_of.pop(page.pfn)
        del self.handles[handle]

    def _move_handle(self, page: Page, newpage: Page) -> None:
        handle = self._handle_of.pop(page.pfn)
        self._handle_of[newpage.pfn] = handle
        self.handles[handle] = newpage

    # --- the instance protocol -------------------------------------------------------------
    def store(self, data: bytes) -> int:
        """Inflate one page; `data` only sizes the request (a balloon page holds nothing)."""
        if len(data) > PAGE_SIZE(self.vm):
            raise ValueError(f"object of {len(data)} bytes exceeds the page size "
                             f"{PAGE_SIZE(self.vm)}")
        handles = self._fill_balloon(1)
        if not handles:
            raise NoMemory("balloon: out of puff, no page to inflate")
        return handles[0]

    def read(self, handle: int) -> bytes:
        """A token of the object: its handle as 8 bytes, the same across migrations."""
        if handle not in self.handles:
            raise KeyError(handle)
        return handle.to_bytes(8, "little")

    def free(self, handle: int) -> None:
        """Deflate the page of `handle` (isolated or not: see the module docstring)."""
        b_dev_info = self.vb_dev_info
        with self.balloon_lock:
            # Under the mutex no migration can move the page away from the handle.
            page = self.handles[handle]
            if "BUG-12" in self.bugs:
                # The device link goes before the page lock is held: isolation,
                # which holds only the page lock, can still find the page movable.
                with b_dev_info.pages_lock:
                    page.private = 0
            self._point("free:lock_page")
            lock_page(page)
            with b_dev_info.pages_lock:
                isolated = self.compaction and page_isolated(page)
                balloon_page_delete(b_dev_info, page)
                if isolated:
                    # REL-2: the VM will not hand this page back to us.
                    b_dev_info.isolated_pages -= 1
                count_vm_event(self.vm, "balloon_deflate")
            unlock_page(page)
            self.num_pages -= 1
            self.num_pfns = 0
            self._set_pfns(page)
            self._tell_host(DEFLATE)
            self._release_pages_balloon([page])

    def inflate(self, n: int) -> int:
        """Inflate by up to `n` pages, as many messages as it takes; returns how many."""
        done = 0
        while done < n:
            got = len(self._fill_balloon(n - done))
            if not got:
                break
            done += got
        return done

    def deflate(self, n: int) -> int:
        """Deflate by up to `n` pages; stops early if every remaining page is isolated."""
        done = 0
        while done < n:
            got = self._leak_balloon(n - done)
            if not got:
                break
            done += got
        return done

    def destroy(self) -> None:
        """remove_common(): deflate until the balloon is empty.

        Pages that are isolated or locked by a compactor cannot be dequeued
        yet; the kernel loops until they come back.  Here the wait is a
        bounded number of schedule points without progress, after which it
        would be forever: REL-3 if pages are still isolated, else DRV-B1.
        """
        waited = 0
        while self.num_pages:
            if self._leak_balloon(self.num_pages):
                waited = 0
                continue
            if waited >= REMOVE_WAIT_POINTS:
                self._stuck()
            waited += 1
            schedule_point(self.vm, "balloon:remove_common:wait")

    def _stuck(self) -> None:
        b_dev_info = self.vb_dev_info
        if b_dev_info.isolated_pages:
            raise ContractViolation(
                "REL-3", f"{b_dev_info.isolated_pages} balloon page(s) are still isolated: "
                "remove_common() waits for compaction to put them back or migrate them "
                "before the mapping can go", driver=self.mapping.driver, hook="destroy")
        raise ContractViolation(
            "DRV-B1", f"deflation makes no progress: {len(b_dev_info.pages)} page(s) on the "
            "list, none isolated, none could be dequeued (remove_common() would spin "
            "forever)", driver=self.mapping.driver, hook="destroy")

    def pages(self) -> list[Page]:
        """Every page in the balloon: listed and isolated."""
        return list(self.handles.values())

    def hold(self) -> None:
        """Take the balloon mutex: every migration returns -EAGAIN until release().

        Inflating, deflating or freeing meanwhile waits for the mutex (on one
        CPU: a Deadlock).
        """
        self.balloon_lock.lock()

    def release(self) -> None:
        self.balloon_lock.unlock()

    def verify(self) -> None:
        """Check DRV-B1..B3; AssertionError lists everything that is wrong.

        Meant for quiescent moments: in the middle of a migration or a
        deflation the host and the list legitimately differ for a while.
        """
        problems: list[str] = []
        dev = self.vb_dev_info
        owned = set(self.handles.values())
        listed = set(dev.pages)
        if len(owned) != self.num_pages:
            problems.append(f"DRV-B1: {len(owned)} page(s) have handles but num_pages is "
                            f"{self.num_pages}")
        if listed - owned:
            problems.append(f"DRV-B1: {len(listed - owned)} listed page(s) have no handle")
        for page in sorted(listed, key=lambda p: p.pfn):
            if page.lru is not dev.pages:
                problems.append(f"DRV-B1: listed pfn {page.pfn:#x} has lru {page.lru!r}")
            if self.compaction:
                if page.private is not dev:
                    problems.append(f"DRV-B1: listed pfn {page.pfn:#x} has private "
                                    f"{page.private!r}")
                if not has_movable_tag(page) or page_mapping(page) is not self.mapping:
                    problems.append(f"DRV-B1: listed pfn {page.pfn:#x} is not movable with the "
                                    "balloon's mapping")
                if page_isolated(page):
                    problems.append(f"DRV-B2: listed pfn {page.pfn:#x} is PG_isolated")
        off_list = owned - listed
        if self.compaction:
            for page in sorted(off_list, key=lambda p: p.pfn):
                if not page_isolated(page):
                    problems.append(f"DRV-B2: pfn {page.pfn:#x} is neither listed nor isolated")
        if len(off_list) != dev.isolated_pages:
            problems.append(f"DRV-B2: {len(off_list)} page(s) off the list but isolated_pages "
                            f"is {dev.isolated_pages}")
        guest = {p.pfn for p in owned}
        host_only = sorted(self.host.ballooned - guest)
        guest_only = sorted(guest - self.host.ballooned)
        if host_only:
            problems.append("DRV-B3: the host holds pfn(s) the balloon does not have (leaked "
                            f"at the host): {', '.join(hex(p) for p in host_only)}")
        if guest_only:
            problems.append("DRV-B3: the balloon holds pfn(s) the host was never told about: "
                            f"{', '.join(hex(p) for p in guest_only)}")
        if self.host.anomalies:
            problems.append("DRV-B3: host saw " + "; ".join(self.host.anomalies))
        if problems:
            raise AssertionError("; ".join(problems))
