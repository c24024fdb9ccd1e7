"""mmplug driver `balloon`: the virtio balloon with balloon compaction (v4.19).

The hook implementations are mm/balloon_compaction.c's balloon_aops
(balloon_page_isolate, balloon_page_migrate, balloon_page_putback); the
device behind them is drivers/virtio/virtio_balloon.c with a simulated host.
Rules: DRV-B1..DRV-B4 of the contract; bugs BUG-9, BUG-10 and BUG-12 can be
reintroduced per instance (`bugs=`) and replayed by mmplug_balloon.scenarios.
"""

from __future__ import annotations

from mmplug import Capabilities, DriverInfo, hookimpl

from .balloon_compaction import balloon_page_isolate, balloon_page_migrate, balloon_page_putback
from .bugs import KNOWN_BUGS
from .host import Host
from .virtio_balloon import VirtioBalloon

__version__ = "1.0.0"

CAPABILITIES = Capabilities(stores_data=False, may_refuse_isolation=False,
                            may_fail_migration=True, free_while_isolated=True,
                            knobs={"busy"})


@hookimpl
def mmplug_driver():
    return DriverInfo(
        name="balloon", version=__version__, factory=VirtioBalloon,
        summary="virtio balloon: one object is one ballooned page; the host is told of "
                "every inflate, deflate and migration",
        capabilities=CAPABILITIES,
        kernel_source="mm/balloon_compaction.c, drivers/virtio/virtio_balloon.c")


@hookimpl
def isolate_page(page, mode):
    return balloon_page_isolate(page, mode)


@hookimpl
def migratepage(mapping, newpage, page, mode):
    return balloon_page_migrate(mapping, newpage, page, mode)


@hookimpl
def putback_page(page):
    balloon_page_putback(page)


@hookimpl
def mmplug_race_scenarios(driver):
    from .races import RACE_SCENARIOS  # the race explorer only when races run
    return RACE_SCENARIOS


@hookimpl
def mmplug_conformance_checks(driver):
    from .checks import CHECKS  # the suite only when check-driver runs
    return CHECKS


__all__ = ["CAPABILITIES", "KNOWN_BUGS", "Host", "VirtioBalloon"]
