"""The driver-facing protocol of a z3fold pool (what the VM and the suite call).

store = z3fold_alloc + map + copy + unmap (zswap_frontswap_store);
read = map + copy the stored length + unmap (zswap_frontswap_load);
free = z3fold_free; destroy = free every object, wait for isolated pages to
come back, then z3fold_destroy_pool; shrink = zpool's z3fold_zpool_shrink.
z3fold does not know object lengths (zswap keeps them in its entries), so
the instance keeps them per handle.

The pool's kworkers (compact_wq, release_wq) run before each store, free and
shrink, and when asked (`run_workqueues`): a page's pending compaction is
visible in between, as it is in the kernel until the worker gets to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mmplug import NoMemory
from mmplug.kernel import ENOMEM, GFP_KERNEL, page_isolated, schedule_point

from .access import load_object, read_mapped, store_object, z3fold_map, z3fold_unmap
from .alloc import z3fold_alloc, z3fold_alloc_one_cpu, z3fold_free
from .flags import PAGE_CLAIMED, PAGE_STALE, test_bit
from .handles import handle_to_buddy, handle_to_z3fold_header, is_headless_handle
from .pool import Z3foldPool
from .reclaim import z3fold_reclaim_page

#: how many schedule points destroy() waits for isolated pages to come back
DESTROY_WAIT_POINTS = 1000


class Z3fold(Z3foldPool):
    """A z3fold pool as an mmplug driver instance.

    Options: `bugs` (a set of "BUG-13", "BUG-14", "BUG-15": reproduce the
    pre-fix behaviour), `gfp` (the allocation flags; by default GFP_KERNEL,
    since z3fold does not declare malloc_support_movable to zswap), `evict`
    (evict(pool, handle) -> int, the zpool user's writeback for reclaim).
    """

    def __init__(self, vm: Any, mapping: Any, *, bugs: Iterable[str] = (),
                 gfp: int = GFP_KERNEL, evict: Any = None) -> None:
        super().__init__(vm, mapping, bugs=bugs, gfp=gfp, evict=evict)
        #: live handle -> stored length (zswap_entry->length)
        self.objects: dict[int, int] = {}
        #: handle -> maps held through the "map" knob
        self.held_maps: dict[int, int] = {}

    # --- the protocol ------------------------------------------------------------------
    def store(self, data: bytes) -> int:
        size = len(data)
        if size > self.geometry.page_size:
            raise ValueError(f"z3fold: object of {size} bytes exceeds the page size "
                             f"{self.geometry.page_size} (-ENOSPC)")
        if not size:
            raise ValueError("z3fold: objects of 0 bytes are refused (-EINVAL)")
        if self.compact_wq.items or self.release_wq.items:
            self.run_workqueues()
        handle = z3fold_alloc_one_cpu(self, data) if self.uniprocessor else None
        if handle is not None:
            if handle in self.objects:
                raise AssertionError(f"z3fold_alloc returned live handle {handle:#x} again")
            self.objects[handle] = size
            return handle
        rc, handle = z3fold_alloc(self, size, self.gfp)
        if rc == -ENOMEM:
            raise NoMemory("z3fold: no page for a new object")
        if rc:
            raise ValueError(f"z3fold_alloc of {size} bytes failed with {rc}")
        if handle in self.objects:
            raise AssertionError(f"z3fold_alloc returned live handle {handle:#x} again")
        store_object(self, handle, bytes(data))
        self.objects[handle] = size
        return handle

    def read(self, handle: int) -> bytes:
        return load_object(self, handle, self.objects[handle])

    def free(self, handle: int) -> None:
        # Taken out of the index first, in one step: of two CPUs freeing (a user and
        # reclaim's writeback), exactly one goes on, as zswap's tree lock decides.
        if self.objects.pop(handle, None) is None:
            raise KeyError(f"z3fold: no live object with handle {handle:#x}")
        if self.compact_wq.items or self.release_wq.items:
            self.run_workqueues()
        if self.held_maps:
            for _ in range(self.held_maps.pop(handle, 0)):
                z3fold_unmap(self, handle)
        z3fold_free(self, handle)

    def destroy(self) -> None:
        """Free every object, let isolated pages come back, then z3fold_destroy_pool()."""
        if self.destroyed:
            return
        for handle in list(self.objects):
            for _ in range(self.held_maps.pop(handle, 0)):
                z3fold_unmap(self, handle)
            del self.objects[handle]
            z3fold_free(self, handle)
        # Like zsmalloc's fix for BUG-5: the pool may not go while the VM holds one of
        # its pages or is isolating one (claimed, not yet PG_isolated); on several CPUs
        # the compactor puts it back or migrates it meanwhile, and the new page's
        # compaction work drops the reference isolation left.
        for _ in range(DESTROY_WAIT_POINTS):
            if not self.busy_pages():
                break
            self.run_workqueues()
            schedule_point(self.vm, "z3fold_destroy_pool: wait for isolated pages")
        self.destroy_pool()

    def pages(self) -> list[Any]:
        return [z.page for z in tuple(self.headers.values())] + list(self.headless.values())

    def verify(self) -> None:
        from .verify import verify_pool
        verify_pool(self)

    # --- knobs -------------------------------------------------------------------------
    def map(self, handle: int) -> None:
        """Keep the object mapped: its page refuses isolation and migration is -EBUSY."""
        if handle not in self.objects:
            raise KeyError(f"z3fold: no live object with handle {handle:#x}")
        z3fold_map(self, handle)
        self.held_maps[handle] = self.held_maps.get(handle, 0) + 1

    def unmap(self, handle: int) -> None:
        count = self.held_maps.get(handle, 0)
        if not count:
            raise KeyError(f"z3fold: handle {handle:#x} is not mapped")
        z3fold_unmap(self, handle)
        if count == 1:
            del self.held_maps[handle]
        else:
            self.held_maps[handle] = count - 1

    # --- zpool extras --------------------------------------------------------------------
    def shrink(self, nr_pages: int, retries: int = 8) -> int:
        """z3fold_zpool_shrink(): reclaim up to `nr_pages` pages; returns how many."""
        self.run_workqueues()
        total = 0
        while total < nr_pages:
            if z3fold_reclaim_page(self, retries) < 0:
                break
            total += 1
        return total

    def live_handle_of(self, handle: int) -> int:
        """The stored object a reclaim handle (on-stack slots) stands for, as zswap finds it."""
        if is_headless_handle(handle):
            return handle
        target = (handle_to_z3fold_header(self, handle), handle_to_buddy(self, handle))
        for live in tuple(self.objects):
            if is_headless_handle(live):
                continue
            if (handle_to_z3fold_header(self, live), handle_to_buddy(self, live)) == target:
                return live
        raise KeyError(f"no live object behind reclaim handle {handle:#x}")

    def writeback_evict(self, written: dict[int, bytes]) -> Any:
        """An evict() that writes each object into `written` and frees it, as zswap does."""
        def evict(pool: Z3fold, handle: int) -> int:
            try:
                live = pool.live_handle_of(handle)
            except KeyError:
                return 0  # freed meanwhile: zswap finds no entry and has nothing to write
            length = pool.objects.get(live)
            if length is None:
                return 0
            data = read_mapped(pool, z3fold_map(pool, handle), length)
            z3fold_unmap(pool, handle)
            try:
                pool.free(live)
            except KeyError:
                return 0  # the user freed it first
            written[live] = data
            return 0
        return evict

    # --- introspection -------------------------------------------------------------------
    def busy_pages(self) -> list[Any]:
        """Live pages somebody else holds: isolated, or claimed by an isolation under way."""
        return [z.page for z in tuple(self.headers.values())
                if not test_bit(PAGE_STALE, z.page)
                and (test_bit(PAGE_CLAIMED, z.page) or page_isolated(z.page))]

    def isolated_pages(self) -> list[Any]:
        return [z.page for z in tuple(self.headers.values()) if page_isolated(z.page)]

    def header_of_handle(self, handle: int) -> Any:
        """The header a live handle points at now (tests, verify)."""
        return handle_to_z3fold_header(self, handle)

    def handles(self) -> Iterable[int]:
        return self.objects.keys()
