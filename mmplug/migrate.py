"""Non-LRU movable page migration: the state machine of mm/migrate.c, v4.19.

isolate_movable_page -> (page on a PageList) -> migrate_pages -> unmap_and_move
-> __unmap_and_move -> move_to_new_page -> a_ops->migratepage, and
putback_movable_pages for whatever is left.  The labels of the kernel
functions (out, out_putpage, out_no_isolated, out_unlock, out_unlock_both,
put_new) survive as comments where the control flow jumps to them.

Every call into a driver is checked: what it returned and what it did to the
page (ISO-2..ISO-4, MIG-7, MIG-8, PUT-1), naming the driver, the callback, the
page and the rule when something is wrong.  isolate_movable_page, migrate_pages
on one CPU, `call_migratepage` and `call_putback` make the call themselves and
pass the usual answer in place; anything else goes to `_judge_isolate` or
`_judge_migratepage`.  They also keep the callback's time limit: they store the
address space's `watch` in the thread's watchdog lane around the call
(mmplug.watchdog), so that a callback costs no wrapper frame, and a hang is
reported as the driver's, with the page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from .constants import (
    EAGAIN,
    EBUSY,
    ENOMEM,
    MIGRATE_PASSES,
    MIGRATEPAGE_SUCCESS,
    MigrateMode,
    MigrateReason,
    errno_name,
)
from .cpus.backend import PF_MEMALLOC
from .cpus.single import SingleCPU
from .errors import ContractViolation, DriverError
from .page import (
    HEAD,
    ISOLATED,
    LOCKED,
    NOT_ISOLATABLE,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_MOVABLE,
    SLAB,
    SLAB_OR_TAIL,
    TAIL,
    WRITEBACK,
    Page,
    movable_mapping,
)
from .watchdog import LANES, Lane, driver_error, new_lane, passes_through
from .zone import BAD_AT_FREE

if TYPE_CHECKING:
    from .mapping import AddressSpace
    from .vm import VM

GetNewPage = Callable[[Page, Any], "Page | None"]
PutNewPage = Callable[[Page, Any], None]


class PageList:
    """A list_head of pages linked through page->lru (cc->migratepages and the like).

    A page on the list has `page.lru is the list`: that is the sentinel the VM
    checks to see that no driver touched the lru of an isolated page (ISO-4).
    """

    __slots__ = ("pages", "name")

    def __init__(self, name: str = "migratepages") -> None:
        self.pages: list[Page] = []
        self.name = name

    def add(self, page: Page) -> None:
        """list_add_tail(&page->lru, list): at the tail."""
        page.lru = self
        self.pages.append(page)

    def add_head(self, page: Page) -> None:
        """list_add(&page->lru, list): at the head, what the compaction scanner does."""
        page.lru = self
        self.pages.insert(0, page)

    def delete(self, page: Page) -> None:
        """list_del(&page->lru)."""
        self.pages.remove(page)
        page.lru = None

    def __len__(self) -> int:
        return len(self.pages)

    def __iter__(self) -> Iterator[Page]:
        return iter(tuple(self.pages))

    def __bool__(self) -> bool:
        return bool(self.pages)

    def __repr__(self) -> str:
        return f"<PageList {self.name} of {len(self.pages)}>"


#: the page flags of migrate_pages' one-CPU path: before the driver only PG_isolated of
#: these may be set (no lock held, no writeback, no slab or tail page); after it, PG_locked
#: and PG_isolated of these (the page is freed as an order-0 page)
_UNUSUAL_BEFORE = LOCKED | WRITEBACK | SLAB | TAIL | ISOLATED
_UNUSUAL_AFTER = LOCKED | ISOLATED | HEAD
_LOCKED_ISOLATED = LOCKED | ISOLATED


# --- calling the driver ------------------------------------------------------------

def _callback_raised(mapping: AddressSpace, hook: str, page: Page, rule: str,
                     exc: BaseException) -> NoReturn:
    """Raise what a driver callback that raised `exc` ends in (called while `exc` is being
    handled): a ContractViolation the VM raised inside it, with the driver, the hook and the
    page filled in; the user's Ctrl-C or a simulated CPU unwound, as it is; anything else,
    the driver's failure of `rule`."""
    if isinstance(exc, ContractViolation):
        exc.with_context(driver=mapping.driver, hook=hook, page=page)
        raise
    if passes_through(exc):
        raise
    raise driver_error(exc, rule, driver=mapping.driver, hook=hook, page=page) from exc


def check_lru(vm: VM, page: Page, owner: Any, mapping: AddressSpace | None,
              hook: str | None) -> None:
    """ISO-4: the lru of an isolated page belongs to the VM; it must be as the VM left it.
    REL-2 when the driver has released the page meanwhile (its word keeps only the tag): a
    release leaves lru to the VM too."""
    if page.lru is not owner:
        if page.mapping == PAGE_MAPPING_MOVABLE:
            raise ContractViolation(
                "REL-2", f"page.lru of a page released while isolated was changed (found "
                f"{page.lru!r}, the VM left {owner!r}): the VM finishes a release, lru "
                "included", driver=mapping.driver if mapping else None, hook=hook, page=page)
        raise ContractViolation(
            "ISO-4", f"page.lru of an isolated page was changed (found {page.lru!r}, the VM "
            f"left {owner!r})", driver=mapping.driver if mapping else None, hook=hook, page=page)


