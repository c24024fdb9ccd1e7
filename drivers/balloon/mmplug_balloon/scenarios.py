"""BUG-9, BUG-10 and BUG-12 replayed on one CPU, with the bug or with the fix.

Each scenario builds a small VM with one balloon, then runs the racing path
at exactly the moment the kernel code would sleep (the device's `on_point`
hook), so one deterministic ordering shows what the fix prevents.  A search
over real interleavings (several simulated CPUs) can instead create the
device with `bugs={...}` and let the scheduler find the same window.

    from mmplug_balloon.scenarios import run
    run("BUG-12", buggy=True).error   # -> "BUG-12: balloon_page_device(): ..."
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from attrs import frozen

import mmplug
from mmplug import (
    MmplugError,
    Page,
    PageList,
    isolate_movable_page,
    migrate_pages,
    putback_movable_pages,
)
from mmplug.kernel import MigrateMode, clear_page_reclaim, set_page_reclaim

from .virtio_balloon import VirtioBalloon

#: A zone of two pageblocks is plenty for a handful of balloon pages.
SCENARIO_PAGES = 1024


@frozen(slots=True)
class ScenarioResult:
    """What one run showed."""

    bug: str
    buggy: bool
    #: what the run did, in one line
    outcome: str
    #: the error that stopped the run (the model's oops), if any
    error: str | None = None
    #: what the device's verify() found afterwards, if anything
    verify_error: str | None = None
    #: pfns the host still holds although the guest released them
    host_leaked: tuple[int, ...] = ()
    #: pages in use that nobody owns (vm.unclaimed_pages())
    vm_leaked: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        return self.error is None and self.verify_error is None and not self.vm_leaked


def new_balloon(**options: object) -> tuple[mmplug.VM, VirtioBalloon]:
    """A fresh VM with this package's driver registered and one balloon on it."""
    import mmplug_balloon

    host = mmplug.PluginHost()
    host.register(mmplug_balloon, origin="module mmplug_balloon")
    vm = mmplug.VM(nr_pages=SCENARIO_PAGES, plugins=host)
    return vm, vm.create_driver("balloon", **options)


def isolate(vm: mmplug.VM, page: Page, pagelist: PageList) -> bool:
    """What the compaction scanner does with one balloon page."""
    if isolate_movable_page(vm, page, 0) == 0:
        pagelist.add(page)
        return True
    return False


def migrate(vm: mmplug.VM, pagelist: PageList, mode: MigrateMode = MigrateMode.SYNC) -> int:
    """migrate_pages() to fresh pages, then putback of whatever is left (MIG-9)."""
    rc = migrate_pages(vm, pagelist, lambda page, private: vm.alloc_page(), None, None, mode)
    if rc:
        putback_movable_pages(vm, pagelist)
    return rc


def _finish(bug: str, buggy: bool, vm: mmplug.VM, balloon: VirtioBalloon, outcome: str,
            error: str | None = None) -> ScenarioResult:
    try:
        balloon.verify()
        verify_error = None
    except AssertionError as exc:
        verify_error = str(exc)
    owned = {p.pfn for p in balloon.pages()}
    return ScenarioResult(
        bug=bug, buggy=buggy, outcome=outcome, error=error, verify_error=verify_error,
        host_leaked=tuple(sorted(balloon.host.ballooned - owned)),
        vm_leaked=tuple(p.pfn for p in vm.unclaimed_pages()))


