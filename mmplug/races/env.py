"""What a race scenario's code sees: one run's VM, driver instance and bookkeeping.

A scenario drives the driver only through the instance protocol (store, read,
free, destroy, pages, and a driver's own methods through `call`), each call
made through the instance's GuardedInstance, and the VM only as compaction
does (isolate_movable_page, migrate_pages, putback_movable_pages).  The end
of every run is checked by `check_common`, whatever the scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import define, field

from ..constants import (
    GFP_HIGHUSER_MOVABLE,
    ISOLATE_ASYNC_MIGRATE,
    ISOLATE_UNEVICTABLE,
    MigrateMode,
)
from ..cpus.schedule import NondeterminismError
from ..cpus.scheduler import Scheduler
from ..errors import ContractViolation, Deadlock, NoMemory
from ..instance import GuardedInstance
from ..journal import LEAKED, Journal, blame_bad_read, blame_leak, rule_named
from ..migrate import (
    PageList,
    isolate_movable_page,
    migrate_pages,
    putback_movable_pages,
)
from ..page import (
    BUDDY,
    ISOLATED,
    LOCKED,
    LRU,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_MOVABLE,
    TAIL,
    Page,
)
from ..plugins import Capabilities
from ..vm import VM

#: what ends a run of several CPUs from inside driver code: it passes through every call
RUN_ENDINGS: tuple[type[BaseException], ...] = (Deadlock, NondeterminismError)


@define(slots=True, eq=False)
class RaceEnv:
    """One run's VM, driver instance and bookkeeping; the helpers scenarios call.

    `instance` is the driver's instance itself (a scenario may look at its
    state); `objects` maps every live handle to the bytes stored under it;
    `targets` are the pages the compactors go for (setup picks them); `notes`
    is the scenario's own scratch space.
    """

    vm: VM
    instance: Any
    driver: str
    capabilities: Capabilities
    sched: Scheduler
    #: how every call into the instance is made (mmplug.instance)
    guarded: GuardedInstance
    objects: dict[Any, bytes] = field(factory=dict)
    targets: list[Page] = field(factory=list)
    notes: dict[str, Any] = field(factory=dict)
    #: cpu -> the migrate lists it holds right now (ISO-5): a page on one of them is
    #: isolated by that cpu; a migrated page leaves its list, so a reused frame does not count
    isolating: dict[int, list[PageList]] = field(factory=dict)
    #: what the driver's migratepage and putback_page did (what a symptom is blamed on)
    journal: Journal = field(factory=Journal)

    @classmethod
    def create(cls, vm: VM, instance: Any, sched: Scheduler) -> RaceEnv:
        guarded = vm.instance_record(instance)
        guarded.passes = RUN_ENDINGS
        info = guarded.loaded.info
        env = cls(vm, instance, info.name, info.capabilities, sched, guarded)
        env.journal.install(guarded.mapping)
        return env

    @property
    def cpu(self) -> int:
        return self.sched.current().cpu

    # --- the driver protocol, with errors that name the driver (API-1) ---
    def call(self, method: str, *args: Any) -> Any:
        """instance.<method>(*args): a method of the driver's own (e.g. a balloon's
        deflate), made as every call into the instance is."""
        ret = self.guarded.call(method, *args)
        self.lru_untouched(method)
        return ret

    def lru_untouched(self, method: str) -> None:
        """ISO-4: a page on a compactor's migrate list still has its lru on that list after
        the driver's `method` returned (the VM takes it off the list before it calls the
        driver about it, so a page on a list is no business of the driver's)."""
        for lists in self.isolating.values():
            for held in lists:
                for page in held.pages:
                    if page.lru is not held:
                        # a page the driver released meanwhile: the release's mistake
                        released = page.mapping == PAGE_MAPPING_MOVABLE
                        raise ContractViolation(
                            "REL-2" if released else "ISO-4",
                            f"page.lru of an isolated page{' it released' if released else ''}"
                            f" was changed during {method} on cpu{self.cpu} (the VM left "
                            f"{held!r}, found {page.lru!r})", driver=self.driver, hook=method,
                            page=page)

    def store(self, data: bytes) -> Any:
        self.journal.forget_freed()   # store() may allocate a frame a migration freed
        handle = self.guarded.store(data)
        self.lru_untouched("store")
        if handle in self.objects:
            raise ContractViolation("API-1", f"store() returned handle {handle!r}, which is "
                                    "still in use", driver=self.driver, hook="store")
        self.objects[handle] = bytes(data)
        return handle

    def store_objects(self, n: int, size: int = 48) -> None:
        """Setup: store `n` distinct objects; their pages are the targets and their
        handles `notes["handles"]`."""
        for i in range(n):
            self.store(self.payload(i, size))
        self.targets = self.pages()
        self.notes["handles"] = sorted(self.objects)

    def read(self, handle: Any) -> bytes:
        """read(handle), checked against what was stored: wrong bytes after a successful
        migration are the migration's (MIG-7), else the protocol's (API-1)."""
        got = self.guarded.read(handle)
        self.lru_untouched("read")
        want = self.objects[handle]
        if self.capabilities.stores_data and got != want:
            rule = blame_bad_read(self.journal, 0, "API-1")
            raise ContractViolation(rule, f"read({handle}) on cpu{self.cpu} returned "
                                    f"{got[:16]!r}... instead of the {len(want)} bytes "
                                    "stored (a reader saw a page being migrated or freed)",
                                    driver=self.driver, hook="read")
        return got

    def free(self, handle: Any) -> None:
        self.objects.pop(handle)
        self.guarded.free(handle)
        self.lru_untouched("free")

    def free_all(self) -> None:
        """Free every object setup stored (`notes["handles"]`)."""
        for handle in self.notes["handles"]:
            self.free(handle)

    def pages(self) -> list[Page]:
        return self.guarded.pages()

    def payload(self, n: int, size: int = 48) -> bytes:
        """Distinct, recognisable bytes for object `n` (never all zero)."""
        size = min(size, self.capabilities.max_object_size or size)
        return bytes((n * 37 + i * 11 + 1) & 0xFF or 1 for i in range(size))

    def destroy(self) -> None:
        """Tear the instance down; nothing may still lead to it (REL-3, BUG-5)."""
        self.objects.clear()
        self.guarded.destroy()

    # --- the VM side ---
    def new_page(self, page: Page, private: Any) -> Page | None:
        """get_new_page for migrate_pages: any free page (as compaction_alloc does)."""
        return self.vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE, ignore_watermark=True)

    def put_new_page(self, page: Page, private: Any) -> None:
        self.vm.cpus.put_page(page)

    def isolate(self, pages: Sequence[Page] | None = None,
                mode: MigrateMode = MigrateMode.SYNC) -> PageList:
        """The migrate scanner over `pages` (default: targets): what it isolated (ISO-1, ISO-5).

        Only pages that look movable and not isolated are tried, as
        isolate_migratepages_block does; two CPUs holding the same page
        isolated at once is an ISO-5 violation.
        """
        vm = self.vm
        cpu = self.cpu
        iso_mode = ISOLATE_UNEVICTABLE | (ISOLATE_ASYNC_MIGRATE if mode == MigrateMode.ASYNC
                                          else 0)
        lst = PageList(f"cpu{cpu}.migratepages")
        self.isolating.setdefault(cpu, []).append(lst)
        for page in self.targets if pages is None else pages:
            if (page.flags & (LRU | ISOLATED)
                    or page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE):
                continue
            if isolate_movable_page(vm, page, iso_mode) != 0:
                continue
            for other, lists in self.isolating.items():
                if other != cpu and any(page in held.pages for held in lists):
                    raise ContractViolation("ISO-5", f"cpu{cpu} isolated a page cpu{other} "
                                            "holds isolated", driver=self.driver, page=page)
            lst.add(page)
        return lst

    def migrate(self, lst: PageList, mode: MigrateMode = MigrateMode.SYNC) -> int:
        """migrate_pages, then putback of whatever is left (MIG-9)."""
        rc = 0
        if lst:
            rc = migrate_pages(self.vm, lst, self.new_page, self.put_new_page, None, mode)
            if rc:
                putback_movable_pages(self.vm, lst)
        self._done(lst)
        return rc

    def _done(self, lst: PageList) -> None:
        lists = self.isolating.get(self.cpu, [])
        if lst in lists:
            lists.remove(lst)

    def putback(self, lst: PageList) -> None:
        putback_movable_pages(self.vm, lst)
        self._done(lst)

    def compact(self, mode: MigrateMode = MigrateMode.SYNC) -> int:
        """Isolate the targets and migrate them: one compactor's round."""
        return self.migrate(self.isolate(mode=mode), mode)

    def isolate_then_putback(self) -> None:
        """Isolate the targets, then give them back: a compaction that gave up."""
        self.putback(self.isolate(mode=MigrateMode.SYNC))