def _judge_isolate(vm: VM, mapping: AddressSpace, page: Page, mode: int, ret: Any) -> bool:
    """What a_ops->isolate_page returned and did to the page, judged (ISO-2): `ret` if the
    driver kept the rules, else its DriverError; listeners hear of the result."""
    if ret is not True and ret is not False:
        raise DriverError("ISO-2", f"isolate_page returned {ret!r} ({type(ret).__name__}); "
                          "expected True or False", driver=mapping.driver, hook="isolate_page",
                          page=page)
    if not page.flags & LOCKED:
        raise DriverError("ISO-2", "isolate_page unlocked the page; it runs under the page "
                          "lock and must leave it held", driver=mapping.driver,
                          hook="isolate_page", page=page)
    if vm.listeners.mmplug_after_isolate_page is not None:
        vm.notify(vm.listeners.mmplug_after_isolate_page, "mmplug_after_isolate_page",
                  mapping=mapping, page=page, mode=mode, result=ret)
    return ret


def call_migratepage(vm: VM, mapping: AddressSpace, newpage: Page, page: Page,
                     mode: int) -> int:
    """a_ops->migratepage(mapping, newpage, page, mode), checked (MIG-7, MIG-8)."""
    owner = page.lru
    newref = newpage._refcount
    watch = mapping.watch
    if watch is not None:
        try:
            ln = LANES.lane
        except AttributeError:
            ln = new_lane()
        prev = ln.call
        ln.call = watch.migratepage
        ln.fresh = True
    try:
        # a_ops is None once the instance is destroyed: that call fails as the driver's
        rc = mapping.a_ops.migratepage(mapping, newpage, page, mode)  # type: ignore[union-attr]
        if watch is not None:
            ln.call = prev
    except BaseException as exc:
        if watch is not None:
            ln.call = prev
        _callback_raised(mapping, "migratepage", page, "MIG-8", exc)
    if (type(rc) is int and rc == MIGRATEPAGE_SUCCESS and page.flags & newpage.flags & LOCKED
            and page.lru is owner and page.mapping == PAGE_MAPPING_MOVABLE
            and newpage.mapping == mapping.handle + PAGE_MAPPING_MOVABLE
            and newpage._refcount > 1 and page._refcount == 1
            and vm.listeners.mmplug_after_migratepage is None):
        return rc   # the usual success, which every check of _judge_migratepage passes
    return _judge_migratepage(vm, mapping, newpage, page, mode, rc, owner, newref)


def _judge_migratepage(vm: VM, mapping: AddressSpace, newpage: Page, page: Page, mode: int,
                       rc: Any, owner: Any, newref: int) -> int:
    """What a_ops->migratepage returned and did to the pages, judged (MIG-7, MIG-8, ISO-4):
    `rc` if the driver kept the rules, else its DriverError.  `owner` is page->lru and
    `newref` newpage's refcount before the call; listeners hear of the result."""
    if type(rc) is int and rc < 0 and page.lru is owner and page.flags & newpage.flags & LOCKED:
        # the common failure: the pages must be as the driver found them, nothing else
        if newpage._refcount != newref or newpage.mapping or newpage.private or \
                page.mapping != mapping.handle | PAGE_MAPPING_MOVABLE:
            _failed_but_changed(mapping, newpage, page, rc, newref)
        if vm.listeners.mmplug_after_migratepage is not None:
            _after_migratepage(vm, mapping, newpage, page, mode, rc)
        return rc
    drv = mapping.driver
    if type(rc) is not int or rc > 0:
        raise DriverError("MIG-8", f"migratepage returned {rc!r} ({type(rc).__name__}); expected "
                          "0, -EAGAIN or a negative errno", driver=drv, hook="migratepage",
                          page=page)
    if not page.flags & LOCKED or not newpage.flags & LOCKED:
        which = "page" if not page.flags & LOCKED else "newpage"
        raise DriverError("MIG-7", f"migratepage unlocked {which}; the VM holds both locks",
                          driver=drv, hook="migratepage", page=page)
    if page.lru is not owner:
        check_lru(vm, page, owner, mapping, "migratepage")
    if rc < 0:
        _failed_but_changed(mapping, newpage, page, rc, newref)
    if rc == MIGRATEPAGE_SUCCESS:
        if page.mapping != PAGE_MAPPING_MOVABLE:
            raise DriverError("MIG-7", "migratepage returned 0 but the old page is still "
                              "movable: __ClearPageMovable(page) was not called",
                              driver=drv, hook="migratepage", page=page)
        if newpage.mapping != mapping.handle | PAGE_MAPPING_MOVABLE:
            raise DriverError("MIG-7", "migratepage returned 0 but newpage is not movable with "
                              "the same mapping: __SetPageMovable(newpage, mapping) was not "
                              "called", driver=drv, hook="migratepage", page=newpage)
        if vm.strict_refcounts:
            if newpage._refcount < 2:
                raise DriverError("MIG-7", "migratepage returned 0 without taking its own "
                                  "reference on newpage (get_page): the VM's put_page would "
                                  "free it under the driver", driver=drv, hook="migratepage",
                                  page=newpage)
            if page._refcount != 1:
                raise DriverError("MIG-7", "migratepage returned 0 but the old page still has "
                                  f"{page._refcount - 1} reference(s) besides the VM's: the "
                                  "driver did not drop its own (put_page), so it leaks",
                                  driver=drv, hook="migratepage", page=page)
    if vm.listeners.mmplug_after_migratepage is not None:
        _after_migratepage(vm, mapping, newpage, page, mode, rc)
    return rc


