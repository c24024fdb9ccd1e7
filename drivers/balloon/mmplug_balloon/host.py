"""The simulated hypervisor at the other end of the balloon's virtqueues.

Models what the guest driver relies on from the host side of
drivers/virtio/virtio_balloon.c (tell_host(): the host reads the pfn array
of a buffer on the inflate or deflate queue, then acks).  The host keeps the
set of guest frames it believes are ballooned and a log of every
notification, so that DRV-B3 (the host's set equals the balloon's pages) can
be checked after any step, and a divergence can be traced to the message
that caused it.

Frames are guest page frame numbers: with 4 KiB pages one page is one
balloon pfn (VIRTIO_BALLOON_PAGES_PER_PAGE == 1); the model does not split
larger pages into 4 KiB balloon units.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from attrs import define, field

INFLATE = "inflate"
DEFLATE = "deflate"


class Notification(NamedTuple):
    """One buffer the host read from a queue: which queue, which pfns.

    A named tuple rather than an attrs class: the host logs one per message,
    and a balloon of a million pages sends millions.
    """

    queue: str
    pfns: tuple[int, ...]


@define(slots=True)
class Host:
    """The hypervisor's view of one balloon device."""

    ballooned: set[int] = field(factory=set)
    log: list[Notification] = field(factory=list)
    #: notifications that made no sense to the host: inflating a frame it already
    #: holds, or deflating one it does not (both mean the guest lost track)
    anomalies: list[str] = field(factory=list)

    def receive(self, queue: str, pfns: Iterable[int]) -> None:
        """Consume one buffer from the inflate or deflate queue."""
        pfns = tuple(pfns)
        self.log.append(Notification(queue, pfns))
        if queue == INFLATE:
            for pfn in pfns:
                if pfn in self.ballooned:
                    self.anomalies.append(f"inflate of pfn {pfn:#x}, already ballooned")
                self.ballooned.add(pfn)
        elif queue == DEFLATE:
            for pfn in pfns:
                if pfn not in self.ballooned:
                    self.anomalies.append(f"deflate of pfn {pfn:#x}, not ballooned")
                self.ballooned.discard(pfn)
        else:
            raise ValueError(f"unknown virtqueue {queue!r}")

    def count(self, queue: str) -> int:
        """How many frames were announced on `queue` so far."""
        return sum(len(n.pfns) for n in self.log if n.queue == queue)
