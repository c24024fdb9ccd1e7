"""Waiting for another CPU: bit spinlocks and wait_event, over schedule points.

The pool never blocks inside the CPU backend for a condition of its own
(a pin bit, a counter): it spins with a schedule point per turn, which lets a
multi-CPU backend run the CPU that will satisfy it.  On one CPU nobody else
can, so after `SPIN_LIMIT` turns the wait is reported as a deadlock naming
what was waited for, instead of hanging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmplug import Deadlock
from mmplug.kernel import schedule_point

#: Turns of a spin before it is declared hopeless; far above any real interleaving.
SPIN_LIMIT = 10_000


def wait_event(vm: Any, condition: Callable[[], bool], what: str) -> None:
    """wait_event(): schedule until `condition()` holds."""
    for _ in range(SPIN_LIMIT):
        if condition():
            return
        schedule_point(vm, what)
    if not condition():
        raise Deadlock(f"zsmalloc: {what}: waited {SPIN_LIMIT} turns and no other CPU "
                       "made it true")


def spin_trylock(vm: Any, trylock: Callable[[], bool], what: str) -> None:
    """bit_spin_lock(): retry a trylock until it succeeds."""
    wait_event(vm, trylock, what)
