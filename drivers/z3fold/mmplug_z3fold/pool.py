"""struct z3fold_pool: the pool's state, addresses, and create/destroy.

mm/z3fold.c (v6.0): z3fold_create_pool() sets up the pool lock, the stale
lock, per-CPU arrays of NCHUNKS unbuddied lists, the LRU and stale lists,
the slots cache and two single-threaded workqueues (compact_wq for page
compaction, release_wq for freeing stale pages); z3fold_destroy_pool()
destroys compact_wq before release_wq because pending compaction may queue a
release (the fix for BUG-15).

One pool is one driver instance; it owns one AddressSpace (the v5.x
pool->inode) whose private_data is the pool.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Iterable

from mmplug import ContractViolation
from mmplug.kernel import (
    GFP_KERNEL, PAGE_SIZE, WARN_ONCE, mutex, pfn_to_page, pfn_valid, rwlock, smp_processor_id,
    spinlock,
)

from .geometry import DIRECT_MAP, Geometry
from .handles import SlotsCache
from .header import Z3foldHeader
from .lists import BuddyList, PageLru
from .workqueue import Work, Workqueue

#: the bugs a pool can be asked to reproduce (each has its fixed behaviour by default)
KNOWN_BUGS = MappingProxyType({
    "BUG-13": "readers do not check PAGE_MIGRATED: a reader can map the old page while "
              "migration copies and frees it",
    "BUG-14": "reclaim evicts a page's objects without a header reference of its own: "
              "freeing the last object releases the page under reclaim",
    "BUG-15": "z3fold_destroy_pool destroys release_wq before compact_wq: pending compaction "
              "queues a release on a dead workqueue",
    "newpage-claimed": "as v6.0 ships: the new page inherits PAGE_CLAIMED from isolation, so "
                       "its queued compaction skips it and it never takes objects again",
})



class Z3foldPool:
    """struct z3fold_pool and the model's registries (headers by pfn, headless pages)."""

    def __init__(self, vm: Any, mapping: Any, *, bugs: Iterable[str] = (),
                 gfp: int = GFP_KERNEL, evict: Any = None, name: str = "z3fold") -> None:
        bugs = frozenset(bugs)
        unknown = sorted(bugs - KNOWN_BUGS.keys())
        if unknown:
            raise ValueError(f"unknown z3fold bug(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(KNOWN_BUGS))}")
        self.vm = vm
        self.mapping = mapping
        mapping.private_data = self
        self.geometry = Geometry.for_page_size(PAGE_SIZE(vm))
        self.bugs = bugs
        self.gfp = gfp
        #: pool->ops->evict (zpool's evict, e.g. zswap writeback); None: reclaim is -EINVAL
        self.evict = evict
        self.name = name
        self.lock = spinlock(vm, f"{name}.pool.lock")
        self.stale_lock = spinlock(vm, f"{name}.pool.stale_lock")
        #: per-CPU arrays of NCHUNKS unbuddied lists, indexed by free chunks
        self.unbuddied: dict[int, list[BuddyList]] = {}
        self.lru = PageLru(f"{name}.lru")
        self.stale = BuddyList(f"{name}.stale")
        self.pages_nr = 0
        self.slots_cache = SlotsCache(self)
        self.compact_wq = Workqueue(f"{name}.compact_wq", vm)
        self.release_wq = Workqueue(f"{name}.release_wq", vm)
        from .release import free_pages_work
        self.work = Work(free_pages_work, self)
        #: every non-headless page's header, by pfn (page_address() of a z3fold page)
        self.headers: dict[int, Z3foldHeader] = {}
        #: HEADLESS pages by pfn: they have no header
        self.headless: dict[int, Any] = {}
        self.destroyed = False

    # --- locks of the pool's own structures ----------------------------------------------
    def new_spinlock(self, name: str) -> Any:
        return spinlock(self.vm, name)

    def new_rwlock(self, name: str) -> Any:
        return rwlock(self.vm, name)

    def new_mutex(self, name: str) -> Any:
        return mutex(self.vm, name)

    # --- addresses ----------------------------------------------------------------------
    def virt(self, page: Any) -> int:
        """page_address(page) as an address."""
        return DIRECT_MAP + page.pfn * self.geometry.page_size

    def virt_to_page(self, addr: int) -> Any:
        """virt_to_page()."""
        pfn = (addr - DIRECT_MAP) // self.geometry.page_size
        return pfn_to_page(self.vm, pfn)

    def header_at(self, addr: int) -> Z3foldHeader:
        """(struct z3fold_header *)(addr & PAGE_MASK): the header of a page the pool owns."""
        pfn = (addr - DIRECT_MAP) // self.geometry.page_size
        zhdr = self.headers.get(pfn)
        if zhdr is None:
            page = pfn_to_page(self.vm, pfn) if pfn_valid(self.vm, pfn) else None
            raise ContractViolation("REF-1", f"a handle points at pfn {pfn:#x}, which holds no "
                                    "z3fold header any more (use after free)", driver="z3fold",
                                    page=page)
        return zhdr

    def header_of(self, page: Any) -> Z3foldHeader:
        """page_address(page) for a page with a header."""
        return self.header_at(self.virt(page))

    # --- per-CPU lists -------------------------------------------------------------------
    def unbuddied_of(self, cpu: int) -> list[BuddyList]:
        """per_cpu_ptr(pool->unbuddied, cpu), created when a CPU first shows up."""
        lists = self.unbuddied.get(cpu)
        if lists is None:
            lists = [BuddyList(f"{self.name}.unbuddied[cpu{cpu}][{i}]")
                     for i in range(self.geometry.nchunks)]
            self.unbuddied[cpu] = lists
        return lists

    def this_cpu(self) -> int:
        """smp_processor_id()."""
        return smp_processor_id(self.vm)

    # --- diagnostics -----------------------------------------------------------------------
    def warn(self, message: str, page: Any = None) -> None:
        """WARN_ON() inside z3fold: recorded once on the VM."""
        WARN_ONCE(self.vm, "z3fold", message, page=page, mapping=self.mapping)

    # --- workqueues --------------------------------------------------------------------------
    def run_workqueues(self) -> int:
        """Let the pool's kworkers catch up: compaction first, then releases."""
        if self.destroyed or not (self.compact_wq.items or self.release_wq.items):
            return 0
        return self.compact_wq.run_pending() + self.release_wq.run_pending()

    def destroy_pool(self) -> None:
        """z3fold_destroy_pool(): drain compact_wq, then release_wq (BUG-15 fix).

        With BUG-15 selected the order is the pre-fix one: release_wq is
        destroyed first, so compaction work that drops a page's last
        reference queues its release on a dead workqueue.
        """
        if "BUG-15" in self.bugs:
            self.release_wq.destroy()
            self.compact_wq.destroy()
        else:
            self.compact_wq.destroy()
            self.release_wq.destroy()
        self.slots_cache.destroyed = True
        self.destroyed = True
