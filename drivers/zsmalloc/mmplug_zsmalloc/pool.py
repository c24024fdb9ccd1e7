"""struct zs_pool and the allocator's user-facing paths (mm/zsmalloc.c, v4.19).

zs_create_pool, zs_malloc, zs_map_object / zs_unmap_object, zs_free,
zs_destroy_pool, alloc_zspage / free_zspage / __free_zspage, and the instance
protocol mmplug drives: `store` = zs_malloc + a write mapping, `read` = a
read-only mapping, `free` = zs_free, `destroy` = free every object, then
zs_destroy_pool.  Like zram, the pool's user keeps each object's length
(`lengths`): zsmalloc itself only knows the class size.

Bugs that fixes removed can be put back per pool, `bugs={"BUG-6"}`:
- BUG-5: zs_destroy_pool does not wait for isolated zspages to drain
  (before 701d678599d0).
- BUG-6: zs_page_migrate puts an emptied zspage back on ZS_EMPTY without
  queueing the deferred free, so it stays there (before 1a87aa03597e).
- BUG-7: lock_zspage walks the subpage chain without the migrate lock
  (before 2505a981114d).

The three fixes went to the stable series that carries v4.19 (4.19.y), so
the default is v4.19 as maintained; all three bugs together give v4.19.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mmplug import NoMemory
from mmplug.kernel import (
    PAGE_SIZE,
    alloc_page,
    linear_map,
    page_locked,
    page_mapping,
    put_page,
    rwlock,
    set_page_movable,
    smp,
    spinlock,
    trylock_page,
    unlock_page,
)

from .deferred import WorkQueue, async_free_zspage
from .handle import HANDLE_SHIFT, PIN, HandleTable, obj_to_location
from .memory import zone_memory
from .sizeclass import (
    OBJ_TAG_BITS,
    OBJ_USED,
    ZS_EMPTY,
    ZS_HANDLE_SIZE,
    Fullness,
    Layout,
    SizeClass,
    Stat,
    build_size_classes,
    distinct_classes,
    huge_class_size,
)
from .waits import spin_trylock, wait_event
from .zspage import (
    ZSPAGE_MAGIC,
    StructPages,
    Zspage,
    copy_from_object,
    copy_to_object,
    get_zspage,
    init_zspage,
    obj_free,
    obj_malloc,
)

if TYPE_CHECKING:
    from mmplug import AddressSpace, Page

#: The fixed behaviours that can be undone per pool to show the bug they fixed.
KNOWN_BUGS = frozenset({"BUG-5", "BUG-6", "BUG-7"})


class ZsPool:
    """One zsmalloc pool: the instance that owns one AddressSpace (pool->inode's mapping)."""

    def __init__(self, vm: Any, mapping: AddressSpace, *, bugs: Iterable[str] = (),
                 name: str = "zram0") -> None:
        bugs = frozenset(bugs)
        unknown = bugs - KNOWN_BUGS
        if unknown:
            raise ValueError(f"unknown zsmalloc bug(s) {sorted(unknown)}; known: "
                             f"{sorted(KNOWN_BUGS)}")
        self.vm = vm
        self.mapping = mapping
        self.name = name
        self.bugs = bugs
        self.layout = Layout.for_page_size(PAGE_SIZE(vm))
        # One lock class per initialisation site, as lockdep names them.
        self.size_class: list[SizeClass] = build_size_classes(
            self.layout, lambda: spinlock(vm, "zsmalloc size_class->lock"))
        self.huge_class_size = huge_class_size(self.size_class)
        #: zs_malloc's size -> its class (size_class[get_size_class_index(size +
        #: ZS_HANDLE_SIZE)]) for every size it takes, worked out once
        self.class_by_size: list[SizeClass] = [
            self.size_class[self.layout.size_class_index(size + ZS_HANDLE_SIZE)]
            for size in range(self.layout.max_alloc_size + 1)]
        self.handles = HandleTable()
        self.struct_pages = StructPages()
        #: the zone's memory, where objects and their metadata words live
        ram = linear_map(vm)
        self.mem = zone_memory(ram)
        #: the same memory as one view from `ram_start_pfn` on (a copy's short way)
        self.ram_view, self.ram_start_pfn = ram.view, ram.start_pfn
        #: pfn_to_page() without the bounds check: every pfn here came from an allocation
        self.pfn_to_page = ram.pfn_to_page
        self.workqueue = WorkQueue()
        self.pages_allocated = 0
        self.pages_compacted = 0
        #: zspages isolated for page migration (pool->isolated_pages, 701d678599d0)
        self.isolated_pages = 0
        self.destroying = False
        self.destroyed = False
        #: every live zspage in creation order, for pages()/verify (the kernel finds them
        #: through the lists); a dict, so that iteration never depends on addresses
        self.zspages: dict[Zspage, None] = {}
        #: the user's table of object lengths (zram keeps it beside the handles)
        self.lengths: dict[int, int] = {}
        #: handles pinned through the "pin" knob
        self.knob_pins: set[int] = set()
        #: one CPU: a store's or read's map and unmap may be skipped when nothing is in
        #: the way (`_uncontended`)
        self.uniprocessor = not smp(vm)
        mapping.private_data = self

    # --- small helpers --------------------------------------------------------------
    @property
    def max_object_size(self) -> int:
        """The largest object store() takes: ZS_MAX_ALLOC_SIZE (a huge-class object)."""
        return self.layout.max_alloc_size

    def location(self, handle: int) -> tuple[Page, int]:
        """obj_to_location(handle_to_obj(handle))."""
        return obj_to_location(self.layout, self.handles.handle_to_obj(handle), self.pfn_to_page)

    def class_of(self, zspage: Zspage) -> SizeClass:
        return self.size_class[zspage.class_idx]

    def free_work(self) -> None:
        """pool->free_work: bound methods compare equal, so queueing it twice is one item."""
        async_free_zspage(self)

    def kick_deferred_free(self) -> None:
        """kick_deferred_free() / schedule_work(&pool->free_work)."""
        self.workqueue.schedule(self.free_work)

    def run_deferred_work(self) -> int:
        """Let the kworker run whatever this pool queued; returns the items run."""
        return self.workqueue.run_pending()

    def pin_tag(self, handle: int) -> None:
        """pin_tag(): bit_spin_lock on the handle's low bit.

        The uncontended case is one trylock; only a spin names what it waits for.
        """
        if self.handles.trypin(handle):
            return
        spin_trylock(self.vm, lambda: self.handles.trypin(handle),
                     f"pin_tag({handle:#x}): the object is pinned")

    # --- zspages ----------------------------------------------------------------------
    def alloc_zspage(self, cls: SizeClass) -> Zspage | None:
        """alloc_zspage(): pages_per_zspage pages, chained and threaded with free objects.

        If a page cannot be had, the ones already taken go back last first.
        """
        pages = []
        for _ in range(cls.pages_per_zspage):
            page = alloc_page(self.vm)
            if page is None:
                for p in reversed(pages):
                    put_page(p)
                return None
            pages.append(page)
        zspage = Zspage(class_idx=cls.index, lock=rwlock(self.vm, "zsmalloc zspage->lock"))
        self.struct_pages.create_page_chain(cls, zspage, pages)
        init_zspage(self.struct_pages, self.mem, cls, zspage, self.layout.page_size)
        return zspage

    def set_zspage_movable(self, zspage: Zspage) -> None:
        """SetZsPageMovable(): every subpage becomes movable, pointing at the pool's mapping."""
        for page in self.struct_pages.chain(zspage):
            if not trylock_page(page):
                raise AssertionError(f"SetZsPageMovable: fresh subpage {page.pfn:#x} is locked")
            set_page_movable(page, self.mapping)
            unlock_page(page)

    def trylock_zspage(self, zspage: Zspage) -> bool:
        """trylock_zspage(): all subpages or none."""
        taken = []
        for page in self.struct_pages.chain(zspage):
            if not trylock_page(page):
                for p in taken:
                    unlock_page(p)
                return False
            taken.append(page)
        return True

    def free_locked_zspage(self, cls: SizeClass, zspage: Zspage) -> None:
        """__free_zspage(): class->lock and every subpage's lock held; give the pages back."""
        if zspage.inuse or zspage.fullness != Fullness.ZS_EMPTY:
            raise AssertionError(f"__free_zspage of a zspage in use: {zspage!r}")
        sp = self.struct_pages
        page = zspage.first_page
        while page is not None:
            if not page_locked(page):
                raise AssertionError(
                    f"__free_zspage: subpage {page.pfn:#x} of {zspage!r} is not locked: "
                    "lock_zspage missed it (BUG-7: a subpage migrated during the walk)")
            nxt = sp.get_next_page(page)
            sp.reset_page(page)
            unlock_page(page)
            put_page(page)
            page = nxt
        zspage.magic = 0
        zspage.first_page = None
        self.zspages.pop(zspage, None)
        cls.stats[Stat.OBJ_ALLOCATED] -= cls.objs_per_zspage
        self.pages_allocated -= cls.pages_per_zspage

    def free_zspage(self, cls: SizeClass, zspage: Zspage) -> None:
        """free_zspage(): free now if every subpage lock is free, else defer."""
        if zspage.inuse:
            raise AssertionError(f"free_zspage of a zspage in use: {zspage!r}")
        if not self.trylock_zspage(zspage):
            self.kick_deferred_free()
            return
        cls.remove_zspage(zspage, Fullness.ZS_EMPTY)
        self.free_locked_zspage(cls, zspage)

    # --- the allocator ----------------------------------------------------------------
    def zs_malloc(self, size: int) -> int:
        """zs_malloc(): a handle for `size` bytes, or 0."""
        if not size or size > self.layout.max_alloc_size:
            return 0
        handles = self.handles
        handle = handles.alloc()
        cls = self.class_by_size[size]
        with cls.lock:
            zspage = cls.find_get_zspage()
            if zspage is not None:
                obj = obj_malloc(self.struct_pages, self.mem, self.layout, cls, zspage, handle)
                cls.fix_fullness_group(zspage)
                handles.words[handle >> HANDLE_SHIFT] = obj    # record_obj()
                return handle
        zspage = self.alloc_zspage(cls)
        if zspage is None:
            self.handles.free(handle)
            return 0
        with cls.lock:
            obj = obj_malloc(self.struct_pages, self.mem, self.layout, cls, zspage, handle)
            newfg = cls.get_fullness_group(zspage)
            cls.insert_zspage(zspage, newfg)
            zspage.class_idx, zspage.fullness = cls.index, newfg
            self.handles.record_obj(handle, obj)
            self.pages_allocated += cls.pages_per_zspage
            cls.stats[Stat.OBJ_ALLOCATED] += cls.objs_per_zspage
            self.zspages[zspage] = None
            # Only a fully set-up zspage may be found by the compaction scanner.
            self.set_zspage_movable(zspage)
        return handle

    def _malloc_write_one_cpu(self, data: bytes) -> int:
        """zs_malloc() of len(data) bytes from a zspage its class already has, and the copy
        through a write mapping, on one CPU with nothing in the way: the handle, or 0 with
        nothing changed, for store() to take zs_malloc() and map_write() themselves.

        zs_malloc()'s steps (mm/zsmalloc.c, v4.19) in their order: find_get_zspage(),
        obj_malloc(), fix_fullness_group(), record_obj(); then what zs_map_object(ZS_MM_WO),
        the memcpy and zs_unmap_object() leave: the bytes, after the handle word unless
        the class is huge.  On one CPU class->lock, the pin bit of a fresh handle and the
        zspage's migrate read lock are free and dropped again before the store returns,
        so they are only checked to be free.  A class without a zspage to take from
        (alloc_zspage() may fail) returns 0 before anything changes
        (drivers/zsmalloc/tests/test_zs_access.py holds both ways to the same state).
        """
        size = len(data)
        if not size or size > self.layout.max_alloc_size:
            return 0
        cls = self.class_by_size[size]
        if cls.lock.held:
            return 0
        zspage = cls.find_get_zspage()
        if zspage is None or zspage.lock.writer:
            return 0
        handle = self.handles.alloc()
        layout = self.layout
        obj = obj_malloc(self.struct_pages, self.mem, layout, cls, zspage, handle)
        if cls.fullness_by_inuse[zspage.inuse] != zspage.fullness:
            cls.fix_fullness_group(zspage)
        self.handles.words[handle >> HANDLE_SHIFT] = obj    # record_obj()
        # the object's place, as zs_map_object() finds it from obj
        loc = obj >> OBJ_TAG_BITS
        pfn = loc >> layout.obj_index_bits
        page_size = layout.page_size
        off = cls.size * (loc & layout.obj_index_mask) % page_size
        if not cls.huge:
            off += ZS_HANDLE_SIZE
        if off + size <= page_size:
            at = (pfn - self.ram_start_pfn) * page_size + off
            self.ram_view[at:at + size] = data
        else:
            copy_to_object(self.struct_pages, self.mem, self.pfn_to_page(pfn), off, data,
                           page_size)
        return handle

    def zs_free(self, handle: int) -> None:
        """zs_free(): an isolated zspage emptied here is left to putback/migration (DRV-Z5)."""
        if not handle:
            return
        if self.uniprocessor and self._free_one_cpu(handle):
            return
        handles = self.handles
        if not handles.trypin(handle):    # pin_tag(), whose uncontended case is one trylock
            self.pin_tag(handle)
        obj = handles.words[handle >> HANDLE_SHIFT]
        # obj_to_location(), inline as in _map()
        f_page = self.pfn_to_page(obj >> OBJ_TAG_BITS >> self.layout.obj_index_bits)
        zspage = get_zspage(f_page)
        zspage.lock.read_lock()
        cls = self.size_class[zspage.class_idx]
        with cls.lock:
            obj_free(self.struct_pages, self.mem, self.layout, cls, obj, self.pfn_to_page)
            fullness = cls.fix_fullness_group(zspage)
            if fullness != ZS_EMPTY:
                zspage.lock.read_unlock()
            else:
                isolated = zspage.isolated
                zspage.lock.read_unlock()
                if not isolated:
                    self.free_zspage(cls, zspage)
        handles.unpin(handle)
        handles.free(handle)

    def _free_one_cpu(self, handle: int) -> bool:
        """zs_free() on one CPU with nothing in the way: True once done, False with nothing
        changed, for zs_free() to take its steps.

        zs_free()'s steps (mm/zsmalloc.c, v4.19) in their order: obj_free() and
        fix_fullness_group() under class->lock, an emptied zspage that is not isolated
        freed (free_zspage()), the handle freed.  On one CPU the pin taken by pin_tag()
        and the migrate read lock are free and dropped again before the handle goes, so
        they are only checked to be free; class->lock is taken where free_zspage() runs
        under it.  A pinned handle, a held lock or a page that is not a zspage's returns
        False (drivers/zsmalloc/tests/test_zs_access.py holds both ways to the same state).
        """
        words = self.handles.words
        obj = words.get(handle >> HANDLE_SHIFT)
        if obj is None or obj & PIN:
            return False
        layout = self.layout
        loc = obj >> OBJ_TAG_BITS    # obj_to_location(): the allocated tag is below it
        pfn = loc >> layout.obj_index_bits
        f_page = self.pfn_to_page(pfn)
        zspage = f_page.private
        if type(zspage) is not Zspage or zspage.magic != ZSPAGE_MAGIC or zspage.lock.writer:
            return False
        cls = self.size_class[zspage.class_idx]
        if cls.lock.held:
            return False
        # obj_free(), with the page and zspage found above: the object's first word
        # links it to the zspage's free list
        f_objidx = loc & layout.obj_index_mask
        self.mem.write(f_page, cls.size * f_objidx % layout.page_size,
                       zspage.freeobj << OBJ_TAG_BITS)
        zspage.freeobj = f_objidx
        zspage.inuse -= 1
        cls.stats[OBJ_USED] -= 1
        fullness = cls.fullness_by_inuse[zspage.inuse]
        if fullness != zspage.fullness:
            cls.fix_fullness_group(zspage)
        if fullness == ZS_EMPTY and not zspage.isolated:
            with cls.lock:
                self.free_zspage(cls, zspage)
        del words[handle >> HANDLE_SHIFT]    # cache_free_handle()
        return True

    def _map(self, handle: int) -> tuple[SizeClass, Zspage, Page, int]:
        """zs_map_object()'s first half: pin, migrate read lock, locate (returns locked).

        A handle the user pinned through the "pin" knob is already held by that
        user, so its own accesses go through without pinning it again.
        """
        if handle not in self.knob_pins:
            self.pin_tag(handle)
        layout = self.layout
        # obj_to_location(handle_to_obj(handle)), inline: every access starts here
        obj = self.handles.words[handle >> HANDLE_SHIFT] >> OBJ_TAG_BITS
        page = self.pfn_to_page(obj >> layout.obj_index_bits)
        zspage = get_zspage(page)
        zspage.lock.read_lock()
        cls = self.size_class[zspage.class_idx]
        off = cls.size * (obj & layout.obj_index_mask) % layout.page_size
        if not cls.huge:    # PageHugeObject(page), which its class decides
            off += ZS_HANDLE_SIZE
        return cls, zspage, page, off

    def _unmap(self, handle: int, zspage: Zspage) -> None:
        """zs_unmap_object(): drop the migrate read lock and the pin."""
        zspage.lock.read_unlock()
        if handle not in self.knob_pins:
            self.handles.unpin(handle)

    def _uncontended(self, handle: int, length: int) -> tuple[int, int, int] | None:
        """Where in the linear map the object of `handle` lies, if _map() would pin it and
        read-lock its zspage at once: (at, head, at_next), its first `head` bytes from
        `at` and, for an object that runs into the next subpage, the rest from `at_next`
        (the start of get_next_page()'s subpage, as __zs_map_object() and
        __zs_unmap_object() split the copy); else None.

        On one CPU a map and an unmap with a copy between them leave the pin bit, the
        migrate lock and the preempt count as they found them.  Every case in which the
        two steps would do more (raise, wait for a pin, meet a held write lock, find no
        next subpage) returns None, for the caller to take them.
        """
        word = self.handles.words[handle >> HANDLE_SHIFT]
        if word & PIN:
            return None
        layout = self.layout
        obj = word >> OBJ_TAG_BITS
        page = self.pfn_to_page(obj >> layout.obj_index_bits)
        zspage = page.private
        if type(zspage) is not Zspage or zspage.magic != ZSPAGE_MAGIC or zspage.lock.writer:
            return None
        cls = self.size_class[zspage.class_idx]
        page_size = layout.page_size
        off = cls.size * (obj & layout.obj_index_mask) % page_size
        if not cls.huge:
            off += ZS_HANDLE_SIZE
        at = (page.pfn - self.ram_start_pfn) * page_size + off
        if off + length <= page_size:
            return at, length, 0
        head = page_size - off
        second = self.struct_pages.get_next_page(page)
        if second is None or length - head > page_size:
            return None
        return at, head, (second.pfn - self.ram_start_pfn) * page_size

    def map_read(self, handle: int, length: int) -> bytes:
        """zs_map_object(ZS_MM_RO) + copy out + zs_unmap_object()."""
        where = self._uncontended(handle, length) if self.uniprocessor else None
        if where is not None:
            at, head, at_next = where
            view = self.ram_view
            if head == length:
                return view[at:at + length].tobytes()
            return view[at:at + head].tobytes() + view[at_next:at_next + length - head].tobytes()
        cls, zspage, page, off = self._map(handle)
        try:
            return copy_from_object(self.struct_pages, self.mem, page, off, length,
                                    self.layout.page_size)
        finally:
            self._unmap(handle, zspage)

    def map_write(self, handle: int, data: bytes) -> None:
        """zs_map_object(ZS_MM_WO) + copy in + zs_unmap_object()."""
        n = len(data)
        where = self._uncontended(handle, n) if self.uniprocessor else None
        if where is not None:
            at, head, at_next = where
            view = self.ram_view
            if head == n:
                view[at:at + n] = data
            else:
                view[at:at + head] = data[:head]
                view[at_next:at_next + n - head] = data[head:]
            return
        cls, zspage, page, off = self._map(handle)
        try:
            copy_to_object(self.struct_pages, self.mem, page, off, data, self.layout.page_size)
        finally:
            self._unmap(handle, zspage)

    # --- the instance protocol ----------------------------------------------------------
    def store(self, data: bytes) -> int:
        """zs_malloc + write the bytes through a WO mapping."""
        if self.destroyed:
            self._check_alive()
        if len(data) > self.layout.page_size:
            raise ValueError(f"zsmalloc: object of {len(data)} bytes exceeds the largest "
                             f"class ({self.max_object_size} bytes)")
        if self.workqueue.pending:
            self.run_deferred_work()
        handle = self._malloc_write_one_cpu(data) if self.uniprocessor else 0
        if not handle:
            # zs_malloc(0) fails; an empty object takes the smallest chunk.
            handle = self.zs_malloc(max(len(data), 1))
            if not handle:
                raise NoMemory(f"zsmalloc pool {self.name}: no page for a zspage")
            if data:
                self.map_write(handle, bytes(data))
        self.lengths[handle] = len(data)
        return handle

    def read(self, handle: int) -> bytes:
        """The stored bytes, through a RO mapping."""
        if self.destroyed:
            self._check_alive()
        length = self.lengths.get(handle)
        return self.map_read(handle, self._length(handle) if length is None else length)

    def free(self, handle: int) -> None:
        """zs_free."""
        if self.destroyed:
            self._check_alive()
        if handle not in self.lengths:
            self._length(handle)    # raises the KeyError that names the pool
        if handle in self.knob_pins:
            # The pinning user frees its own object: the pin goes with it.
            self.unpin(handle)
        if self.workqueue.pending:
            self.run_deferred_work()
        self.zs_free(handle)
        del self.lengths[handle]

    def destroy(self) -> None:
        """Free every object, then zs_destroy_pool()."""
        if self.destroyed:
            return
        for handle in list(self.lengths):
            self.free(handle)
        self.zs_destroy_pool()

    def zs_destroy_pool(self) -> None:
        """zs_destroy_pool() / zs_unregister_migration(): drain isolation, flush the work.

        Fixed (701d678599d0): wait until no zspage is isolated, so the VM never
        calls back into a pool that is gone.  With bug "BUG-5" the pool is torn
        down at once.
        """
        if "BUG-5" not in self.bugs:
            self.destroying = True
            wait_event(self.vm, lambda: self.isolated_pages == 0,
                       "zs_destroy_pool: wait_for_isolated_drain")
        self.workqueue.flush(self.free_work)
        self.destroyed = True

    def compact(self) -> int:
        """zs_compact(): the pages this call freed."""
        from .compact import zs_compact
        self._check_alive()
        self.run_deferred_work()
        before = self.pages_compacted
        zs_compact(self)
        return self.pages_compacted - before

    def pages(self) -> list[Page]:
        """Every subpage of every live zspage, isolated ones included."""
        sp = self.struct_pages
        return [p for z in self.zspages for p in sp.chain(z)]

    def pin(self, handle: int) -> None:
        """Test knob: hold the object's pin bit, so its page's migration returns -EAGAIN."""
        self._length(handle)
        if not self.handles.trypin(handle):
            raise ValueError(f"handle {handle:#x} is already pinned")
        self.knob_pins.add(handle)

    def unpin(self, handle: int) -> None:
        self._length(handle)
        self.knob_pins.remove(handle)
        self.handles.unpin(handle)

    def stats(self) -> dict[str, Any]:
        """Per-class and pool totals (the kernel's /sys/kernel/debug/zsmalloc/<pool>/classes)."""
        classes = []
        for cls in distinct_classes(self.size_class):
            allocated = cls.stats[Stat.OBJ_ALLOCATED]
            if not allocated and not any(cls.fullness_list):
                continue
            classes.append({
                "class": cls.index, "size": cls.size,
                "almost_full": cls.stats[Fullness.ZS_ALMOST_FULL],
                "almost_empty": cls.stats[Fullness.ZS_ALMOST_EMPTY],
                "obj_allocated": allocated, "obj_used": cls.stats[Stat.OBJ_USED],
                "pages_used": allocated // cls.objs_per_zspage * cls.pages_per_zspage,
                "pages_per_zspage": cls.pages_per_zspage, "freeable": cls.zs_can_compact(),
            })
        return {
            "classes": classes,
            "pages_allocated": self.pages_allocated,
            "pages_compacted": self.pages_compacted,
            "objects": len(self.lengths),
            "obj_used": sum(c["obj_used"] for c in classes),
            "isolated_zspages": self.isolated_pages,
            "deferred_work_pending": len(self.workqueue.pending),
        }

    def verify(self) -> None:
        """Raise AssertionError if class lists, counters, handles or subpages disagree."""
        from .verify import verify_pool
        verify_pool(self)

    # --- internals --------------------------------------------------------------------
    def _length(self, handle: int) -> int:
        try:
            return self.lengths[handle]
        except KeyError:
            raise KeyError(f"zsmalloc pool {self.name}: no object with handle {handle!r}") from None

    def _check_alive(self) -> None:
        if self.destroyed:
            raise RuntimeError(f"zsmalloc pool {self.name} was destroyed")

    def __repr__(self) -> str:
        return (f"<ZsPool {self.name} {len(self.lengths)} objects "
                f"{self.pages_allocated} pages>")


def pool_of(page: Page) -> ZsPool:
    """The pool that owns a movable subpage: page_mapping(page)->private_data."""
    mapping = page_mapping(page)
    if mapping is None:
        raise AssertionError(f"page {page.pfn:#x} has no mapping")
    return mapping.private_data

