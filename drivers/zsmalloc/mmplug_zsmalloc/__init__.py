"""mmplug-zsmalloc: mm/zsmalloc.c of v4.19 as an mmplug movable driver.

A pool (`ZsPool`) packs objects of up to one page into size classes of
zspages (1..4 pages each); handles encode where an object lives and are
rewritten when its page migrates.  The three movable callbacks are
zs_page_isolate, zs_page_migrate and zs_page_putback (mmplug_zsmalloc.migration).

Options of the factory: `bugs` (a set of "BUG-5", "BUG-6", "BUG-7": put back
the behaviour a fix removed, see mmplug_zsmalloc.pool) and `name`.
"""

from __future__ import annotations

from mmplug import Capabilities, DriverInfo, hookimpl

from .migration import zs_page_isolate, zs_page_migrate, zs_page_putback
from .pool import KNOWN_BUGS, ZsPool

__version__ = "1.0.0"
__all__ = ["ZsPool", "KNOWN_BUGS", "__version__"]

#: With 4 KiB pages the largest class holds one-page objects (ZS_MAX_ALLOC_SIZE).
_MAX_OBJECT_SIZE = 4096


@hookimpl
def mmplug_driver() -> DriverInfo:
    return DriverInfo(
        name="zsmalloc",
        version=__version__,
        factory=ZsPool,
        summary="zsmalloc: size classes of multi-page zspages, handles re-pointed on migration",
        capabilities=Capabilities(stores_data=True, max_object_size=_MAX_OBJECT_SIZE,
                                  may_refuse_isolation=True, may_fail_migration=True,
                                  free_while_isolated=True, knobs={"pin"}),
        kernel_source="mm/zsmalloc.c",
    )


@hookimpl
def isolate_page(page, mode):
    return zs_page_isolate(page, mode)


@hookimpl
def migratepage(mapping, newpage, page, mode):
    return zs_page_migrate(mapping, newpage, page, mode)


@hookimpl
def putback_page(page):
    zs_page_putback(page)


@hookimpl
def mmplug_race_scenarios(driver):
    from .races import RACE_SCENARIOS  # the race explorer only when races run
    return RACE_SCENARIOS


@hookimpl
def mmplug_conformance_checks(driver):
    from .checks import CHECKS  # the suite only when check-driver runs
    return CHECKS