def _failed_but_changed(mapping: AddressSpace, newpage: Page, page: Page, rc: int,
                        newref: int) -> None:
    """MIG-8: a failed migratepage leaves newpage carrying nothing of the driver's (no
    movable mapping, no reference, no private data) and `page` as isolate_page left it,
    movable with its mapping: the VM frees newpage and puts `page` back or retries it
    (mm/migrate.c, unmap_and_move)."""
    what = []
    if newpage._refcount != newref:
        what.append(f"newpage's refcount {newref} -> {newpage._refcount} (the driver's "
                    "reference on it)")
    if newpage.mapping:
        what.append(f"newpage's mapping word {newpage.mapping:#x} (made movable)")
    if newpage.private:
        what.append(f"newpage.private {newpage.private!r:.60}")
    if page.mapping != mapping.handle | PAGE_MAPPING_MOVABLE:
        what.append(f"the old page's mapping word {page.mapping:#x} (no longer movable with "
                    "the driver's mapping)")
    if what:
        raise DriverError("MIG-8", f"migratepage failed ({errno_name(rc)}) but left "
                          f"{'; '.join(what)}: a failed migration must leave newpage carrying "
                          "nothing of the driver's and the page as isolate_page left it",
                          driver=mapping.driver, hook="migratepage",
                          page=newpage if newpage.mapping or newpage._refcount != newref
                          or newpage.private else page)


def _after_migratepage(vm: VM, mapping: AddressSpace, newpage: Page, page: Page, mode: int,
                       rc: int) -> None:
    vm.notify(vm.listeners.mmplug_after_migratepage, "mmplug_after_migratepage",
              mapping=mapping, newpage=newpage, page=page, mode=mode, result=rc)


def call_putback(vm: VM, mapping: AddressSpace, page: Page) -> None:
    """a_ops->putback_page(page), checked (PUT-2)."""
    watch = mapping.watch
    if watch is not None:
        try:
            ln = LANES.lane
        except AttributeError:
            ln = new_lane()
        prev = ln.call
        ln.call = watch.putback_page
        ln.fresh = True
    try:
        # a_ops is None once the instance is destroyed: that call fails as the driver's
        ret = mapping.a_ops.putback_page(page)  # type: ignore[union-attr]
        if watch is not None:
            ln.call = prev
    except BaseException as exc:
        if watch is not None:
            ln.call = prev
        _callback_raised(mapping, "putback_page", page, "PUT-2", exc)
    if ret is not None:
        raise DriverError("PUT-2", f"putback_page returned {ret!r}; it returns nothing",
                          driver=mapping.driver, hook="putback_page", page=page)
    if not page.flags & LOCKED:
        raise DriverError("PUT-1", "putback_page unlocked the page; the VM holds the lock "
                          "around it", driver=mapping.driver, hook="putback_page", page=page)
    if page._refcount < 2 and page.mapping == mapping.handle | PAGE_MAPPING_MOVABLE:
        # Still the driver's, so it holds a reference, and the isolation reference is the
        # VM's to drop once putback_page returns (putback_movable_pages): fewer than two
        # means the driver dropped one it did not own, and that put_page frees a page in use.
        # Other CPUs only add references, and the driver cannot release the page (REL-1)
        # while the VM holds its lock, so the bound holds on several CPUs too.
        raise DriverError("PUT-1", f"putback_page left the page with refcount {page._refcount}"
                          " though it is still the driver's: it dropped a reference it does "
                          "not own (the isolation reference is the VM's to drop)",
                          driver=mapping.driver, hook="putback_page", page=page)
    if vm.listeners.mmplug_after_putback_page is not None:
        vm.notify(vm.listeners.mmplug_after_putback_page, "mmplug_after_putback_page",
                  mapping=mapping, page=page)


# --- isolation -------------------------------------------------------------------------

