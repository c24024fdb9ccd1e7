"""The balloon's race for mmplug's race explorer: deflation racing compaction.

leak_balloon() (drivers/virtio/virtio_balloon.c) dequeues pages while the
compaction scanner isolates and migrates them (mm/balloon_compaction.c:
balloon_page_dequeue, balloon_page_isolate, balloon_page_migrate); BUG-9 and
BUG-12 lived in that window.  The driver brings it through its
`mmplug_race_scenarios` hook, so a copy of the driver under another name
brings it too.
"""

from __future__ import annotations

from mmplug import RaceEnv, Scenario


def _setup(env: RaceEnv) -> None:
    env.store_objects(3)


def _deflate(env: RaceEnv) -> None:
    """One page deflated by handle, then leak_balloon() for the rest."""
    first, *rest = env.notes["handles"]
    env.free(first)
    env.call("deflate", len(rest))
    # leak_balloon() may stop early at isolated pages: those stay in the balloon
    live = env.instance.handles
    for handle in [h for h in env.objects if h not in live]:
        del env.objects[handle]


DEFLATE_VS_MIGRATE = Scenario(
    "balloon_deflate_vs_migrate", ("BUG-9", "BUG-12", "DRV-B1", "DRV-B3"),
    "the balloon deflates while compaction isolates and migrates its pages",
    _setup, (RaceEnv.compact, _deflate))

#: what the balloon brings to the race explorer, after the generic scenarios
RACE_SCENARIOS = (DEFLATE_VS_MIGRATE,)