def bug9_migration_races_deflation(buggy: bool = False) -> ScenarioResult:
    """BUG-9: a migration runs while leak_balloon() sleeps in tell_host().

    Fixed: virtballoon_migratepage() cannot get the balloon mutex, returns
    -EAGAIN on every pass, and the page is put back.  Buggy: it runs, rewrites
    the shared pfn array, and the host reads the migration's pfn in place of
    the first deflated page's: the host never releases that page (leaked at the
    host) and hears of the migrated one twice.
    """
    vm, balloon = new_balloon(bugs={"BUG-9"} if buggy else ())
    handles = [balloon.store(b"") for _ in range(4)]
    pagelist = PageList()
    isolate(vm, balloon.handles[handles[0]], pagelist)
    results: list[int] = []

    def during_deflate(what: str) -> None:
        if what == "tell_host:deflate":
            balloon.on_point = None
            results.append(migrate(vm, pagelist))

    balloon.on_point = during_deflate
    deflated = balloon.deflate(2)
    rc = results[0] if results else None
    return _finish("BUG-9", buggy, vm, balloon,
                   f"deflated {deflated}; migration during tell_host returned {rc} "
                   f"({'migrated' if rc == 0 else 'not migrated, put back'})")


def bug10_deflate_without_compaction(buggy: bool = False) -> ScenarioResult:
    """BUG-10: with compaction off, deflation must not look at PG_isolated.

    The balloon's pages carry PG_reclaim, set by that bit's other user (with
    compaction off nothing ever isolates a balloon page).  Fixed: all deflate.
    Buggy: dequeue takes every one for isolated and skips it; deflation makes
    no progress and the device can never be emptied.
    """
    vm, balloon = new_balloon(compaction=False, bugs={"BUG-10"} if buggy else ())
    balloon.inflate(3)
    for page in balloon.pages():
        set_page_reclaim(page)

    def reclaim_bit_released(what: str) -> None:
        # The bit's owner lets go of a page that leaves the balloon before it is
        # freed (the model's free path reads the bit as PG_isolated).
        if what == "tell_host:deflate":
            for page in balloon.pages():
                if page not in balloon.vb_dev_info.pages:
                    clear_page_reclaim(page)

    balloon.on_point = reclaim_bit_released
    deflated = balloon.deflate(3)
    error = None
    try:
        balloon.destroy()
    except MmplugError as exc:
        error = str(exc)
    for page in balloon.pages():
        clear_page_reclaim(page)
    return _finish("BUG-10", buggy, vm, balloon,
                   f"deflated {deflated} of 3 pages carrying PG_reclaim", error)


def bug12_private_cleared_under_isolation(buggy: bool = False) -> ScenarioResult:
    """BUG-12: free() of one page while the compaction scanner isolates it.

    The scanner runs when free() is about to sleep on the page lock.  Fixed:
    the page is still a whole balloon page, isolation succeeds, free() then
    releases it as REL-2 says and the VM finishes it during migration.  Buggy:
    page->private is already cleared, so isolate_page() finds no device (the
    kernel's NULL dereference).
    """
    vm, balloon = new_balloon(bugs={"BUG-12"} if buggy else ())
    handles = [balloon.store(b"") for _ in range(2)]
    page = balloon.handles[handles[0]]
    pagelist = PageList()

    def during_free(what: str) -> None:
        if what == "free:lock_page":
            balloon.on_point = None
            isolate(vm, page, pagelist)

    balloon.on_point = during_free
    try:
        balloon.free(handles[0])
    except MmplugError as exc:
        return ScenarioResult(bug="BUG-12", buggy=buggy, outcome="isolation oopsed",
                              error=str(exc))
    rc = migrate(vm, pagelist)
    return _finish("BUG-12", buggy, vm, balloon,
                   f"freed while isolated; migration of the released page returned {rc}")


SCENARIOS: Mapping[str, Callable[[bool], ScenarioResult]] = MappingProxyType({
    "BUG-9": bug9_migration_races_deflation,
    "BUG-10": bug10_deflate_without_compaction,
    "BUG-12": bug12_private_cleared_under_isolation,
})


def run(bug: str, buggy: bool = False) -> ScenarioResult:
    """Run the scenario of `bug`, with the bug reintroduced or with the fix."""
    try:
        scenario = SCENARIOS[bug]
    except KeyError:
        raise mmplug.UsageError(f"no balloon scenario for {bug!r}; known: "
                                f"{', '.join(SCENARIOS)}") from None
    return scenario(buggy)
