"""z3fold: mm/z3fold.c (v6.0; migration since v5.3) as an mmplug movable-page driver.

Up to three objects (FIRST, MIDDLE, LAST buddies) share a page after a
header; larger objects get a HEADLESS page, which is never movable
(DRV-3F1).  The three callbacks below are z3fold_page_isolate,
z3fold_page_migrate and z3fold_page_putback (DRV-3F2..DRV-3F4); readers
never use a migrated page's old header (DRV-3F5).  The modules follow the
kernel file's concepts: geometry, flags, handles, header, lists, workqueue,
pool, alloc, compact, release, access, reclaim, migration, instance, verify.
"""

from __future__ import annotations

from mmplug import Capabilities, DriverInfo, hookimpl

from .instance import Z3fold
from .migration import z3fold_page_isolate, z3fold_page_migrate, z3fold_page_putback
from .pool import KNOWN_BUGS

__version__ = "1.0.0"


@hookimpl
def mmplug_driver():
    return DriverInfo(
        name="z3fold", version=__version__, factory=Z3fold,
        summary="up to three compressed objects per page, in-page compaction work (mm/z3fold.c)",
        capabilities=Capabilities(max_object_size=None, knobs={"map"}),
        kernel_source="mm/z3fold.c")


@hookimpl
def isolate_page(page, mode):
    return z3fold_page_isolate(page, mode)


@hookimpl
def migratepage(mapping, newpage, page, mode):
    return z3fold_page_migrate(mapping, newpage, page, mode)


@hookimpl
def putback_page(page):
    z3fold_page_putback(page)


@hookimpl
def mmplug_conformance_checks(driver):
    from .checks import CHECKS  # the suite only when check-driver runs
    return CHECKS


__all__ = ["Z3fold", "KNOWN_BUGS", "mmplug_driver", "isolate_page", "migratepage", "putback_page",
           "mmplug_conformance_checks"]