def isolate_movable_page(vm: VM, page: Page, mode: int) -> int:
    """isolate_movable_page() (mm/migrate.c): 0 if isolated, else -EBUSY (ISO-1, ISO-3).

    On success the page keeps the extra reference taken here until migration
    or putback ends.  In v4.19 a page whose mapping word passes __PageMovable
    is trylocked before PageMovable finds out it is not movable: a slab page
    with such an overlay has PG_locked taken, which SLUB uses as its slab_lock
    (BUG-1).  `VMConfig.slab_fix` models v6.2's commit 8b8817630ae8, which
    skips PageSlab pages before the lock.
    """
    cpus = vm.cpus
    # one plain CPU: a reference, the lock and the unlock that cannot fail are done in place
    one_cpu = type(cpus) is SingleCPU
    ev = vm.vmstat.events
    ev["isolate_attempt"] += 1
    # Pages being freed, or just freed, are not worth the cycles.
    if one_cpu and page._refcount:
        page._refcount += 1
    elif not cpus.get_page_unless_zero(page):
        ev["isolate_fail_refcount"] += 1
        return -EBUSY
    flags = page.flags      # (no other CPU runs before the trylock: read once)
    if flags and flags & SLAB and vm.config.slab_fix:
        ev["isolate_fail_not_movable"] += 1
        cpus.put_page(page)                                     # out_putpage
        return -EBUSY
    # Checked before the lock: a page's owner assumes nobody takes PG_locked
    # of the page it just allocated.
    if page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE:
        ev["isolate_fail_not_movable"] += 1
        cpus.put_page(page)                                     # out_putpage
        return -EBUSY
    if flags and flags & SLAB:
        vm.warn_once("BUG-1", "trylock_page() on a slab page whose overlaid mapping word "
                     "passes __PageMovable: SLUB uses PG_locked as its slab_lock", page=page)
    # Never sleep: another compactor, a migration or a release may hold it.
    # (Below, `not flags or`, `flags != LOCKED and`: the page's usual flags are tested for
    # before any mask, which costs more than a comparison; + and - set and clear bits
    # known clear or set, for the same reason.)
    if one_cpu and (not flags or not flags & LOCKED):
        page.flags = flags + LOCKED
    elif not cpus.trylock_page(page):
        ev["isolate_fail_locked"] += 1
        cpus.put_page(page)                                     # out_putpage
        return -EBUSY
    # PageMovable(), the usual case in place: a word naming a live address space (a word
    # of another tag names none: handles are 4-aligned, FLG-1), on a page neither slab,
    # tail nor isolated
    mapping = vm.mappings.get(page.mapping - PAGE_MAPPING_MOVABLE)
    ops = mapping.a_ops if mapping is not None else None
    # (isolate_page is never None through the API, which mypy knows; PageMovable checks it)
    if (ops is None or ops.isolate_page is None  # type: ignore[redundant-expr]
            or (page.flags != LOCKED and page.flags & NOT_ISOLATABLE)):
        mapping = None if page.flags & ISOLATED else movable_mapping(page)
    if mapping is None:
        ev["isolate_fail_released"] += 1
        cpus.unlock_page(page)                                  # out_no_isolated
        cpus.put_page(page)
        return -EBUSY
    # a_ops->isolate_page(page, mode), under the callback's time limit (see the module's
    # docstring) and judged unless it gave the usual answer
    watch = mapping.watch
    if watch is not None:
        try:
            ln = LANES.lane
        except AttributeError:
            ln = new_lane()
        prev = ln.call
        ln.call = watch.isolate_page
        ln.fresh = True
    try:
        # a_ops is None once the instance is destroyed: that call fails as the driver's
        # (loaded, then called: see migrate_pages)
        isolate = mapping.a_ops.isolate_page  # type: ignore[union-attr]
        ret = isolate(page, mode)
        if watch is not None:
            ln.call = prev
    except BaseException as exc:
        if watch is not None:
            ln.call = prev
        _callback_raised(mapping, "isolate_page", page, "ISO-2", exc)
    if (ret is not True or (page.flags != LOCKED and not page.flags & LOCKED)
            or vm.listeners.mmplug_after_isolate_page is not None):
        ret = _judge_isolate(vm, mapping, page, mode, ret)
    if not ret:
        ev["isolate_refused"] += 1
        cpus.unlock_page(page)                                  # out_no_isolated
        cpus.put_page(page)
        return -EBUSY
    # The driver must leave PG_isolated to the VM.
    if page.flags != LOCKED and page.flags & ISOLATED:
        vm.warn_once("ISO-3", "the driver set PG_isolated itself in isolate_page",
                     page=page, mapping=mapping, hook="isolate_page")
    flags = page.flags
    vm.isolated[page] = mapping
    mapping.nr_isolated += 1
    if one_cpu and flags == LOCKED:
        page.flags = ISOLATED
    elif one_cpu and flags & LOCKED:
        page.flags = flags - LOCKED | ISOLATED
    else:
        page.flags = flags | ISOLATED
        cpus.unlock_page(page)
    ev["isolate_success"] += 1
    return 0


def _end_isolation(vm: VM, page: Page) -> AddressSpace | None:
    mapping = vm.isolated.pop(page, None)
    if mapping is not None:
        mapping.nr_isolated -= 1
    return mapping


def _released(vm: VM, page: Page) -> None:
    """The driver released the page after isolation: the VM finishes the job (REL-2)."""
    page.flags &= ~ISOLATED
    _end_isolation(vm, page)
    vm.vmstat.events["migrate_released"] += 1


