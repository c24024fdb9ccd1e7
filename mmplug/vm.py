"""The VM: one zone, its counters, the address spaces and the driver instances.

A VM is what a driver instance lives in: `vm.create_driver(name)` creates an
AddressSpace with that driver's callbacks and calls the driver's factory with
it.  The VM also keeps what the kernel spreads over globals: the CPU backend
(CPUs and locks), the vmstat counters, WARN_ON_ONCE records, and the pages
currently isolated.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from attrs import field, fields, frozen

from .constants import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from .cpus.backend import CpuBackend
from .cpus.single import SingleCPU
from .errors import UsageError
from .instance import GuardedInstance
from .mapping import AddressSpace, MovableOps
from .page import (
    BUDDY,
    LRU,
    PAGE_MAPPING_ANON,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_MOVABLE,
    SLAB,
    TAIL,
    WRITEBACK,
    Page,
)
from .plugins import Listeners, LoadedDriver, PluginHost
from .vmstat import VmStat
from .watchdog import DEFAULT_LIMIT, guarded_call, movable_calls
from .zone import Zone

#: Where address-space handles start: a kernel direct-map address, 64-byte aligned.
_HANDLE_BASE = 0xFFFF888000100000
_HANDLE_STRIDE = 0x40


#: The kernel the model follows unless a VMConfig option below says otherwise.
KERNEL_BASELINE = "v4.19"


@frozen(slots=True)
class KernelOption:
    """What a newer-kernel option of VMConfig models: the release and commit it comes from."""

    version: str
    commit: str
    summary: str


def _newer(version: str, commit: str, summary: str) -> Any:
    """A VMConfig field for newer-kernel behaviour: off, that is v4.19, by default."""
    return field(default=False, metadata={"kernel": KernelOption(version, commit, summary)})


@frozen(slots=True)
class VMConfig:
    """The shape of the simulated machine, and the kernel it runs.

    The model is v4.19.  Every behaviour of a newer kernel is an option here,
    off by default, and names the release and commit it models
    (`kernel_options()` lists them; `mmplug compare --kernel-version` prints them).
    """

    nr_pages: int = 4096
    page_size: int = 4096
    pageblock_order: int = 9
    max_order: int = 11
    #: min watermark in pages; None derives it as the kernel does from the zone size
    min_free_pages: int | None = None
    #: seconds one driver call may run before it is reported as hung (None: no limit)
    callback_timeout: float | None = DEFAULT_LIMIT
    #: direct reclaim reports progress, as on a machine with page cache to reclaim (the
    #: model holds none and frees nothing): the allocator's slow path then retries
    #: compaction and raises its priority (should_compact_retry).  False: a machine with
    #: nothing to reclaim, where v4.19 gives up after one SYNC_LIGHT round.
    reclaim_progress: bool = True

    # --- newer-kernel behaviour (default: v4.19) ---------------------------------------
    #: isolate_movable_page() skips PageSlab pages before touching their lock (BUG-1)
    slab_fix: bool = _newer("v6.2", "8b8817630ae8",
                            "isolate_movable_page() skips PageSlab pages before their page lock")
    #: isolate_freepages() samples: after a pageblock that gave no free page the stride of
    #: isolate_freepages_block() doubles, up to COMPACT_CLUSTER_MAX (v4.19: every pfn)
    free_scan_stride: bool = _newer(
        "v5.1", "4fca9730c51d", "isolate_freepages() samples pageblocks that give no free "
        "page: isolate_freepages_block()'s stride doubles up to COMPACT_CLUSTER_MAX")
    #: compact_zone() sets cc->rescan when the migrate scanner resumes in the pageblock it
    #: last migrated from; isolate_migratepages_block() then takes the rest of the block
    #: at once (v4.19: at most COMPACT_CLUSTER_MAX pages a round)
    rescan_block: bool = _newer(
        "v5.1", "804d3121ba5f", "a pageblock the migrate scanner comes back to is isolated "
        "in one round (cc->rescan), not COMPACT_CLUSTER_MAX pages at a time")
    #: compact_*_scanned counts every page of an isolated free block or compound page
    #: (v4.19: one per block)
    scan_counts_isolated: bool = _newer(
        "v6.1", "b717d6b93b54", "the scanners count each page of an isolated free block or "
        "compound page as scanned, not the block once")
    #: compact_zone() zeroes cc->total_{migrate,free}_scanned, so compact_node() counts each
    #: zone's scans once (v4.19 counts the earlier zones' again with every later zone)
    zone_scan_counts: bool = _newer(
        "v5.4", "a94b525241c0", "compact_node() counts each zone's scanned pages once: "
        "compact_zone() zeroes cc->total_{migrate,free}_scanned")

    @classmethod
    def for_kernel(cls, release: str, **settings: Any) -> VMConfig:
        """The config of a machine running `release` (e.g. "6.1" or "6.1.0-57-amd64"):
        every newer-kernel option of that release or an earlier one on."""
        return cls(**kernel_settings(release), **settings)


def _release(text: str) -> tuple[int, int]:
    """"v6.1", "6.1.0-57-amd64", "6.1.192" -> (6, 1)."""
    try:
        major, minor = text.lstrip("v").split("-")[0].split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise UsageError(f"kernel release {text[:40]!r}: expected MAJOR.MINOR, e.g. 6.1") from None


def kernel_settings(release: str) -> dict[str, bool]:
    """The newer-kernel options, each on when `release` is its release or a later one."""
    want = _release(release)
    return {a.name: _release(a.metadata["kernel"].version) <= want
            for a in fields(VMConfig) if "kernel" in a.metadata}


def kernel_options(config: VMConfig | None = None) -> list[dict[str, Any]]:
    """The newer-kernel options of `config` (default: the defaults), with what each models."""
    config = config if config is not None else VMConfig()
    out = []
    for a in fields(VMConfig):
        opt = a.metadata.get("kernel")
        if opt is not None:
            out.append({"name": a.name, "value": getattr(config, a.name),
                        "kernel": opt.version, "commit": opt.commit, "summary": opt.summary})
    return out


def kernel_model(config: VMConfig | None = None) -> dict[str, Any]:
    """The kernel a run models: the baseline and every newer-kernel option's value."""
    return {"baseline": KERNEL_BASELINE, "options": kernel_options(config)}


