"""Work items and single-threaded workqueues, run at defined points.

mm/z3fold.c queues compaction of a page (zhdr->work on pool->compact_wq) and
the release of stale pages (pool->work on pool->release_wq, both
create_singlethread_workqueue).  A kernel worker runs them "soon"; the model
runs them where the pool says (before store and free, when asked, and when a
queue is destroyed), so a test can see a page while its work is pending.

kernel/workqueue.c semantics kept: queue_work() on a pending item does
nothing and returns False; the PENDING bit clears just before the function
runs (process_one_work), so a running item may be queued again;
cancel_work_sync() takes a pending item off its queue; destroy_workqueue()
drains the queue first.  Queuing on a destroyed queue is the use after free
of BUG-15 and raises.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from mmplug import ContractViolation
from mmplug.kernel import schedule_point


class Work:
    """struct work_struct: a function, its argument, the PENDING bit."""

    __slots__ = ("func", "arg", "pending", "running", "queue")

    def __init__(self, func: Callable[[Any], None], arg: Any) -> None:
        self.func = func
        self.arg = arg
        self.pending = False
        self.running = False
        self.queue: Workqueue | None = None

    def __repr__(self) -> str:
        return f"<Work {getattr(self.func, '__name__', self.func)} pending={self.pending}>"


def work_pending(work: Work) -> bool:
    """work_pending()."""
    return work.pending


class Workqueue:
    """An ordered (single-threaded) workqueue."""

    __slots__ = ("name", "vm", "items", "destroyed", "running")

    def __init__(self, name: str, vm: Any) -> None:
        self.name = name
        self.vm = vm
        self.items: deque[Work] = deque()
        self.destroyed = False
        self.running = False

    def queue_work(self, work: Work) -> bool:
        """queue_work() / queue_work_on(): False if the item was already pending."""
        if self.destroyed:
            raise ContractViolation(
                "BUG-15", f"queue_work() on workqueue {self.name!r} after destroy_workqueue(): "
                "the pool was torn down with work still able to queue more (use after free)")
        if work.pending:
            return False
        work.pending = True
        work.queue = self
        self.items.append(work)
        return True

    def cancel_work_sync(self, work: Work) -> bool:
        """cancel_work_sync(): take a pending item off and wait for a running one to end.

        True if it was pending.
        """
        was_pending = work.pending
        if was_pending:
            self.items.remove(work)
            work.pending = False
        while work.running:
            schedule_point(self.vm, f"cancel_work_sync({self.name})")
        return was_pending

    def run_pending(self) -> int:
        """The worker: run items in order, including ones queued meanwhile.

        Ordered: if a run is already under way (another simulated CPU is the
        worker right now), do nothing.  Returns the number of items run.
        """
        if self.running:
            return 0
        self.running = True
        done = 0
        try:
            while self.items:
                work = self.items.popleft()
                work.pending = False
                work.running = True
                try:
                    work.func(work.arg)
                finally:
                    work.running = False
                done += 1
        finally:
            self.running = False
        return done

    def destroy(self) -> None:
        """destroy_workqueue(): wait for the worker, drain, then no more queuing."""
        while self.running:
            schedule_point(self.vm, f"drain_workqueue({self.name})")
        self.run_pending()
        self.destroyed = True

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        state = " destroyed" if self.destroyed else ""
        return f"<Workqueue {self.name} {len(self.items)} pending{state}>"