# --- putback -----------------------------------------------------------------------------

def putback_movable_page(vm: VM, page: Page, mapping: AddressSpace) -> None:
    """putback_movable_page() (mm/migrate.c): page locked, movable and isolated (PUT-1);
    `mapping` is its page_mapping(), which the caller has looked up."""
    call_putback(vm, mapping, page)
    page.flags &= ~ISOLATED
    _end_isolation(vm, page)
    vm.vmstat.events["putback_movable"] += 1


def _give_back(vm: VM, page: Page) -> None:
    """Under the page lock: to the driver if it still has the page, else finish the release;
    then drop the isolation reference (the tail of putback_movable_pages and unmap_and_move).

    On one plain CPU a free page lock is taken in place, as __unmap_and_move takes it,
    unless a spinlock is held: lock_page() may sleep, which the backend reports (LCK-1).
    """
    cpus = vm.cpus
    one_cpu = type(cpus) is SingleCPU
    task = cpus.task if one_cpu else None  # type: ignore[attr-defined]
    if task is not None and not page.flags & LOCKED and not task.preempt_count:
        page.flags += LOCKED
    else:
        cpus.lock_page(page)
    # PageMovable(), the usual case in place, as in isolate_movable_page()
    mapping = vm.mappings.get(page.mapping - PAGE_MAPPING_MOVABLE)
    ops = mapping.a_ops if mapping is not None else None
    if (ops is None or ops.isolate_page is None  # type: ignore[redundant-expr]
            or page.flags & SLAB_OR_TAIL):
        mapping = movable_mapping(page)
    if mapping is not None:
        putback_movable_page(vm, page, mapping)
    else:
        _released(vm, page)
    flags = page.flags
    if one_cpu and flags & LOCKED and page._refcount > 1:
        page.flags = flags - LOCKED                 # unlock_page() and put_page(), in place
        page._refcount -= 1
    else:
        cpus.unlock_page(page)
        cpus.put_page(page)


def _movable_tag_lost(vm: VM, page: Page) -> NoReturn:
    """FLG-1: a page isolated as non-LRU movable whose mapping word no longer carries
    PAGE_MAPPING_MOVABLE.  Only __SetPageMovable() and __ClearPageMovable() write the tags,
    and a released page keeps its tag, so the driver wrote the word itself.  From here the
    kernel would take the page for an LRU page (__unmap_and_move's is_lru, move_to_new_page,
    putback_movable_pages all test __PageMovable) and migrate or put it back as one."""
    mapping = vm.isolated[page]
    raise ContractViolation(
        "FLG-1", f"the mapping word of a page isolated as non-LRU movable lost "
        f"PAGE_MAPPING_MOVABLE (found {page.mapping:#x}, tag {page.mapping & PAGE_MAPPING_FLAGS}"
        f"): only __SetPageMovable() and __ClearPageMovable() write it",
        driver=mapping.driver, page=page)


def putback_movable_pages(vm: VM, pagelist: PageList) -> None:
    """putback_movable_pages() (mm/migrate.c): give every page left on the list back (PUT-1).

    A page the driver released while isolated is not handed to the driver;
    the VM only clears PG_isolated and drops its reference (REL-2).
    """
    pages = pagelist.pages
    for page in pagelist:
        if page.lru is not pagelist:
            check_lru(vm, page, pagelist, vm.isolated.get(page), None)
        pages.remove(page)                          # pagelist.delete(page), in place
        page.lru = None
        if page.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE:
            if not page.flags & ISOLATED:
                raise ContractViolation("PUT-1", "a movable page on a migration list is not "
                                        "PG_isolated", page=page)
            _give_back(vm, page)
        else:
            if page in vm.isolated:
                _movable_tag_lost(vm, page)
            vm.zone.nr_isolated_lru -= 1
            putback_lru_page(vm, page)


def putback_lru_page(vm: VM, page: Page) -> None:
    """putback_lru_page(): back on the LRU and drop the isolation reference.

    A page its owner let go meanwhile is simply freed.
    """
    if page._refcount > 1:
        page.zone.lru_add(page)
    vm.cpus.put_page(page)


# --- migration -----------------------------------------------------------------------------

def move_to_new_page(vm: VM, newpage: Page, page: Page, mode: int) -> int:
    """move_to_new_page() (mm/migrate.c): both pages locked (MIG-6).

    A non-LRU page released by its driver after isolation counts as migrated
    and its driver is not called.  Otherwise a_ops->migratepage decides; on
    success the VM warns once if the page lost PG_isolated, then clears it.
    """
    if page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE:
        if page in vm.isolated:
            _movable_tag_lost(vm, page)
        return _move_lru_page(vm, newpage, page, mode)
    if not page.flags & ISOLATED:
        raise ContractViolation("MIG-6", "move_to_new_page() on a non-LRU page that is not "
                                "PG_isolated", page=page)
    # PageMovable(), the usual case in place, as in isolate_movable_page()
    mapping = vm.mappings.get(page.mapping - PAGE_MAPPING_MOVABLE)
    ops = mapping.a_ops if mapping is not None else None
    if (ops is None or ops.isolate_page is None  # type: ignore[redundant-expr]
            or page.flags & SLAB_OR_TAIL):
        mapping = movable_mapping(page)
    if mapping is None:
        # Released by the driver after isolation: nothing to migrate.
        _released(vm, page)
        return MIGRATEPAGE_SUCCESS
    rc = call_migratepage(vm, mapping, newpage, page, mode)
    if rc == MIGRATEPAGE_SUCCESS:
        _moved(vm, page, mapping)
    return rc