@frozen(slots=True)
class VMWarning:
    """One WARN_ON_ONCE that fired."""

    rule: str
    message: str
    driver: str | None
    hook: str | None
    page: str | None

    def render(self) -> str:
        where = ", ".join(x for x in (f"driver {self.driver}" if self.driver else "",
                                      f"callback {self.hook}" if self.hook else "",
                                      f"page {self.page}" if self.page else "") if x)
        return f"{self.rule}: {self.message}" + (f" ({where})" if where else "")


class VM:
    """A simulated machine with one zone."""

    def __init__(self, config: VMConfig | None = None, *, plugins: PluginHost | None = None,
                 cpus: CpuBackend | None = None, **config_kw: Any) -> None:
        if config is None:
            config = VMConfig(**config_kw)
        elif config_kw:
            raise TypeError("pass either a VMConfig or keyword settings, not both")
        self.config = config
        self.cpus: CpuBackend = cpus if cpus is not None else SingleCPU()
        #: refcount checks right after migratepage are exact only on one CPU
        self.strict_refcounts = getattr(self.cpus, "nr_cpus", 1) == 1
        self.mappings: dict[int, AddressSpace] = {}
        self.vmstat = VmStat()
        self.zone = Zone(self, config.nr_pages, page_size=config.page_size,
                         pageblock_order=config.pageblock_order, max_order=config.max_order,
                         min_free_pages=config.min_free_pages)
        self.plugins = plugins
        #: the event hooks someone listens to, read when an event fires (mmplug.hookspecs)
        self.listeners = plugins.listeners if plugins is not None else Listeners()
        self.instances: list[GuardedInstance] = []
        #: isolated non-LRU page -> the address space that isolated it
        self.isolated: dict[Page, AddressSpace] = {}
        self.warnings: list[VMWarning] = []
        self._warned: set[tuple[str, str | None, str | None, str]] = set()
        self._serial = 0
        self.lru = None  # created on first use (mmplug.users.LruPages)

    # --- plugins and driver instances ------------------------------------------------
    def notify(self, listeners: Any, event: str, **kwargs: Any) -> None:
        """Broadcast `event` to its `listeners` (a pluggy hook caller), as listener code:
        under the time limit, whatever they raise a DriverError naming the event."""
        guarded_call(lambda: listeners(**kwargs), driver="event listeners", hook=event,
                     limit=self.config.callback_timeout)

    def new_address_space(self, driver: str, ops: MovableOps | None,
                          private_data: Any = None) -> AddressSpace:
        """Register an address space; its handle is what page->mapping points at (FLG-1)."""
        self._serial += 1
        handle = _HANDLE_BASE + self._serial * _HANDLE_STRIDE
        space = AddressSpace(handle=handle, driver=driver, a_ops=ops,
                             private_data=private_data, serial=self._serial)
        self.mappings[handle] = space
        return space

    def create_driver(self, name: str, /, **options: Any) -> Any:
        """Create an instance of a loaded driver (by name, module or file) on this VM."""
        if self.plugins is None:
            raise UsageError("this VM has no plugin host: create it with VM(plugins=...)")
        loaded = self.plugins.get(name)
        return self.create_from(loaded, **options)

    def create_from(self, loaded: LoadedDriver, /, **options: Any) -> Any:
        """Create an instance of an already validated driver."""
        info = loaded.info
        try:
            inspect.signature(info.factory).bind(self, None, **options)
        except TypeError as exc:
            raise UsageError(f"driver {info.name}: bad options {sorted(options)}: {exc}") from None
        except ValueError:
            pass
        ops = self._wrap_ops(loaded.ops, info.name)
        mapping = self.new_address_space(info.name, ops)
        mapping.watch = movable_calls(info.name, self.config.callback_timeout)
        instance = guarded_call(lambda: info.factory(self, mapping, **options), (),
                                driver=info.name, hook="factory",
                                limit=self.config.callback_timeout, expected=(UsageError,))
        if mapping.private_data is None:
            mapping.private_data = instance
        self.instances.append(GuardedInstance(self, loaded, instance, mapping))
        return instance

    def instance_record(self, instance: Any) -> GuardedInstance:
        """The VM's record of `instance`: the one way mmplug calls it (mmplug.instance)."""
        for rec in self.instances:
            if rec.instance is instance:
                return rec
        raise KeyError("not a driver instance of this VM")

    def destroy_driver(self, instance: Any) -> None:
        """Destroy an instance; its pages must all be gone afterwards (REL-3)."""
        self.instance_record(instance).destroy()

    def _wrap_ops(self, ops: MovableOps, driver: str) -> MovableOps:
        """The callbacks as the backend runs them; their time limit is `mapping.watch`."""
        return MovableOps(*(self.cpus.wrap_callback(getattr(ops, hook), hook, driver)
                            for hook in ("isolate_page", "migratepage", "putback_page")))

    # --- reporting ---------------------------------------------------------------------
    def warn_once(self, rule: str, message: str, *, page: Page | None = None,
                  mapping: AddressSpace | None = None, hook: str | None = None) -> None:
        """WARN_ON_ONCE: record the first time a site fires, keep going."""
        driver = mapping.driver if mapping is not None else None
        key = (rule, driver, hook, message)
        if key in self._warned:
            return
        self._warned.add(key)
        self.warnings.append(VMWarning(rule, message, driver, hook,
                                       page.describe() if page is not None else None))

    # --- memory for drivers --------------------------------------------------------------
    def alloc_page(self, gfp: int = GFP_HIGHUSER_MOVABLE) -> Page | None:
        """alloc_page(gfp): one page with one reference, or None."""
        return self.zone.alloc_pages(0, gfp)

    def alloc_pages(self, order: int, gfp: int = GFP_KERNEL) -> Page | None:
        return self.zone.alloc_pages(order, gfp)

    def wait_on_page_writeback(self, page: Page) -> None:
        """wait_on_page_writeback(): on the model the I/O completes while we wait."""
        self.cpus.point("wait_on_page_writeback", page)
        page.flags &= ~WRITEBACK

    # --- who owns what ----------------------------------------------------------------------
    def owner_of(self, page: Page) -> str:
        """"free", "slab", "lru", a driver name, "isolated" or "other" (for maps and leak
        checks)."""
        flags = page.flags
        if flags & BUDDY or (not page._refcount and not flags & TAIL):
            return "free"
        if flags & TAIL:
            return self.owner_of(page.lru)
        if flags & SLAB:
            return "slab"
        word = page.mapping
        tag = word & PAGE_MAPPING_FLAGS
        if flags & LRU or tag == PAGE_MAPPING_ANON:
            return "lru"
        if tag == PAGE_MAPPING_MOVABLE:
            space = self.mappings.get(word & ~PAGE_MAPPING_FLAGS)
            if space is not None:
                return space.driver
            mapping = self.isolated.get(page)
            return mapping.driver if mapping is not None else "other"
        return "other"

    def unclaimed_pages(self, extra: Iterable[Page] = ()) -> list[Page]:
        """Pages in use that no driver instance, slab cache or LRU owner claims (leaks)."""
        claimed: set[int] = {p.pfn for p in extra}
        for rec in self.instances:
            if rec.destroyed:
                continue
            if not rec.has("pages"):
                return []
            claimed.update(p.pfn for p in rec.pages())
        from .users import claimed_by_users
        claimed.update(claimed_by_users(self))
        out = []
        for page in self.zone.pages:
            if page._refcount and not page.flags & TAIL and page.pfn not in claimed:
                out.append(page)
        return out

