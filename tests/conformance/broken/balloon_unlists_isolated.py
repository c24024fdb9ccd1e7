"""broken_balloon_unlists_isolated: oneballoon with one mistake, which breaks REL-2.

A balloon whose balloon_page_delete() takes every deflated page off the balloon list,
also one compaction holds isolated: its lru is on the VM's migration list.

Generated from tests/conformance/bases/oneballoon.py and this mistake's row in
mistakes.py (python -m tests.conformance.broken.regenerate): edit those.
"""

from __future__ import annotations

from mmplug import DriverInfo, hookimpl
from mmplug.kernel import (
    clear_page_movable,
    count_vm_event,
    lock_page,
    page_isolated,
    unlock_page,
)
from mmplug_balloon import (  # the bundled balloon's callbacks are this driver's
    CAPABILITIES,
    VirtioBalloon,
    isolate_page,
    migratepage,
    putback_page,
)
from mmplug_balloon.host import DEFLATE


def balloon_page_delete(b_dev_info, page):
    """Not movable, no device; off the list unless compaction holds it isolated: then its
    lru is the VM's, and the VM finishes the page (REL-2)."""
    clear_page_movable(page)
    page.private = 0
    # the mistake: list_del even when the page is isolated
    b_dev_info.pages._pages.pop(page, None)
    page.lru = None


class OneBalloon(VirtioBalloon):
    def free(self, handle):
        """Deflate the page of `handle`, isolated or not."""
        b_dev_info = self.vb_dev_info
        with self.balloon_lock:
            page = self.handles[handle]
            lock_page(page)
            with b_dev_info.pages_lock:
                isolated = page_isolated(page)
                balloon_page_delete(b_dev_info, page)
                if isolated:
                    # the VM will call neither putback nor migratepage for it
                    b_dev_info.isolated_pages -= 1
                count_vm_event(self.vm, "balloon_deflate")
            unlock_page(page)
            self.num_pages -= 1
            self.num_pfns = 0
            self._set_pfns(page)
            self._tell_host(DEFLATE)
            self._release_pages_balloon([page])


@hookimpl
def mmplug_driver():
    return DriverInfo(name="broken_balloon_unlists_isolated", version="1.0", factory=OneBalloon,
                      summary="oneballoon that breaks REL-2",
                      capabilities=CAPABILITIES)


__all__ = ["OneBalloon", "isolate_page", "migratepage", "mmplug_driver", "putback_page"]
