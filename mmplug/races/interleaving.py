"""The interleaving of a race, step by step, for a person to read.

A traced run (run_once(trace=True)) records every schedule point: the CPU,
the driver code it is in (function, file and line of the innermost driver
frame), the operation (a page lock, a driver lock, a refcount or flag
operation, entry to or exit from a callback) and what it is on.  The table
shows each driver step on a line of its own and folds each run of steps of
the VM's own code on one CPU into one line, so that a reader sees what the
driver did, on which CPU, in which order.
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

from attrs import define, field, frozen

from ..drivercode import DriverCode, Site

_MMPLUG = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
#: mmplug's plumbing between an operation and the code that asked for it
_PLUMBING = tuple(os.path.join(_MMPLUG, p) for p in (
    "cpus", "kernel.py", "watchdog.py", "mapping.py", "journal.py", "instance.py", "page.py"))
#: the most VM operations a folded line names
_FOLDED_OPS = 3


@frozen(slots=True)
class Step:
    """One schedule point of a traced run."""

    #: 1-based number of the schedule point
    index: int
    cpu: int
    #: the operation ("spin_lock", "trylock_page", "enter drv.migratepage", ...)
    what: str
    #: what it is on ("pfn 0xc0", "simplepool.lock"), or ""
    on: str
    #: where the CPU is: "vm" or "<driver>.<callback or method>"
    where: str
    #: the innermost driver frame, if driver code is on the stack
    site: Site | None = None
    #: the VM function that asked for the operation, when no driver code did
    vm: str = ""

    @property
    def driver_step(self) -> bool:
        return self.site is not None or self.what.startswith(("enter ", "exit "))

    def code(self) -> str:
        if self.site is not None:
            return self.site.describe()
        if self.driver_step:   # entry to or exit from a callback: the callback's name
            return self.what.split(" ", 1)[-1].split(".", 1)[-1]
        return f"vm {self.vm}" if self.vm else "vm"

    def operation(self) -> str:
        what = self.what
        if what.startswith(("enter ", "exit ")):
            verb, _, name = what.partition(" ")
            what = f"{verb} {name.split('.', 1)[-1]}"
        return f"{what} {self.on}".strip()


@define(slots=True, eq=False)
class Recorder:
    """Called by the scheduler at every schedule point of a run; keeps the steps."""

    code: DriverCode
    steps: list[Step] = field(factory=list)

    def __call__(self, cpu: int, where: str, what: str, obj: Any) -> None:
        # this frame <- Scheduler.point <- the operation's caller
        frame = sys._getframe(2)
        site = self.code.site_in_stack(frame)
        vm = "" if site is not None else _vm_function(frame)
        self.steps.append(Step(len(self.steps) + 1, cpu, what, describe(obj), where, site, vm))


def describe(obj: Any) -> str:
    """What an operation is on, in a few words."""
    if obj is None:
        return ""
    pfn = getattr(obj, "pfn", None)
    if isinstance(pfn, int):
        return f"pfn {pfn:#x}"
    name = getattr(obj, "name", None)
    if isinstance(name, str):
        return name
    return ""


def _vm_function(frame: FrameType | None) -> str:
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_MMPLUG) and not filename.startswith(_PLUMBING):
            return frame.f_code.co_qualname
        frame = frame.f_back
    return ""


def render_steps(steps: tuple[Step, ...], error_cpu: int | None = None) -> list[str]:
    """The table of a traced run: driver steps one per line, runs of VM steps folded; a
    '>' marks a line where another CPU took over."""
    rows: list[tuple[int, int, str, str]] = []
    i = 0
    while i < len(steps):
        step = steps[i]
        if step.driver_step:
            rows.append((step.index, step.cpu, step.code(), step.operation()))
            i += 1
            continue
        j = i
        while j < len(steps) and steps[j].cpu == step.cpu and not steps[j].driver_step:
            j += 1
        run = steps[i:j]
        ops = [s.operation() for s in run[:_FOLDED_OPS]]
        more = f" (+{len(run) - _FOLDED_OPS} more)" if len(run) > _FOLDED_OPS else ""
        fns = list(dict.fromkeys(s.vm for s in run if s.vm))
        where = "vm " + ", ".join(fns[:2]) if fns else "vm"
        rows.append((step.index, step.cpu, where, ", ".join(ops) + more))
        i = j
    width = min(max((len(r[2]) for r in rows), default=4), 44)
    lines = [f"interleaving ({len(steps)} steps; '>' marks a switch to another CPU):",
             f"   step cpu  {'code':<{width}}  operation"]
    prev_cpu: int | None = None
    for index, cpu, where, op in rows:
        mark = ">" if prev_cpu is not None and cpu != prev_cpu else " "
        prev_cpu = cpu
        shown = where if len(where) <= width else where[:width - 3] + "..."
        lines.append(f" {mark}{index:5d} {cpu:3d}  {shown:<{width}}  {op}")
    if error_cpu is not None:
        lines.append(f"   found on cpu{error_cpu} after step {len(steps)}")
    return lines


__all__ = ["Recorder", "Step", "describe", "render_steps"]
