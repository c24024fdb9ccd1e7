"""oneballoon: the bundled virtio balloon as a one-file driver, for broken drivers.

The device is mmplug_balloon's VirtioBalloon; what deflating one page does
(free(handle): under the balloon mutex and the page lock, the page leaves the
balloon, the host is told, the balloon's reference goes) is written out here,
with balloon_page_delete (mm/balloon_compaction.c), so that a mistake of a
balloon releasing a page compaction holds isolated can be made in one line.
check-driver passes it as it passes the bundled balloon.
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
    if not page_isolated(page):
        b_dev_info.pages.delete(page)


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
    return DriverInfo(name="oneballoon", version="1.0", factory=OneBalloon,
                      summary="the virtio balloon, deflation written out",
                      capabilities=CAPABILITIES)


__all__ = ["OneBalloon", "isolate_page", "migratepage", "mmplug_driver", "putback_page"]