def _moved(vm: VM, page: Page, mapping: AddressSpace) -> None:
    """The end of a successful move_to_new_page() of a non-LRU page: PG_isolated cleared
    (a warning first if the driver cleared it), the isolation over, the copy counted."""
    flags = page.flags
    if not flags & ISOLATED:
        vm.warn_once("MIG-6", "migratepage returned 0 but the page is no longer "
                     "PG_isolated (the driver cleared it)", page=page, mapping=mapping,
                     hook="migratepage")
    # Cleared under the page lock so no compactor can try this page again.
    page.flags = flags & ~ISOLATED
    _end_isolation(vm, page)
    vm.vmstat.events["bytes_copied"] += vm.zone.page_size


def _move_lru_page(vm: VM, newpage: Page, page: Page, mode: int) -> int:
    """migrate_page() for an anonymous LRU page: refcount check, copy, move the mapping.

    The owner's reference moves to the new page (its page table entry), so a
    page pinned by an extra reference fails with -EAGAIN, as
    migrate_page_move_mapping() does.
    """
    owner = vm.mappings.get(page.mapping & ~PAGE_MAPPING_FLAGS)
    expected = 2  # the owner's mapping + the isolation reference
    if page._refcount != expected or owner is None:
        return -EAGAIN
    if mode != MigrateMode.SYNC_NO_COPY:
        vm.zone.copy_page(newpage, page)
        vm.vmstat.events["bytes_copied"] += vm.zone.page_size
    newpage.mapping = page.mapping
    owner.private_data.replace_page(page, newpage)
    return MIGRATEPAGE_SUCCESS


def __unmap_and_move(vm: VM, page: Page, newpage: Page, force: bool, mode: int,
                     moved: int | None = None) -> int:
    """__unmap_and_move() (mm/migrate.c): the page locks, writeback, then move (MIG-4, MIG-5).

    On one plain CPU (`SingleCPU`) a lock that is free is taken, and one that is held
    dropped, in place, as is the reference on newpage that is not the last: the
    backend's calls were a good part of the cost of a migrated page.  `moved` is
    move_to_new_page()'s result when it has run already, both locks held (migrate_pages
    on one CPU resumes here): only the unlocking is left.
    """
    cpus = vm.cpus
    one_cpu = type(cpus) is SingleCPU
    if moved is not None:
        rc = moved
        is_lru = False
    else:
        rc = -EAGAIN
        is_lru = page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE
        if one_cpu and not page.flags & LOCKED:
            page.flags += LOCKED
        elif not cpus.trylock_page(page):
            if not force or mode == MigrateMode.ASYNC:
                return rc                                        # out
            # Direct compaction must not sleep on a page lock: its holder may be
            # waiting for the very memory being compacted.
            if cpus.current().flags & PF_MEMALLOC:
                return rc                                        # out
            cpus.lock_page(page)
        if page.flags & WRITEBACK:
            # Only a fully synchronous migration waits for writeback.
            if mode not in (MigrateMode.SYNC, MigrateMode.SYNC_NO_COPY):
                cpus.unlock_page(page)                           # out_unlock
                return -EBUSY
            if not force:
                cpus.unlock_page(page)                           # out_unlock
                return rc
            vm.wait_on_page_writeback(page)
        # Nobody may reach newpage's contents before they are complete.
        if one_cpu and not newpage.flags & LOCKED:
            newpage.flags += LOCKED
        elif not cpus.trylock_page(newpage):
            cpus.unlock_page(page)                               # out_unlock
            return rc
        rc = move_to_new_page(vm, newpage, page, mode)
    if one_cpu and newpage.flags & page.flags & LOCKED:         # out_unlock_both
        newpage.flags -= LOCKED
        page.flags -= LOCKED
    else:
        cpus.unlock_page(newpage)
        cpus.unlock_page(page)
    if rc == MIGRATEPAGE_SUCCESS:
        if is_lru:
            putback_lru_page(vm, newpage)
        elif one_cpu and newpage._refcount > 1:
            newpage._refcount -= 1
        else:
            # The driver holds its own reference; this drops the allocation's.
            cpus.put_page(newpage)
    return rc


