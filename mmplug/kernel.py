"""The kernel functions a driver calls, under their mmplug names.

    from mmplug.kernel import set_page_movable, clear_page_movable, lock_page, ...

Each is the model of the kernel function named in its docstring; the table
in docs/kernel-names.md maps every kernel name to its mmplug name.  This is the
whole of what a driver calls: besides it a driver imports only `mmplug` (the
hook markers, DriverInfo, Capabilities, the errors), and it reaches the VM only
through these functions (its locks through `spinlock(vm, name)` and the like,
the page size through `PAGE_SIZE(vm)`, frames through `pfn_to_page`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import frozen

from . import page as _page
from .constants import (  # noqa: F401  (re-exported for drivers)
    EAGAIN,
    EBUSY,
    EINVAL,
    ENOMEM,
    ENOSPC,
    ENOSYS,
    GFP_ATOMIC,
    GFP_DIRECT_RECLAIM,
    GFP_HIGHMEM,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOIO,
    GFP_NORETRY,
    GFP_RETRY_MAYFAIL,
    ISOLATE_ASYNC_MIGRATE,
    ISOLATE_UNEVICTABLE,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
)
from .cpus.single import SingleCPU as _SingleCPU
from .errors import ContractViolation
from .page import (  # noqa: F401
    LOCKED as _LOCKED,
    PAGE_MAPPING_MOVABLE,
    SLAB_OR_TAIL as _SLAB_OR_TAIL,
    Page,
    has_movable_tag,
    page_count,
    page_locked,
    page_mapping,
)

if TYPE_CHECKING:
    from .vm import VM


# On one plain CPU (`SingleCPU`, whose page operations are PageOperations' own) the
# usual case of each is done in place: a driver calls these once or more per page it
# stores or migrates, and the backend's call was half their cost.  Anything else (the
# page locked, a reference missing or about to be the last, another backend) is the
# backend's, which raises or frees as it always does.

def trylock_page(page: Page) -> bool:
    """trylock_page(): take PG_locked if it is free; never sleeps."""
    cpus = page.zone.cpus
    flags = page.flags
    # (the usual flags tested for before a mask, which costs more; + and - set and clear a
    # bit known clear or set, for the same reason)
    if type(cpus) is _SingleCPU and (not flags or not flags & _LOCKED):
        page.flags = flags + _LOCKED
        return True
    return cpus.trylock_page(page)


def lock_page(page: Page) -> None:
    """lock_page(): take PG_locked, sleeping until it is free."""
    page.zone.cpus.lock_page(page)


def unlock_page(page: Page) -> None:
    """unlock_page()."""
    cpus = page.zone.cpus
    flags = page.flags
    if type(cpus) is _SingleCPU and (flags == _LOCKED or flags & _LOCKED):
        page.flags = flags - _LOCKED
        return
    cpus.unlock_page(page)


def get_page(page: Page) -> None:
    """get_page(): take a reference."""
    cpus = page.zone.cpus
    if type(cpus) is _SingleCPU and page._refcount > 0:
        page._refcount += 1
        return
    cpus.get_page(page)


def get_page_unless_zero(page: Page) -> bool:
    """get_page_unless_zero(): a reference, unless the page is being freed."""
    return page.zone.cpus.get_page_unless_zero(page)


def put_page(page: Page) -> None:
    """put_page(): drop a reference; the last one frees the page."""
    cpus = page.zone.cpus
    if type(cpus) is _SingleCPU and page._refcount > 1:
        page._refcount -= 1
        return
    cpus.put_page(page)


def PAGE_SIZE(vm: VM) -> int:
    """PAGE_SIZE: bytes per page.  A constant of a kernel build; here each VM has its own
    (VMConfig.page_size, a workload's page_size), so it takes the VM."""
    return vm.zone.page_size


def page_to_pfn(page: Page) -> int:
    """page_to_pfn(): the page frame number of a page."""
    return page.pfn


def pfn_to_page(vm: VM, pfn: int) -> Page:
    """pfn_to_page(): the page of a frame number of the VM's zone.

    The kernel does not check (a bad pfn is a bad pointer); here it is a
    ValueError, so a driver's stale pfn is found where it is used.
    """
    zone = vm.zone
    if not zone.start_pfn <= pfn < zone.end_pfn:
        raise ValueError(f"pfn_to_page: pfn {pfn:#x} is outside the zone "
                         f"[{zone.start_pfn:#x}, {zone.end_pfn:#x})")
    return zone.pfn_to_page(pfn)


@frozen(slots=True)
class LinearMap:
    """The direct map of the VM's memory: page `pfn` is at byte (pfn - start_pfn) * page_size.

    On x86-64, page_address() is __va(PFN_PHYS(pfn)): a fixed offset in one
    linear mapping of all RAM.  A driver that keeps words in its pages (as
    zsmalloc does) may index `view` directly instead of making a page view per
    access; the bytes are those page_address() shows.  `pfn_to_page` is the
    lookup without pfn_to_page()'s bounds check, for pfns the driver got from
    its own allocations.
    """

    view: memoryview
    start_pfn: int
    page_size: int
    pfn_to_page: Callable[[int], Page]


def linear_map(vm: VM) -> LinearMap:
    """The VM's memory as one linear map (see LinearMap)."""
    zone = vm.zone
    return LinearMap(zone.view, zone.start_pfn, zone.page_size, zone.pfn_to_page)


def pfn_valid(vm: VM, pfn: int) -> bool:
    """pfn_valid(): whether `pfn` is a frame of the VM's zone (pfn_to_page would find it)."""
    zone = vm.zone
    return zone.start_pfn <= pfn < zone.end_pfn


def smp(vm: VM) -> bool:
    """IS_ENABLED(CONFIG_SMP), as the VM runs it: whether another simulated CPU can run
    between two steps of a driver.  False on a one-CPU VM, where, as in a kernel built
    without SMP, a lock nobody else can hold costs nothing but its debug checks: a
    driver may skip a lock and unlock pair with nothing to wait for between them."""
    return vm.cpus.schedules


def smp_processor_id(vm: VM) -> int:
    """smp_processor_id(): the simulated CPU running now (0 on a one-CPU VM)."""
    return vm.cpus.current().cpu


def alloc_page(vm: VM, gfp: int = GFP_HIGHUSER_MOVABLE) -> Page | None:
    """alloc_page(gfp): one page with one reference, or None.  A gfp that allows direct
    reclaim may sleep: not under a spinlock (prepare_alloc_pages' might_sleep_if,
    mm/page_alloc.c; LCK-1)."""
    cpus = vm.cpus
    cpus.point("alloc_page")
    if gfp & GFP_DIRECT_RECLAIM and cpus.current().preempt_count:
        raise ContractViolation("LCK-1", "alloc_page() with a gfp that may sleep "
                                "(__GFP_DIRECT_RECLAIM) while a spinlock is held (might_sleep "
                                "in atomic context); allocate before taking it, or GFP_ATOMIC")
    return vm.zone.alloc_pages(0, gfp)


# Flag operations are schedule points: on several CPUs another one may look at
# the page between a driver's flag changes (page-flags.h ops are single atomics).
# A backend that never switches CPUs (`schedules` False: one CPU) is not called for
# them at all, since these run once or more per page a driver stores or migrates.

def set_page_movable(page: Page, mapping: Any) -> None:
    """__SetPageMovable() (mm/compaction.c): page locked, mapping untagged (FLG-4)."""
    cpus = page.zone.cpus
    if cpus.schedules:
        cpus.point("__SetPageMovable", page)
    if page.flags != _LOCKED and not page.flags & _LOCKED:
        raise ContractViolation("FLG-4", "__SetPageMovable() on a page that is not locked",
                                page=page)
    try:
        word = mapping.handle
        tagged = word & PAGE_MAPPING_MOVABLE
    except (AttributeError, TypeError):
        # (a try costs nothing until it raises: the usual call pays no type test)
        raise ContractViolation(
            "FLG-4", f"__SetPageMovable() with {type(mapping).__name__} {mapping!r:.60}, not an "
            "address space: pass the AddressSpace the instance was created with (the "
            "`mapping` its factory received, or migratepage's `mapping`)", page=page) from None
    if tagged:
        raise ContractViolation("FLG-4", "__SetPageMovable() with a mapping that already carries "
                                "PAGE_MAPPING_MOVABLE", page=page)
    page.mapping = word + PAGE_MAPPING_MOVABLE       # (the tag bit is known clear)


def clear_page_movable(page: Page) -> None:
    """__ClearPageMovable() (mm/compaction.c): keep only the movable bit (FLG-5).

    Leaving 0x2 behind is what lets the VM see later that the driver released
    a page it had isolated: `has_movable_tag` stays true, `page_movable` turns false.
    """
    cpus = page.zone.cpus
    if cpus.schedules:
        cpus.point("__ClearPageMovable", page)
    flags = page.flags
    if flags != _LOCKED and not flags & _LOCKED:
        raise ContractViolation("FLG-5", "__ClearPageMovable() on a page that is not locked",
                                page=page)
    # PageMovable(): its usual case, a word naming a live address space on a page neither
    # slab nor tail, in place (a word of another tag names none: handles are 4-aligned)
    word = page.mapping
    space = page.zone.mappings.get(word - PAGE_MAPPING_MOVABLE)
    ops = space.a_ops if space is not None else None
    if (ops is None or ops.isolate_page is None  # type: ignore[redundant-expr]
            or (flags != _LOCKED and flags & _SLAB_OR_TAIL)) \
            and _page.movable_mapping(page) is None:
        raise ContractViolation("FLG-5", "__ClearPageMovable() on a page that is not PageMovable",
                                page=page)
    page.mapping = PAGE_MAPPING_MOVABLE     # the tag alone: PageMovable() found it there


def page_movable(page: Page) -> bool:
    """PageMovable() (mm/compaction.c): must hold the page lock (FLG-3)."""
    cpus = page.zone.cpus
    if cpus.schedules:
        cpus.point("PageMovable", page)
    return _page._page_movable(page)


def page_isolated(page: Page) -> bool:
    """PageIsolated(): a lockless read that another CPU may change right after (FLG-6)."""
    cpus = page.zone.cpus
    if cpus.schedules:
        cpus.point("PageIsolated", page)
    return _page._page_isolated(page)


def set_page_reclaim(page: Page) -> None:
    """SetPageReclaim() (include/linux/page-flags.h): PG_reclaim for its users under
    writeback.  It is PG_isolated too: a movable driver never sets it (ISO-3, FLG-6)."""
    cpus = page.zone.cpus
    if cpus.schedules:
        cpus.point("SetPageReclaim", page)
    page.flags |= _page.RECLAIM


def clear_page_reclaim(page: Page) -> None:
    """ClearPageReclaim() (include/linux/page-flags.h)."""
    cpus = page.zone.cpus
    if cpus.schedules:
        cpus.point("ClearPageReclaim", page)
    page.flags &= ~_page.RECLAIM


def page_address(page: Page) -> memoryview:
    """page_address() / kmap(): the page's bytes, writable."""
    return page.zone.page_address(page)


def copy_highpage(to: Page, frm: Page) -> None:
    """copy_highpage(to, from): copy a whole page (a point: readers may run meanwhile)."""
    zone = to.zone
    cpus = zone.cpus
    if cpus.schedules:
        cpus.point("copy_highpage", frm)
    # Zone.copy_page(), in place: one memmove inside the zone's mapping, once a migration
    ps = zone.page_size
    start = zone.start_pfn
    zone.mem.move((to.pfn - start) * ps, (frm.pfn - start) * ps, ps)


def page_private(page: Page) -> Any:
    """page_private()."""
    return page.private


def set_page_private(page: Page, value: Any) -> None:
    """set_page_private()."""
    page.private = value


def spinlock(vm: VM, name: str) -> Any:
    """spin_lock_init(): a spinlock for the driver's own structures."""
    return vm.cpus.spinlock(name)


def rwlock(vm: VM, name: str) -> Any:
    """rwlock_init()."""
    return vm.cpus.rwlock(name)


def mutex(vm: VM, name: str) -> Any:
    """mutex_init(): a sleeping lock."""
    return vm.cpus.mutex(name)


def WARN_ONCE(vm: VM, tag: str, message: str, *, page: Page | None = None,
              mapping: Any = None) -> None:
    """WARN_ONCE() (include/asm-generic/bug.h): the first time a site fires it is
    recorded in vm.warnings under `tag` (the driver's own, or a rule id), and the
    driver goes on."""
    vm.warn_once(tag, message, page=page, mapping=mapping)


def count_vm_event(vm: VM, name: str, n: int = 1) -> None:
    """count_vm_event(s)(): one of /proc/vmstat's events (include/linux/vm_event_item.h)."""
    vm.vmstat.count(name, n)


def schedule_point(page_or_vm: Any, what: str) -> None:
    """cond_resched(): a place where another simulated CPU may run."""
    cpus = page_or_vm.zone.cpus if isinstance(page_or_vm, Page) else page_or_vm.cpus
    # "cond_resched" marks a voluntary yield: the scheduler's default policy moves on
    cpus.point(f"cond_resched: {what}", page_or_vm)
