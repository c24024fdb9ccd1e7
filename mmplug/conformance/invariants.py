"""What must hold of a driver instance on a bench, whatever a check did to it.

Each function raises `CheckFailed` naming the rule the check is about (or a
more precise one the finding shows) and when it was looked at: every live
object reads back, the driver's own verify() passes, every page it lists is
its own and in a sane state, no page leaked, no WARN_ON_ONCE only a driver
can cause fired, and nothing is left after destroy().
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..journal import LEAKED, blame_bad_read, blame_leak, blame_page, rule_named
from ..page import (
    ACTIVE,
    BUDDY,
    ISOLATED,
    LOCKED,
    LRU,
    PAGE_MAPPING_FLAGS,
    PAGE_MAPPING_MOVABLE,
    RESERVED,
    SLAB,
    UNEVICTABLE,
    WRITEBACK,
    Page,
    flag_names,
)
from .outcomes import CheckFailed

if TYPE_CHECKING:
    from .bench import Bench

#: flags of other page users (LRU, slab, page cache I/O) a driver's page must never carry
FOREIGN_FLAGS = LRU | ACTIVE | SLAB | RESERVED | WRITEBACK | UNEVICTABLE | BUDDY

#: WARN_ON_ONCE sites of the VM that only a driver can trigger: a FAIL, not a warning.
#: ISO-3: the driver set PG_isolated itself; MIG-6: it cleared PG_isolated in migratepage.
DRIVER_WARNINGS = frozenset({"ISO-3", "MIG-6"})


def verify_objects(bench: Bench, rule: str, when: str) -> None:
    """Every live object reads back as it was stored (or as first read).

    An object that read back right before a successful migration and wrong
    after it breaks MIG-7, before a putback PUT-2, whatever `rule` the check
    expected (mmplug.journal).
    """
    journal = bench.journal
    good = bench.good
    for handle, want in bench.objects.items():
        got = bench.read(handle)
        if got != want:
            blamed = blame_bad_read(journal, good.get(handle, 0), rule)
            raise CheckFailed(blamed, f"object {handle!r} reads back different bytes {when} "
                              f"({diff_bytes(want, got)})", page=bench.page_holding(want),
                              hook="read", what="an object reads back different bytes")
        good[handle] = journal.seq


def verify_driver(bench: Bench, rule: str, when: str) -> None:
    """The driver's own verify() passes (if it has one); a rule its message names (a
    driver's own, DRV-*) is the rule broken."""
    failed = bench.guarded.verify()
    if failed is not None:
        raise CheckFailed(rule_named(failed, rule), f"the driver's verify() fails {when}: "
                          f"{failed}", hook="verify", what=f"verify() fails: {failed}")


def check_owned_pages(bench: Bench, rule: str, when: str) -> list[Page]:
    """Every page pages() lists is in use, PageMovable with the bench's mapping, unlocked,
    not isolated unless the VM isolated it (FLG-4, FLG-6)."""
    pages = bench.pages()
    seen = set()
    movable = 0
    for page in pages:
        if page.pfn in seen:
            raise CheckFailed("API-1", f"pages() lists pfn {page.pfn:#x} twice {when}",
                              page=page)
        seen.add(page.pfn)
        if page.flags & BUDDY or page._refcount <= 0:
            raise CheckFailed("MIG-7" if bench.journal.migrated_away(page) else rule,
                              f"pages() lists a free page {when}", page=page,
                              what="pages() lists a free page")
        if page.mapping == 0 and not page.flags & ISOLATED:
            continue  # a page the driver never makes movable: not the contract's business
        movable += 1
        if page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE or \
                page.mapping & ~PAGE_MAPPING_FLAGS != bench.mapping.handle:
            raise CheckFailed(blame_page(bench.journal, page, "FLG-4"),
                              f"a page the driver owns is not __PageMovable with its "
                              f"mapping {when}", page=page, what="a driver page is not movable")
        if page.flags & LOCKED:
            raise CheckFailed("LCK-2", f"a page the driver owns is left locked {when}",
                              page=page, what="a driver page is left locked")
        if page.flags & FOREIGN_FLAGS:
            raise CheckFailed(blame_page(bench.journal, page, "ISO-5"),
                              f"a page the driver owns carries "
                              f"{flag_names(page.flags & FOREIGN_FLAGS)} {when}: the "
                              "compaction scanner would take it for another kind of page",
                              page=page, what="a driver page carries foreign flags")
        if page.flags & ISOLATED and page not in bench.vm.isolated:
            raise CheckFailed("FLG-6", f"a page the driver owns carries PG_isolated "
                              f"(PG_reclaim) but the VM did not isolate it {when}", page=page,
                              what="a driver page carries PG_isolated")
    if pages and not movable:
        raise CheckFailed("FLG-4", f"none of the driver's {len(pages)} page(s) is movable "
                          f"{when}: __SetPageMovable was never called", page=pages[0],
                          what="no driver page is movable")
    return pages


def check_no_leak(bench: Bench, rule: str, when: str) -> None:
    """No page is in use that neither the driver nor anybody else claims.

    A leaked page that was the source of a successful migration is the
    migration's leak (MIG-7: the driver kept its reference on the old page);
    a new page a failed migratepage was given and kept is MIG-8; any other
    is a release that forgot put_page (REL-1).
    """
    vm = bench.vm
    # A page released while isolated is the VM's until migration or putback ends.
    leaked = vm.unclaimed_pages(extra=list(vm.isolated))
    if leaked:
        raise CheckFailed(blame_leak(bench.journal, leaked[0]),
                          f"{len(leaked)} page(s) in use that the driver no longer "
                          f"lists in pages() {when} (leaked)", page=leaked[0],
                          what=LEAKED)


def check_warnings(bench: Bench) -> None:
    """A WARN_ON_ONCE the driver caused is a broken rule (ISO-3, MIG-6)."""
    for w in bench.vm.warnings:
        if w.rule in DRIVER_WARNINGS:
            raise CheckFailed(w.rule, w.message, hook=w.hook, page_desc=w.page)


def check_all_returned(bench: Bench) -> None:
    """After destroy(): no page in use, every page back in the zone.

    A page still movable with the instance's mapping is one destroy() kept
    (REL-3); a page already released (its mapping word cleared) but never
    freed was leaked earlier, and is blamed as check_no_leak blames it.
    """
    vm = bench.vm
    leaked = vm.unclaimed_pages()
    if leaked:
        handle = bench.mapping.handle
        kept = [p for p in leaked if p.mapping & ~PAGE_MAPPING_FLAGS == handle]
        page = kept[0] if kept else leaked[0]
        raise CheckFailed("REL-3" if kept else blame_leak(bench.journal, page),
                          f"{len(leaked)} page(s) still in use after destroy()",
                          page=page, hook="destroy" if kept else None,
                          what="pages kept after destroy()" if kept else LEAKED)
    if vm.zone.nr_free_pages != bench.baseline_free:
        raise CheckFailed("REL-3", f"{bench.baseline_free - vm.zone.nr_free_pages} "
                          "page(s) not returned to the zone after destroy()", hook="destroy")


def diff_bytes(want: bytes, got: bytes) -> str:
    """Where two byte strings differ, for a message."""
    if len(want) != len(got):
        return f"expected {len(want)} bytes, got {len(got)}"
    first = next(i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b)
    n = sum(a != b for a, b in zip(want, got, strict=True))
    return f"{n} of {len(want)} bytes differ, first at offset {first}: expected " \
           f"{want[first]:#04x}, got {got[first]:#04x}"