def unmap_and_move(vm: VM, get_new_page: GetNewPage, put_new_page: PutNewPage | None,
                   private: Any, page: Page, force: bool, mode: int, reason: int,
                   from_list: PageList, moved: int | None = None) -> int:
    """unmap_and_move() (mm/migrate.c): one page, one attempt (MIG-2, MIG-3, MIG-8).

    -EAGAIN leaves the page on the list for the next pass; any other result
    takes it off: migrated pages are released, failed ones are given back to
    their driver at once.  `moved`: as for __unmap_and_move().
    """
    cpus = vm.cpus
    if page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE and page in vm.isolated:
        _movable_tag_lost(vm, page)
    newpage = get_new_page(page, private)
    if newpage is None:
        vm.vmstat.events["migrate_enomem"] += 1
        return -ENOMEM
    if moved is not None:
        rc = __unmap_and_move(vm, page, newpage, force, mode, moved)
    else:
        if page.lru is not from_list:
            check_lru(vm, page, from_list, vm.isolated.get(page), None)
        if page._refcount == 1:
            # Freed from under us: only the isolation reference is left.
            if page.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE:
                cpus.lock_page(page)
                mapping = movable_mapping(page)
                if mapping is not None:
                    raise ContractViolation(
                        "REL-1", "the driver dropped its last reference to an isolated page "
                        "without __ClearPageMovable()", driver=mapping.driver, page=page)
                _released(vm, page)
                cpus.unlock_page(page)
            _put_new(vm, put_new_page, newpage, private)
            rc = MIGRATEPAGE_SUCCESS
        else:
            rc = __unmap_and_move(vm, page, newpage, force, mode)
    if rc != -EAGAIN:
        from_list.pages.remove(page)                # from_list.delete(page), in place
        page.lru = None
        if page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE:
            # NR_ISOLATED_* counts LRU pages only (BUG-3)
            vm.zone.nr_isolated_lru -= 1
    if rc == MIGRATEPAGE_SUCCESS:
        if type(cpus) is SingleCPU and page._refcount == 1 and not page.flags & HEAD:
            # the last put_page() of an order-0 page, in place: __put_page() frees it
            page._refcount = 0
            page.zone.free_pages(page, 0)
        else:
            cpus.put_page(page)
        return rc
    if rc != -EAGAIN:
        if page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE:
            putback_lru_page(vm, page)
        else:
            _give_back(vm, page)
    _put_new(vm, put_new_page, newpage, private)                # put_new
    return rc


def _given(newpage: Page | None) -> GetNewPage:
    """A get_new_page() that answers `newpage`: the one migrate_pages on one CPU already had
    when it hands a page to unmap_and_move()."""
    return lambda page, private: newpage


def _put_new(vm: VM, put_new_page: PutNewPage | None, newpage: Page, private: Any) -> None:
    if put_new_page is not None:
        put_new_page(newpage, private)
    else:
        vm.cpus.put_page(newpage)


