"""zsmalloc's races for mmplug's race explorer: zspages emptied while a subpage is isolated.

Freeing the last objects of a zspage while compaction holds one of its
subpages isolated (mm/zsmalloc.c: zs_free, zs_page_isolate, zs_page_migrate,
zs_page_putback, async_free_zspage) is where BUG-6 and BUG-7 lived.  The
driver brings these scenarios through its `mmplug_race_scenarios` hook, so a
copy of the driver under another name brings them too.
"""

from __future__ import annotations

from mmplug import ContractViolation, RaceEnv, Scenario
from mmplug.kernel import PAGE_SIZE

#: 3 KiB objects: their size class packs 4 of them into a zspage of 3 pages
#: (get_pages_per_zspage picks the least waste), so a zspage has a subpage chain
OBJECT_SIZE = 3072


def _setup(env: RaceEnv) -> None:
    size = OBJECT_SIZE * PAGE_SIZE(env.vm) // 4096
    for i in range(4):
        env.store(env.payload(i, size))
    pages = env.pages()
    # a middle subpage: freeing walks the chain across it (BUG-7)
    env.targets = pages[1:] if len(pages) > 1 else pages
    env.notes["handles"] = sorted(env.objects)


def _free_all_then_work(env: RaceEnv) -> None:
    """Free every object, then run the pool's deferred work here, as a kworker would."""
    env.free_all()
    env.call("run_deferred_work")


def _check_zspages_freed(env: RaceEnv) -> None:
    """With every object freed, no zspage may survive once deferred work ran (DRV-Z4)."""
    env.call("run_deferred_work")
    left = env.pages() if not env.objects else []
    if left:
        raise ContractViolation("DRV-Z4", f"every object was freed but {len(left)} page(s) "
                                "of an emptied zspage are still held: a zspage emptied while "
                                "isolated was put back instead of freed (BUG-6)",
                                driver=env.driver, page=left[0])


ZSPAGE_EMPTIED_WHILE_ISOLATED = Scenario(
    "zspage_emptied_while_isolated", ("BUG-6", "DRV-Z4", "DRV-Z5"),
    "every object of a zspage is freed while one of its subpages is isolated, then put back",
    _setup, (RaceEnv.isolate_then_putback, RaceEnv.free_all), _check_zspages_freed)

ZSPAGE_FREED_WHILE_MIGRATING = Scenario(
    "zspage_freed_while_migrating", ("BUG-6", "BUG-7", "DRV-Z3", "DRV-Z5"),
    "every object of a zspage is freed while one of its subpages migrates",
    _setup, (RaceEnv.compact, _free_all_then_work), _check_zspages_freed)

#: what zsmalloc brings to the race explorer, after the generic scenarios
RACE_SCENARIOS = (ZSPAGE_EMPTIED_WHILE_ISOLATED, ZSPAGE_FREED_WHILE_MIGRATING)
