"""The test bench one check runs on: a fresh VM, one driver instance, and a VM that watches.

A check drives isolation, migration and putback through the core exactly as
compaction does (mm/migrate.c: isolate_movable_page, migrate_pages,
putback_movable_pages) and calls the driver's instance protocol (store, read,
free, destroy, pages).  The bench adds what a debugging kernel would:

- an *ops spy* between the VM and the driver's callbacks, which counts every
  call per page and, after each one, verifies that every isolated page's lru
  still holds what the VM put there (ISO-4);
- a sentinel in `page.lru` of a page isolated outside a migration list (the
  VM owns that field from isolation on), verified after every driver call;
- page poisoning of every page freed by a migration (CONFIG_PAGE_POISONING,
  mm/page_poison.c), so a driver that still reads its old page returns poison;
- snapshots of a page and of the driver's observable state, to prove that
  something "left everything as it was" (ISO-6, PUT-2).

Anything wrong raises `CheckFailed` naming the rule; the runner turns it,
and any ContractViolation the core raises, into a FAIL.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Iterable

from attrs import define, field, frozen

from ..constants import ISOLATE_ASYNC_MIGRATE, MigrateMode, errno_name
from ..errors import ContractViolation, NoMemory
from ..mapping import MovableOps
from ..migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from ..page import (
    ACTIVE, BUDDY, ISOLATED, LOCKED, LRU, PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE, RESERVED,
    SLAB, TAIL, UNEVICTABLE, WRITEBACK, Page, flag_names,
)
from ..plugins import LoadedDriver, PluginHost
from ..vm import VM, VMConfig

#: mm/page_poison.c: PAGE_POISON, what a freed page is filled with
PAGE_POISON = 0xAA

#: flags of other page users (LRU, slab, page cache I/O) a driver's page must never carry
FOREIGN_FLAGS = LRU | ACTIVE | SLAB | RESERVED | WRITEBACK | UNEVICTABLE | BUDDY

#: WARN_ON_ONCE sites of the VM that only a driver can trigger: a FAIL, not a warning.
#: ISO-3: the driver set PG_isolated itself; MIG-6: it cleared PG_isolated in migratepage.
DRIVER_WARNINGS = frozenset({"ISO-3", "MIG-6"})


class CheckFailed(ContractViolation):
    """A check found a rule broken: the rule, what was expected and what happened.

    A ContractViolation, so that one raised while a driver callback runs (the
    spy's lru check) passes through the VM with the callback named.
    """

    def __init__(self, rule: str, message: str, page: Page | None = None,
                 hook: str | None = None, page_desc: str | None = None) -> None:
        super().__init__(rule, message, hook=hook, page=page)
        if page is None and page_desc:
            self.page_desc = page_desc
            self.args = (self.render(),)


class NotSupported(Exception):
    """The check does not apply to this driver (a capability or knob it does not declare)."""


class LruSentinel:
    """What the VM links an isolated page's lru to when it is on no migration list.

    The driver must leave page.lru alone while the page is isolated (ISO-4);
    finding anything else there afterwards proves it did not.
    """

    __slots__ = ("pfn",)

    def __init__(self, pfn: int) -> None:
        self.pfn = pfn

    def __repr__(self) -> str:
        return f"<VM lru sentinel of pfn {self.pfn:#x}>"


@frozen(slots=True)
class PageSnapshot:
    """Everything of a struct page a refusal must leave unchanged (ISO-6)."""

    pfn: int
    flags: int
    refcount: int
    mapping: int
    private: Any
    lru: Any
    digest: bytes

    def diff(self, other: "PageSnapshot") -> list[str]:
        out = []
        for name in ("flags", "refcount", "mapping"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name} {a:#x} -> {b:#x}")
        if self.private is not other.private and self.private != other.private:
            out.append(f"private {self.private!r} -> {other.private!r}")
        if self.lru is not other.lru:
            out.append(f"lru {self.lru!r} -> {other.lru!r}")
        if self.digest != other.digest:
            out.append("contents changed")
        return out


@frozen(slots=True)
class DriverSnapshot:
    """The driver's observable state: every object's bytes, its pages, its own verdict."""

    objects: dict
    pfns: frozenset
    verify_error: str | None

    def diff(self, other: "DriverSnapshot") -> list[str]:
        out = []
        for h, data in self.objects.items():
            if other.objects.get(h) != data:
                out.append(f"object {h!r} reads differently")
        if self.pfns != other.pfns:
            gone = sorted(self.pfns - other.pfns)
            new = sorted(other.pfns - self.pfns)
            out.append(f"pages() changed (no longer lists {[hex(p) for p in gone]}, "
                       f"now lists {[hex(p) for p in new]})")
        if other.verify_error and not self.verify_error:
            out.append(f"verify() now fails: {other.verify_error}")
        return out


class OpsSpy:
    """Sits between the VM and a driver's callbacks: counts calls and checks lru after each."""

    def __init__(self, bench: "Bench", ops: MovableOps) -> None:
        self.bench = bench
        self.ops = ops
        self.calls: Counter = Counter()   # (hook, pfn) -> n
        self.results: list[tuple[str, int, Any]] = []
        self.refusals: list[int] = []
        #: pfns of new pages a migratepage that failed was given
        self.failed_targets: set[int] = set()

    def install(self, mapping: Any) -> None:
        mapping.a_ops = MovableOps(self.isolate_page, self.migratepage, self.putback_page)

    def isolate_page(self, page: Page, mode: int) -> bool:
        ret = self.ops.isolate_page(page, mode)
        self._record("isolate_page", page, ret)
        if ret is False:
            self.refusals.append(page.pfn)
        return ret

    def migratepage(self, mapping: Any, newpage: Page, page: Page, mode: int) -> int:
        ret = self.ops.migratepage(mapping, newpage, page, mode)
        if ret != 0:
            self.failed_targets.add(newpage.pfn)
        self._record("migratepage", page, ret)
        return ret

    def putback_page(self, page: Page) -> None:
        ret = self.ops.putback_page(page)
        self._record("putback_page", page, ret)
        return ret

    def _record(self, hook: str, page: Page, ret: Any) -> None:
        self.calls[hook, page.pfn] += 1
        self.results.append((hook, page.pfn, ret))
        self.bench.verify_lru(hook, skip=page)

    def count(self, hook: str, page: Page | None = None) -> int:
        if page is None:
            return sum(n for (h, _), n in self.calls.items() if h == hook)
        return self.calls[hook, page.pfn]

    def reset(self) -> None:
        self.calls.clear()
        self.results.clear()
        self.refusals.clear()


@define(slots=True, eq=False)
class Bench:
    """A fresh VM with one driver instance, and the helpers a check drives it with."""

    loaded: LoadedDriver
    vm: VM
    instance: Any
    mapping: Any
    rng: random.Random
    spy: OpsSpy = None  # type: ignore[assignment]
    #: handle -> the bytes read() must give (the stored bytes, or the first read)
    objects: dict = field(factory=dict)
    #: isolated page -> what the VM linked its lru to (a sentinel or a PageList)
    lru_owner: dict = field(factory=dict)
    baseline_free: int = 0
    next_tag: int = 0
    #: the new pages get_new_page handed out during the last migrate()
    targets: list = field(factory=list)

    # --- creation -----------------------------------------------------------------
    @classmethod
    def create(cls, loaded: LoadedDriver, host: PluginHost, seed: int, *,
               nr_pages: int = 1024, page_size: int = 4096, pageblock_order: int = 7,
               max_order: int = 11, callback_timeout: float | None = 2.0) -> "Bench":
        vm = VM(VMConfig(nr_pages=nr_pages, page_size=page_size,
                         pageblock_order=pageblock_order, max_order=max_order,
                         callback_timeout=callback_timeout),
                plugins=host)
        baseline = vm.zone.nr_free_pages
        instance = vm.create_from(loaded)
        rec = vm.instance_record(instance)
        bench = cls(loaded=loaded, vm=vm, instance=instance, mapping=rec.mapping,
                    rng=random.Random(seed), baseline_free=baseline)
        bench.spy = OpsSpy(bench, rec.mapping.a_ops)
        bench.spy.install(rec.mapping)
        return bench

    @property
    def name(self) -> str:
        return self.loaded.info.name

    @property
    def caps(self) -> Any:
        return self.loaded.info.capabilities

    # --- the instance protocol, guarded ---------------------------------------------
    def call(self, what: str, *args: Any) -> Any:
        """instance.<what>(*args) under the watchdog; any unexpected exception is API-1."""
        fn = getattr(self.instance, what, None)
        if fn is None or not callable(fn):
            raise CheckFailed("API-1", f"the instance has no method {what}()")
        documented = (NoMemory, ValueError) if what == "store" else ()
        try:
            ret = self.vm.call_driver(self.name, what, fn, *args, expected=documented)
        except documented:
            self.verify_lru(what)
            raise
        self.verify_lru(what)
        return ret

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
                handle = self.call("store", data)
            except ValueError:
                if len(data) <= 8:
                    raise CheckFailed("API-1", f"store() refused even an object of {len(data)} "
                                      "bytes with ValueError") from None
                data = data[:len(data) // 2]
                continue
            break
        try:
            hash(handle)
        except TypeError:
            raise CheckFailed("API-1", f"store() returned {handle!r} ({type(handle).__name__}); "
                              "a handle must be hashable (an int)", hook="store") from None
        if handle in self.objects:
            raise CheckFailed("API-1", f"store() returned handle {handle!r}, which is still in use")
        got = self.read(handle)
        if self.caps.stores_data and got != data:
            raise CheckFailed("API-1", f"read() right after store() does not return the "
                              f"{len(data)} bytes stored ({_diff_bytes(data, got)})", hook="read")
        self.objects[handle] = got
        return handle

    def fill(self, n: int) -> list:
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
        at random so that pages end up partly used, as they are after real use."""
        for _ in range(max_objects):
            if len(self.pages()) >= min_pages:
                break
            try:
                self.store()
            except NoMemory:
                break
        if churn:
            for handle in [h for h in self.objects if self.rng.random() < churn]:
                self.free(handle)
        # The churn may have emptied (and released) every page: a check needs some.
        for _ in range(max_objects):
            if self.pages() and self.objects:
                break
            try:
                self.store()
            except NoMemory:
                break

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
        done, refused = self.isolate_all()
        if refused and not self.caps.may_refuse_isolation:
            raise CheckFailed("ISO-6", "isolate_page refused a page but the driver declares "
                              "may_refuse_isolation=False", page=refused[0], hook="isolate_page")
        if not done:
            raise NotSupported("no page of the driver could be isolated")
        return done

    def free(self, handle: Any) -> None:
        self.call("free", handle)
        del self.objects[handle]

    def read(self, handle: Any) -> bytes:
        got = self.call("read", handle)
        if not isinstance(got, (bytes, bytearray, memoryview)):
            raise CheckFailed("API-1", f"read() returned {type(got).__name__}, expected bytes",
                              hook="read")
        return bytes(got)

    def verify_objects(self, rule: str, when: str) -> None:
        """Every live object reads back as it was stored (or as first read)."""
        for handle, want in self.objects.items():
            got = self.read(handle)
            if got != want:
                raise CheckFailed(rule, f"object {handle!r} reads back different bytes {when} "
                                  f"({_diff_bytes(want, got)})", page=self.page_holding(want),
                                  hook="read")

    def pages(self) -> list[Page]:
        got = self.call("pages")
        try:
            # In pfn order: a driver may keep its pages in a set, and the suite must not
            # inherit that order (same seed, same run).
            pages = sorted(got, key=lambda p: p.pfn if isinstance(p, Page) else -1)
        except TypeError:
            raise CheckFailed("API-1", f"pages() returned {type(got).__name__}, not an "
                              "iterable of pages") from None
        for p in pages:
            if not isinstance(p, Page):
                raise CheckFailed("API-1", f"pages() yielded {p!r}, not a Page")
        return pages

    def verify_driver(self, rule: str, when: str) -> None:
        fn = getattr(self.instance, "verify", None)
        if fn is None:
            return
        try:
            self.vm.call_driver(self.name, "verify", fn, expected=(AssertionError,))
        except AssertionError as exc:
            raise CheckFailed(rule, f"the driver's verify() fails {when}: {exc}") from None

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

    def _safe_pages(self) -> list[Page]:
        try:
            return self.vm.call_driver(self.name, "pages", lambda: list(self.instance.pages()))
        except ContractViolation:
            return []

    # --- knobs ------------------------------------------------------------------------
    def has_knob(self, knob: str) -> bool:
        return knob in self.caps.knobs

    def need_knob(self, knob: str) -> None:
        if not self.has_knob(knob):
            raise NotSupported(f"the driver declares no {knob!r} knob")

    # --- snapshots ------------------------------------------------------------------------
    def snapshot_page(self, page: Page) -> PageSnapshot:
        data = bytes(self.vm.zone.page_address(page))
        return PageSnapshot(page.pfn, page.flags, page._refcount, page.mapping, page.private,
                            page.lru, data)

    def snapshot_driver(self) -> DriverSnapshot:
        objects = {h: self.read(h) for h in self.objects}
        pfns = frozenset(p.pfn for p in self.pages())
        err = None
        fn = getattr(self.instance, "verify", None)
        if fn is not None:
            try:
                self.vm.call_driver(self.name, "verify", fn, expected=(AssertionError,))
            except AssertionError as exc:
                err = str(exc) or "AssertionError"
        return DriverSnapshot(objects, pfns, err)

    # --- isolation, migration, putback through the core ------------------------------------
    def isolate(self, page: Page, mode: int = ISOLATE_ASYNC_MIGRATE) -> bool:
        """isolate_movable_page(); on success link the page's lru to a sentinel."""
        rc = isolate_movable_page(self.vm, page, mode)
        if rc != 0:
            return False
        sentinel = LruSentinel(page.pfn)
        page.lru = sentinel
        self.lru_owner[page] = sentinel
        return True

    def isolate_all(self) -> tuple[list[Page], list[Page]]:
        """Isolate every page the driver owns: (isolated, refused)."""
        done, refused = [], []
        for page in self.pages():
            (done if self.isolate(page) else refused).append(page)
        return done, refused

    def verify_lru(self, hook: str, skip: Page | None = None) -> None:
        """ISO-4: every isolated page's lru still holds what the VM linked it to."""
        for page, owner in self.lru_owner.items():
            if page is skip or not page.flags & ISOLATED:
                continue  # only an isolated page's lru belongs to the VM
            if page.lru is not owner:
                raise CheckFailed("ISO-4", f"page.lru of an isolated page was changed during "
                                  f"{hook} (the VM left {owner!r}, found {page.lru!r})",
                                  page=page, hook=hook)

    def to_list(self, pages: Iterable[Page]) -> PageList:
        """Move isolated pages from their sentinels onto a migration list (cc->migratepages)."""
        plist = PageList()
        for page in pages:
            owner = self.lru_owner.get(page)
            if page.lru is not owner:
                raise CheckFailed("ISO-4", f"page.lru of an isolated page was changed (the VM "
                                  f"left {owner!r}, found {page.lru!r})", page=page)
            if isinstance(owner, PageList):
                owner.delete(page)
            page.lru = None
            plist.add(page)
            self.lru_owner[page] = plist
        return plist

    def new_page(self, page: Page, private: Any) -> Page | None:
        """get_new_page: a fresh page from the zone, remembered for the checks."""
        newpage = self.vm.alloc_page()
        if newpage is not None:
            self.targets.append(newpage)
        return newpage

    def migrate(self, plist: PageList, mode: int = MigrateMode.SYNC, *,
                get_new_page: Callable | None = None, put_new_page: Callable | None = None,
                putback: bool = True) -> int:
        """migrate_pages() over the list, then putback_movable_pages() if anything is left."""
        self.targets = []
        rc = migrate_pages(self.vm, plist, get_new_page or self.new_page, put_new_page, None,
                           mode)
        self._poison_freed()
        if putback and plist:
            putback_movable_pages(self.vm, plist)
        self._forget_done()
        return rc

    def putback(self, plist: PageList) -> None:
        putback_movable_pages(self.vm, plist)
        self._forget_done()

    def putback_isolated(self) -> None:
        """Give back every page still isolated by this bench."""
        left = [p for p in self.lru_owner if p.flags & ISOLATED]
        if left:
            self.putback(self.to_list(left))
        self._forget_done()

    def _forget_done(self) -> None:
        for page in list(self.lru_owner):
            if page not in self.vm.isolated and not page.flags & ISOLATED:
                del self.lru_owner[page]

    def _poison_freed(self) -> None:
        """PAGE_POISON over every old page a migration freed (mm/page_poison.c)."""
        zone = self.vm.zone
        for page in list(self.lru_owner):
            if page.flags & BUDDY or (page._refcount == 0 and not page.flags & TAIL):
                view = zone.page_address(page)
                view[:] = bytes([PAGE_POISON]) * len(view)

    def check_warnings(self) -> None:
        """A WARN_ON_ONCE the driver caused is a broken rule (ISO-3, MIG-6)."""
        for w in self.vm.warnings:
            if w.rule in DRIVER_WARNINGS:
                raise CheckFailed(w.rule, w.message, hook=w.hook, page_desc=w.page)

    # --- whole-instance checks ----------------------------------------------------------------
    def check_owned_pages(self, rule: str, when: str) -> list[Page]:
        """Every page pages() lists is in use, PageMovable with our mapping, unlocked, not isolated
        unless the VM isolated it (FLG-4, FLG-6)."""
        pages = self.pages()
        seen = set()
        movable = 0
        for page in pages:
            if page.pfn in seen:
                raise CheckFailed("API-1", f"pages() lists pfn {page.pfn:#x} twice {when}",
                                  page=page)
            seen.add(page.pfn)
            if page.flags & BUDDY or page._refcount <= 0:
                raise CheckFailed("MIG-7" if page.pfn in self.migrated_from() else rule,
                                  f"pages() lists a free page {when}", page=page)
            if page.mapping == 0 and not page.flags & ISOLATED:
                continue  # a page the driver never makes movable (z3fold's HEADLESS pages)
            movable += 1
            if page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE or \
                    page.mapping & ~PAGE_MAPPING_FLAGS != self.mapping.handle:
                raise CheckFailed("FLG-4", f"a page the driver owns is not __PageMovable with its "
                                  f"mapping {when}", page=page)
            if page.flags & LOCKED:
                raise CheckFailed("LCK-2", f"a page the driver owns is left locked {when}",
                                  page=page)
            if page.flags & FOREIGN_FLAGS:
                raise CheckFailed("ISO-5", f"a page the driver owns carries "
                                  f"{flag_names(page.flags & FOREIGN_FLAGS)} {when}: the "
                                  "compaction scanner would take it for another kind of page",
                                  page=page)
            if page.flags & ISOLATED and page not in self.vm.isolated:
                raise CheckFailed("FLG-6", f"a page the driver owns carries PG_isolated "
                                  f"(PG_reclaim) but the VM did not isolate it {when}", page=page)
        if pages and not movable:
            raise CheckFailed("FLG-4", f"none of the driver's {len(pages)} page(s) is movable "
                              f"{when}: __SetPageMovable was never called", page=pages[0])
        return pages

    def migrated_from(self) -> set[int]:
        """pfns the driver's migratepage reported as migrated away."""
        return {pfn for hook, pfn, rc in self.spy.results if hook == "migratepage" and rc == 0}

    def check_no_leak(self, rule: str, when: str) -> None:
        """No page is in use that neither the driver nor anybody else claims.

        A leaked page that was the source of a successful migration is the
        migration's leak (MIG-7: the driver kept its reference on the old page);
        a new page a failed migratepage was given and kept is MIG-8; any other
        is a release that forgot put_page (REL-1).
        """
        # A page released while isolated is the VM's until migration or putback ends.
        leaked = self.vm.unclaimed_pages(extra=list(self.vm.isolated))
        if leaked:
            page = leaked[0]
            if page.pfn in self.migrated_from():
                rule = "MIG-7"
            elif page.pfn in self.spy.failed_targets and not page.mapping:
                rule = "MIG-8"  # a failed migratepage kept the new page it was given
            else:
                rule = "REL-1"
            raise CheckFailed(rule, f"{len(leaked)} page(s) in use that the driver no longer "
                              f"lists in pages() {when} (leaked)", page=leaked[0])

    def destroy(self) -> None:
        """destroy() and the REL-3 checks of the VM, then every page must be back."""
        self.vm.destroy_driver(self.instance)
        self.objects.clear()
        leaked = self.vm.unclaimed_pages()
        if leaked:
            raise CheckFailed("REL-3", f"{len(leaked)} page(s) still in use after destroy()",
                              page=leaked[0], hook="destroy")
        if self.vm.zone.nr_free_pages != self.baseline_free:
            raise CheckFailed("REL-3", f"{self.baseline_free - self.vm.zone.nr_free_pages} "
                              "page(s) not returned to the zone after destroy()",
                              hook="destroy")


def _diff_bytes(want: bytes, got: bytes) -> str:
    if len(want) != len(got):
        return f"expected {len(want)} bytes, got {len(got)}"
    first = next(i for i, (a, b) in enumerate(zip(want, got)) if a != b)
    n = sum(a != b for a, b in zip(want, got))
    return f"{n} of {len(want)} bytes differ, first at offset {first}: expected " \
           f"{want[first]:#04x}, got {got[first]:#04x}"


def rc_name(rc: int) -> str:
    return errno_name(rc) if isinstance(rc, int) else repr(rc)


__all__ = ["Bench", "CheckFailed", "DRIVER_WARNINGS", "DriverSnapshot", "LruSentinel",
           "NotSupported", "OpsSpy", "PAGE_POISON", "PageSnapshot", "rc_name"]