def migrate_pages(vm: VM, from_list: PageList, get_new_page: GetNewPage,
                  put_new_page: PutNewPage | None, private: Any, mode: int,
                  reason: int = MigrateReason.COMPACTION) -> int:
    """migrate_pages() (mm/migrate.c): up to 10 passes while pages ask for a retry (MIG-1).

    Each page is preceded by cond_resched().  From the fourth pass (`pass > 2`)
    the page lock may be waited for.
    Returns the number of pages not migrated, or -ENOMEM at once if no new
    page could be had (MIG-2); pgmigrate_success/fail count pages (MIG-9).
    The caller puts back whatever is left on the list whenever this is not 0.

    On one plain CPU (`SingleCPU`) the usual migration of a non-LRU page is
    written out here: unmap_and_move(), __unmap_and_move(), move_to_new_page()
    and the judgement of a_ops->migratepage in one frame, in their order, with
    the locks and references done in place.  The page leaves that path for the
    functions themselves, at the step it has reached and with nothing done
    differently, as soon as anything is unusual: no newpage, a lock held, a
    page under writeback, released, slab or tail, a listener, or a driver
    result other than a clean success.
    """
    ev = vm.vmstat.events
    nr_failed = 0
    nr_succeeded = 0
    retry = 1
    rc = 0
    passes = 0
    cpus = vm.cpus
    task = cpus.current()
    one_cpu = type(cpus) is SingleCPU
    mappings = vm.mappings
    isolated = vm.isolated
    listeners = vm.listeners
    zone = vm.zone
    page_size = zone.page_size
    pageblock_mt = zone.pageblock_mt
    zone_start = zone.start_pfn
    pb_order = zone.pageblock_order
    pages = from_list.pages
    ln: Lane | None = None      # the thread's watchdog lane, looked up once
    # (compaction's modules import this one: its allocator is looked up here, once a call)
    from .compaction import compaction_alloc
    from_cc = get_new_page is compaction_alloc
    while passes < MIGRATE_PASSES and retry:
        retry = 0
        force = passes > 2
        for page in from_list:
            if task.need_resched:
                # cond_resched() before each page: need_resched() is answered here
                task.need_resched = False
                cpus.point("cond_resched")
            if not one_cpu:
                rc = unmap_and_move(vm, get_new_page, put_new_page, private, page,
                                    force, mode, reason, from_list)
            else:
                if from_cc and private.freepages:
                    # compaction_alloc() while cc->freepages has a page: the last one
                    private.nr_freepages -= 1
                    newpage = private.freepages.pop()
                else:
                    newpage = get_new_page(page, private)
                flags = page.flags
                word = page.mapping
                # PageMovable() in place, as in isolate_movable_page()
                mapping = mappings.get(word - PAGE_MAPPING_MOVABLE)
                ops = mapping.a_ops if mapping is not None else None
                # (a word naming an address space carries the movable tag: handles are
                # 4-aligned, FLG-1)
                if (newpage is None or ops is None
                        or ops.isolate_page is None  # type: ignore[redundant-expr]
                        or (flags != ISOLATED and flags & _UNUSUAL_BEFORE != ISOLATED)
                        or page.lru is not from_list or page._refcount < 2
                        or (newpage.flags and newpage.flags & LOCKED)):
                    rc = unmap_and_move(vm, _given(newpage), put_new_page, private, page,
                                        force, mode, reason, from_list)
                else:
                    assert mapping is not None
                    # __unmap_and_move(): both locks are free; move_to_new_page() calls
                    # the driver as call_migratepage() does
                    page.flags = flags + LOCKED
                    newpage.flags += LOCKED
                    newref = newpage._refcount
                    watch = mapping.watch
                    if watch is not None:
                        if ln is None:
                            try:
                                ln = LANES.lane
                            except AttributeError:
                                ln = new_lane()
                        prev = ln.call
                        ln.call = watch.migratepage
                        ln.fresh = True
                    try:
                        # (the callback is an attribute, not a method: loaded, then called,
                        # which the interpreter specializes where `ops.migratepage(...)` it
                        # cannot)
                        migratepage = ops.migratepage
                        rc = migratepage(mapping, newpage, page, mode)
                        if watch is not None:
                            ln.call = prev  # type: ignore[union-attr]
                    except BaseException as exc:
                        if watch is not None:
                            ln.call = prev  # type: ignore[union-attr]
                        _callback_raised(mapping, "migratepage", page, "MIG-8", exc)
                    flags = page.flags
                    if (type(rc) is int and rc == MIGRATEPAGE_SUCCESS
                            and (flags == _LOCKED_ISOLATED
                                 or flags & _UNUSUAL_AFTER == _LOCKED_ISOLATED)
                            and (newpage.flags == LOCKED or newpage.flags & LOCKED)
                            and page.lru is from_list and page.mapping == PAGE_MAPPING_MOVABLE
                            and newpage.mapping == mapping.handle + PAGE_MAPPING_MOVABLE
                            and newpage._refcount > 1 and page._refcount == 1
                            and listeners.mmplug_after_migratepage is None):
                        # the clean success: _moved(), _unlock_both() and the end of
                        # unmap_and_move(), whose last put_page() frees the page
                        flags -= _LOCKED_ISOLATED
                        page.flags = flags
                        newpage.flags -= LOCKED
                        isolated_by = isolated.pop(page, None)
                        if isolated_by is not None:
                            isolated_by.nr_isolated -= 1
                        ev["bytes_copied"] += page_size
                        newpage._refcount -= 1
                        pages.remove(page)
                        page.lru = None
                        page._refcount = 0
                        if flags and flags & BAD_AT_FREE:
                            zone.free_pages(page, 0)    # bad_page(): the rule it breaks
                        else:
                            # free_pages() in place: its checks passed, the page's words
                            # cleared, then __free_one_page() in its pageblock's lists
                            page.flags = 0
                            page.private = 0
                            page.mapping = 0
                            pfn = page.pfn
                            zone._free_one_page(
                                pfn, 0, pageblock_mt[(pfn - zone_start) >> pb_order])
                        nr_succeeded += 1
                        continue
                    # anything else: the rest of each function, from where the driver returned
                    rc = _judge_migratepage(vm, mapping, newpage, page, mode, rc, from_list,
                                            newref)
                    if rc == MIGRATEPAGE_SUCCESS:
                        _moved(vm, page, mapping)
                    rc = unmap_and_move(vm, _given(newpage), put_new_page, private, page,
                                        force, mode, reason, from_list, moved=rc)
            if rc == -ENOMEM:
                nr_failed += 1
                _count(ev, nr_succeeded, nr_failed)
                return -ENOMEM
            if rc == -EAGAIN:
                retry += 1
                ev["migrate_eagain"] += 1
            elif rc == MIGRATEPAGE_SUCCESS:
                nr_succeeded += 1
            else:
                # Permanent failure: off the list, not retried.
                nr_failed += 1
                ev["migrate_permanent"] += 1
        passes += 1
    nr_failed += retry
    _count(ev, nr_succeeded, nr_failed)
    return nr_failed


def _count(ev: dict[str, int], nr_succeeded: int, nr_failed: int) -> None:
    ev["pgmigrate_success"] += nr_succeeded
    ev["pgmigrate_fail"] += nr_failed


__all__ = [
    "PageList", "isolate_movable_page", "putback_movable_pages", "putback_movable_page",
    "migrate_pages", "unmap_and_move", "move_to_new_page", "errno_name",
]
