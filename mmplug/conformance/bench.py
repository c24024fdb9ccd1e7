"""The test bench one check runs on: a fresh VM, one driver instance, and a VM that watches.

A check drives isolation, migration and putback through the core exactly as
compaction does (mm/migrate.c: isolate_movable_page, migrate_pages,
putback_movable_pages) and calls the driver's instance protocol (store, read,
free, destroy, pages) through the instance's GuardedInstance.  What the bench
sees of the driver (the ops spy, the lru sentinels, poisoning, snapshots) is
in observation.py; what must hold of it, in invariants.py.

Anything wrong raises `CheckFailed` naming the rule; the runner turns it,
and any ContractViolation the core raises, into a FAIL.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from attrs import define, field

from ..constants import ISOLATE_ASYNC_MIGRATE, MigrateMode
from ..cpus.scheduler import Scheduler
from ..errors import ContractViolation, NoMemory
from ..instance import STORE_ERRORS, GuardedInstance
from ..journal import Journal
from ..mapping import AddressSpace
from ..migrate import (
    PageList,
    isolate_movable_page,
    migrate_pages,
    putback_movable_pages,
)
from ..page import ISOLATED, PAGE_MAPPING_MOVABLE, Page
from ..plugins import Capabilities, LoadedDriver, PluginHost
from ..vm import VM, VMConfig
from .invariants import check_all_returned, diff_bytes
from .observation import LruSentinels, OpsSpy, Poison
from .outcomes import CheckFailed, NotSupported


@define(slots=True, eq=False)
class Bench:
    """A fresh VM with one driver instance, and the helpers a check drives it with."""

    loaded: LoadedDriver
    vm: VM
    instance: Any
    guarded: GuardedInstance
    rng: random.Random
    lru: LruSentinels
    spy: OpsSpy
    #: the old pages migrations freed, poisoned and watched for writes
    poison: Poison
    #: handle -> the bytes read() must give (the stored bytes, or the first read)
    objects: dict[Any, bytes] = field(factory=dict)
    baseline_free: int = 0
    next_tag: int = 0
    #: the new pages get_new_page handed out during the last migrate()
    targets: list[Page] = field(factory=list)
    #: handle -> the journal's seq when it last read back right (what a wrong read blames)
    good: dict[Any, int] = field(factory=dict)
    #: the journal's seq when store() last succeeded (what a failing store blames)
    stored_at: int = 0

    # --- creation -----------------------------------------------------------------
    @classmethod
    def create(cls, loaded: LoadedDriver, host: PluginHost, seed: int, *,
               nr_pages: int = 1024, page_size: int = 4096, pageblock_order: int = 7,
               max_order: int = 11, callback_timeout: float | None = 2.0,
               options: dict[str, Any] | None = None, cpus: int = 1) -> Bench:
        # Several CPUs: the scheduler of mmplug.cpus, which a check runs bodies on.
        backend = Scheduler(cpus) if cpus > 1 else None
        vm = VM(VMConfig(nr_pages=nr_pages, page_size=page_size,
                         pageblock_order=pageblock_order, max_order=max_order,
                         callback_timeout=callback_timeout),
                plugins=host, cpus=backend)
        baseline = vm.zone.nr_free_pages
        instance = vm.create_from(loaded, **(options or {}))
        guarded = vm.instance_record(instance)
        lru = LruSentinels()
        spy = OpsSpy(lru)
        spy.install(guarded.mapping)
        return cls(loaded=loaded, vm=vm, instance=instance, guarded=guarded,
                   rng=random.Random(seed), lru=lru, spy=spy, poison=Poison(vm.zone),
                   baseline_free=baseline)

    @property
    def name(self) -> str:
        return self.loaded.info.name

    @property
    def caps(self) -> Capabilities:
        return self.loaded.info.capabilities

    @property
    def mapping(self) -> AddressSpace:
        return self.guarded.mapping

    @property
    def journal(self) -> Journal:
        """What the driver's migratepage and putback_page did (mmplug.journal)."""
        return self.spy.journal

    # --- the instance protocol, guarded ---------------------------------------------
    def call(self, what: str, *args: Any) -> Any:
        """instance.<what>(*args), as every instance call is made (store's documented
        errors pass through); afterwards the lru sentinels are checked."""
        documented = STORE_ERRORS if what == "store" else ()
        return self._watched(what, lambda: self.guarded.call(what, *args, expected=documented))

    def _watched(self, what: str, call: Callable[[], Any]) -> Any:
        """call(), then the lru sentinels and the poison, also after a documented error of
        store()."""
        if what == "store":
            self.journal.forget_freed()   # store() may allocate a frame a migration freed
        armed = self.poison.armed()
        try:
            ret = call()
        except STORE_ERRORS:
            self._after(what, armed)
            raise
        self._after(what, armed)
        return ret

    def _after(self, what: str, armed: list[Page]) -> None:
        """What no instance call may do to a page the VM holds isolated: touch its lru
        (ISO-4) or clear PG_isolated, even when it releases the page (REL-2, FLG-6); nor
        write into a page a migration freed (MIG-7)."""
        self.lru.verify(what)
        self.poison.verify(armed, what, self.journal)
        for page in self.vm.isolated:
            if not page.flags & ISOLATED:
                released = page.mapping == PAGE_MAPPING_MOVABLE
                raise CheckFailed("REL-2" if released else "FLG-6",
                                  f"{what}() cleared PG_isolated of a page the VM holds "
                                  "isolated: only the VM clears it, also when the driver "
                                  "releases the page", page=page, hook=what,
                                  what="PG_isolated cleared on an isolated page")

    def payload(self, size: int) -> bytes:
        """Bytes nobody else stores: a tag, then seeded random bytes."""
        self.next_tag += 1
        head = self.next_tag.to_bytes(4, "little")
        return (head + self.rng.randbytes(max(0, size - 4)))[:size] if size >= 4 else \
            self.rng.randbytes(size)

    def object_size(self) -> int:
        ps = self.vm.zone.page_size
        top = self.caps.max_object_size or ps // 8
        top = max(8, min(top, ps // 8))
        return self.rng.randint(8, top)

    def store(self, data: bytes | None = None) -> Any:
        """Store one object; NoMemory propagates, a ValueError halves the size and retries."""
        if data is None:
            data = self.payload(self.object_size())
        while True:
            try:
                handle = self._stored(data)
            except ValueError:
                if len(data) <= 8:
                    rule, after = self._suspect()
                    raise CheckFailed(rule, f"store() refused even an object of {len(data)} "
                                      f"bytes with ValueError{after}", hook="store",
                                      what="store() refuses the smallest object") from None
                data = data[:len(data) // 2]
                continue
            break
        if handle in self.objects:
            raise CheckFailed("API-1", f"store() returned handle {handle!r}, which is still in use",
                              hook="store")
        got = self.read(handle)
        if self.caps.stores_data and got != data:
            stale = self._stale_holder(data)
            if stale is not None:
                raise CheckFailed("MIG-7", f"store() put the object into pfn {stale.pfn:#x}, "
                                  "once the old page of a migration: the driver still writes "
                                  "through a pointer to it, and read() does not find the object "
                                  "there", page=stale,
                                  hook="store", what="a write into a page freed by a migration")
            raise CheckFailed("API-1", f"read() right after store() does not return the "
                              f"{len(data)} bytes stored ({diff_bytes(data, got)})", hook="read")
        self.objects[handle] = got
        self.good[handle] = self.stored_at = self.journal.seq
        return handle

    def _suspect(self) -> tuple[str, str]:
        """Why store() fails now that it did not before: the callback that last ran since
        the last object stored (a putback that re-listed a full page: PUT-2; a migration:
        MIG-7), else the protocol's API-1; and the words that say so."""
        journal = self.journal
        since = self.stored_at
        if self.objects and max(journal.last_putback, journal.last_migration) > since:
            if journal.last_putback > journal.last_migration:
                return "PUT-2", ", which it stored before a putback_page"
            return "MIG-7", ", which it stored before a migration"
        return "API-1", ""

    def _stale_holder(self, data: bytes) -> Page | None:
        """A frame that was the old page of a migration on this bench and holds `data`, if
        one does (and `data` is long enough to be told apart): freed since, or in use
        again by whoever allocated it."""
        if len(data) < 8:
            return None
        zone = self.vm.zone
        old = {pfn for hook, pfn, rc in self.spy.results if hook == "migratepage" and rc == 0}
        for pfn in sorted(old):
            page = zone.pages[pfn - zone.start_pfn]
            if bytes(zone.page_address(page)).find(data) >= 0:
                return page
        return None

    def _stored(self, data: bytes) -> Any:
        return self._watched("store", lambda: self.guarded.store(data))

    def fill(self, n: int) -> list[Any]:
        """Store up to n objects (fewer if memory runs out)."""
        out = []
        for _ in range(n):
            try:
                out.append(self.store())
            except NoMemory:
                break
        return out

    def populate(self, min_pages: int, *, max_objects: int = 400, churn: float = 0.3) -> None:
        """Store objects until the driver owns `min_pages` pages, then free a share of them
        at random so that pages end up partly used, as they are after real use.

        Objects come in two sizes (`population_sizes`) and the churn never leaves a page
        with a single object: wherever the driver puts several objects on a page, its
        pages hold several, so a migration that moves only one of them is seen (a size-
        class allocator given objects of random sizes puts each on a page of its own).
        """
        sizes = self.population_sizes()
        alone = 0   # stores in a row that each took a page of their own
        for _ in range(max_objects):
            npages = len(self.pages())
            if npages >= min_pages and (len(self.objects) >= 2 * npages or alone >= 3):
                break
            try:
                self.store(self.payload(self.rng.choice(sizes)))
            except NoMemory:
                break
            alone = alone + 1 if len(self.pages()) > npages else 0
        if churn:
            self._churn(churn)
        # The churn may have emptied (and released) every page: a check needs some.
        for _ in range(max_objects):
            if self.pages() and self.objects:
                break
            try:
                self.store()
            except NoMemory:
                break

    def population_sizes(self) -> list[int]:
        """Two object sizes for a population: between 1/32 and 1/8 of a page where the
        driver takes them, so that a page holds from 8 to 32 objects of one size."""
        ps = self.vm.zone.page_size
        top = max(8, min(self.caps.max_object_size or ps, ps // 8))
        low = min(max(8, ps // 32), top)
        return [self.rng.randint(low, top) for _ in range(2)]

    def _by_page(self) -> dict[int, list[Any]]:
        """pfn -> the objects that page alone holds, in the order they were stored."""
        on_page: dict[int, list[Any]] = {}
        for handle in self.objects:
            pages = self.pages_of(handle)
            if len(pages) == 1:
                on_page.setdefault(pages[0].pfn, []).append(handle)
        return on_page

    def thin(self, keep: int = 1) -> None:
        """Free every object but the first `keep` of each page: the sparse pages compaction
        is for (objects that span pages, or cannot be told apart, stay)."""
        for handles in self._by_page().values():
            for handle in handles[keep:]:
                self.free(handle)

    def _churn(self, share: float) -> None:
        """Free about `share` of the objects at random, never the second-last of a page."""
        on_page = self._by_page()
        page_of = {h: pfn for pfn, handles in on_page.items() for h in handles}
        for handle in list(self.objects):
            if self.rng.random() >= share:
                continue
            pfn = page_of.get(handle)
            if pfn is not None:
                mates = on_page[pfn]
                if len(mates) <= 2:
                    continue   # the page keeps two objects at least
                mates.remove(handle)
            self.free(handle)

    def capacity(self, limit: int = 256) -> int:
        """How many new objects the driver stores before it needs another page: the free
        space it still offers (what putback and migration must give back, PUT-2)."""
        start = len(self.pages())
        for n in range(limit):
            try:
                self.store()
            except NoMemory:
                return n
            if len(self.pages()) > start:
                return n
        return limit

    def isolate_populated(self, min_pages: int) -> list[Page]:
        """populate(), then isolate every page; the isolated pages (NotSupported if none)."""
        self.populate(min_pages)
        done, _ = self.isolate_all()    # a refusal the driver may not make raises (ISO-6)
        if not done:
            raise NotSupported("no page of the driver could be isolated")
        return done

    def free(self, handle: Any) -> None:
        self._watched("free", lambda: self.guarded.free(handle))
        del self.objects[handle]

    def read(self, handle: Any) -> bytes:
        got: bytes = self._watched("read", lambda: self.guarded.read(handle))
        return got

    def pages(self) -> list[Page]:
        got: list[Page] = self._watched("pages", self.guarded.pages)
        return got

    def page_holding(self, data: bytes) -> Page | None:
        """The driver page whose contents hold `data` (for error messages), if one does."""
        if len(data) < 8:
            return None
        for p in self._safe_pages():
            if bytes(self.vm.zone.page_address(p)).find(data) >= 0:
                return p
        return None

    def pages_of(self, handle: Any) -> list[Page]:
        """The pages whose contents hold this object's bytes (empty if they cannot be told)."""
        data = self.objects[handle]
        if len(data) < 8 or not self.caps.stores_data:
            return []
        return [p for p in self._safe_pages()
                if bytes(self.vm.zone.page_address(p)).find(data) >= 0]

    def pages_holding(self, handles: Iterable[Any]) -> dict[int, Any]:
        """pfn -> one of `handles` whose bytes that page alone holds (objects that span
        pages, or too short to be told apart, are left out)."""
        out: dict[int, Any] = {}
        for handle in handles:
            pages = self.pages_of(handle)
            if len(pages) == 1:
                out.setdefault(pages[0].pfn, handle)
        return out

    def moved_while_held(self, held: dict[int, Any], state: str, since: int = 0) -> None:
        """MIG-8: no page that held an object in use (`state`: "pinned", "mapped";
        pages_holding) was migrated by a callback after the `since`-th the spy recorded:
        its user still reaches the object at the old page's address."""
        for hook, pfn, rc in self.spy.results[since:]:
            if hook == "migratepage" and rc == 0 and pfn in held:
                raise CheckFailed(
                    "MIG-8", f"migratepage moved pfn {pfn:#x} while object {held[pfn]!r} on "
                    f"it was {state}: whoever holds it still reaches it at the old page; "
                    f"migratepage must fail while an object of the page is {state} "
                    "(-EAGAIN, as zsmalloc does for a pinned object)",
                    hook="migratepage", what=f"migratepage moves a page with a {state} object")

    def _safe_pages(self) -> list[Page]:
        try:
            return self.guarded.pages()
        except ContractViolation:
            return []

    # --- knobs ------------------------------------------------------------------------
    def has_knob(self, knob: str) -> bool:
        return knob in self.caps.knobs

    def need_knob(self, knob: str) -> None:
        if not self.has_knob(knob):
            raise NotSupported(f"the driver declares no {knob!r} knob")

    # --- isolation, migration, putback through the core ------------------------------------
    def isolate(self, page: Page, mode: int = ISOLATE_ASYNC_MIGRATE) -> bool:
        """isolate_movable_page(); on success link the page's lru to a sentinel."""
        refusals = len(self.spy.refusals)
        rc = isolate_movable_page(self.vm, page, mode)
        if rc != 0:
            if len(self.spy.refusals) > refusals:
                self.refusal_allowed(page)
            return False
        self.lru.link(page)
        return True

    def refusal_allowed(self, page: Page | None = None) -> None:
        """ISO-6: a driver that declares it never refuses isolation did refuse (`page`, or
        the first page the spy saw refused)."""
        if self.caps.may_refuse_isolation or not self.spy.refusals:
            return
        if page is None:
            page = self.vm.zone.pages[self.spy.refusals[0] - self.vm.zone.start_pfn]
        raise CheckFailed("ISO-6", "isolate_page refused a page but the driver declares "
                          "may_refuse_isolation=False", page=page, hook="isolate_page")

    def isolate_all(self) -> tuple[list[Page], list[Page]]:
        """Isolate every page the driver owns: (isolated, refused)."""
        done: list[Page] = []
        refused: list[Page] = []
        for page in self.pages():
            (done if self.isolate(page) else refused).append(page)
        return done, refused

    def to_list(self, pages: Iterable[Page]) -> PageList:
        """Move isolated pages from their sentinels onto a migration list (cc->migratepages)."""
        return self.lru.to_list(pages)

    def new_page(self, page: Page, private: Any) -> Page | None:
        """get_new_page: a fresh page from the zone, remembered for the checks."""
        newpage = self.vm.alloc_page()
        if newpage is not None:
            self.targets.append(newpage)
        return newpage

    def migrate(self, plist: PageList, mode: int = MigrateMode.SYNC, *,
                get_new_page: Callable[[Page, Any], Page | None] | None = None,
                put_new_page: Callable[[Page, Any], None] | None = None,
                putback: bool = True) -> int:
        """migrate_pages() over the list, then putback_movable_pages() if anything is left."""
        self.targets = []
        rc = migrate_pages(self.vm, plist, get_new_page or self.new_page, put_new_page, None,
                           mode)
        self.poison.fill(self.lru.freed())
        if putback and plist:
            putback_movable_pages(self.vm, plist)
        self.lru.forget_done(self.vm)
        return rc

    def putback(self, plist: PageList) -> None:
        putback_movable_pages(self.vm, plist)
        self.lru.forget_done(self.vm)

    def putback_isolated(self) -> None:
        """Give back every page still isolated by this bench."""
        left = self.lru.still_isolated()
        if left:
            self.putback(self.to_list(left))
        self.lru.forget_done(self.vm)

    def destroy(self) -> None:
        """destroy() with its REL-3 checks, then every page must be back."""
        self.objects.clear()
        self.guarded.destroy()
        check_all_returned(self)