class Leaked(ContractViolation):
    """Pages in use that nobody owns after a run; `what` names the finding as the
    conformance bench does, so that both are the same violation."""

    what = LEAKED


def check_common(env: RaceEnv) -> None:
    """What must hold after any scenario, whatever the interleaving."""
    vm = env.vm
    drv = env.driver
    if vm.warnings:
        w = vm.warnings[0]
        raise ContractViolation(w.rule, f"WARN_ON_ONCE fired: {w.message}", driver=w.driver,
                                hook=w.hook)
    if vm.isolated:
        page = next(iter(vm.isolated))
        raise ContractViolation("PUT-3", f"{len(vm.isolated)} page(s) still isolated after "
                                "every CPU finished", driver=drv, page=page)
    for page in vm.zone.pages:
        if page.flags & LOCKED:
            raise ContractViolation("LCK-2", "a page is still locked after every CPU finished",
                                    driver=drv, page=page)
        if page.flags & ISOLATED and not page.flags & LRU:
            raise ContractViolation("PUT-3", "a page is still PG_isolated after every CPU "
                                    "finished", driver=drv, page=page)
    held = env.sched.held_locks()
    if held:
        raise ContractViolation("LCK-2", f"lock(s) still held after every CPU finished: "
                                f"{', '.join(held)}", driver=drv)
    if env.guarded.destroyed:
        return
    for handle in sorted(env.objects):
        env.read(handle)
    failed = env.guarded.verify()
    if failed is not None:
        # the driver's own rule when its verify() names one (DRV-*)
        raise ContractViolation(rule_named(failed, "API-1"), f"the driver's verify() fails "
                                f"after the race: {failed}", driver=drv, hook="verify")
    for page in env.pages():
        if page._refcount <= 0:
            journal = env.journal
            rule = "MIG-7" if journal.migrated_away(page) or journal.moved_here(page) \
                else "REF-1"
            raise ContractViolation(rule, "the driver lists a page with no reference "
                                    "(freed under it)", driver=drv, page=page)
    leaked = vm.unclaimed_pages()
    if leaked:
        raise Leaked(blame_leak(env.journal, leaked[0]),
                     f"{len(leaked)} page(s) in use that nobody owns (leaked)", driver=drv,
                     page=leaked[0])
    check_stores_into_used_pages(env)


#: the object check_stores_into_used_pages stores: a payload number no setup uses
AFTER_RACE = 200


def check_stores_into_used_pages(env: RaceEnv) -> None:
    """After the race the driver still stores, and into a page in use.

    A driver whose structures a race left pointing at a page it released (a
    free() whose changes a concurrent migratepage overwrote, say) puts the next
    object into free memory: it reads back right, and nothing else shows it.
    Blamed on the migration (MIG-7) when that page was the old or new page of
    one in this run, else on the release (REL-1).
    """
    if not env.capabilities.stores_data:
        return
    journal = env.journal
    migrated = {*journal.migrated_from, *journal.migrated_to, *journal.freed_sources}
    data = env.payload(AFTER_RACE)
    try:
        env.store(data)
    except NoMemory:
        return
    zone = env.vm.zone
    holders = []
    at = zone.mem.find(data)    # one search over the zone's memory, not a copy per page
    while at >= 0:
        holders.append(zone.pages[at // zone.page_size])
        at = zone.mem.find(data, at + 1)
    if holders and all(p.flags & BUDDY or (p._refcount == 0 and not p.flags & TAIL)
                       for p in holders):
        page = holders[0]
        raise ContractViolation(
            "MIG-7" if page.pfn in migrated else "REL-1",
            f"after the race store() put a new object into pfn {page.pfn:#x}, which is free: "
            "the driver's structures still lead to a page it released",
            driver=env.driver, hook="store", page=page)
