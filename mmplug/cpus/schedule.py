"""Schedules and the strategies that make them.

At a schedule point where more than one simulated CPU could run, a strategy
picks the next one.  The picks, run-length encoded, are the *schedule*: a
short string ("0x3-1-0") that `ReplayStrategy` follows exactly.  Whatever is
not in the string is decided by the default policy (keep running the current
CPU, else the lowest runnable one), so trailing picks that agree with it are
dropped.  Strategies: seeded random, PCT (Burckhardt et al., ASPLOS 2010), and
a bounded exhaustive search (Musuvathi and Qadeer, PLDI 2007).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from attrs import define

from ..errors import MmplugError

#: the most choices a schedule string may spell out
MAX_SCHEDULE = 10_000_000


class NondeterminismError(MmplugError):
    """A replay saw a different set of runnable CPUs than the run it replays."""


# --- schedules ---------------------------------------------------------------------------

def encode_schedule(choices: Sequence[int]) -> str:
    """[0, 0, 0, 1, 0] -> "0x3-1-0"; the empty schedule is "-"."""
    if not choices:
        return "-"
    out = []
    prev = choices[0]
    count = 0
    for c in choices:
        if c == prev:
            count += 1
            continue
        out.append(f"{prev}x{count}" if count > 1 else str(prev))
        prev, count = c, 1
    out.append(f"{prev}x{count}" if count > 1 else str(prev))
    return "-".join(out)


def decode_schedule(text: str) -> list[int]:
    """The inverse of encode_schedule; ValueError names what is malformed."""
    text = text.strip()
    if text in ("", "-"):
        return []
    out: list[int] = []
    for part in text.split("-"):
        cpu, sep, count = part.partition("x")
        if not cpu.isdigit() or (sep and not count.isdigit()):
            raise ValueError(f"bad schedule item {part[:40]!r} in {text[:60]!r}: expected CPU or "
                             "CPUxCOUNT, joined by '-' (e.g. 0x3-1-0)")
        n = int(count) if sep else 1
        if n < 1 or len(out) + n > MAX_SCHEDULE:
            raise ValueError(f"bad repeat count in {part[:40]!r}: a schedule has from 1 to "
                             f"{MAX_SCHEDULE:,} choices")
        out.extend([int(cpu)] * n)
    return out


# --- strategies --------------------------------------------------------------------------

def default_choice(runnable: Sequence[int], current: int | None) -> int:
    """The non-preemptive policy: keep the current CPU, else the lowest runnable one."""
    if current is not None and current in runnable:
        return current
    return runnable[0]


def next_after(runnable: Sequence[int], cpu: int) -> int:
    """Round robin: the first runnable CPU after `cpu` (a CPU yielding in cond_resched)."""
    for c in runnable:
        if c > cpu:
            return c
    return runnable[0]


#: a point whose name starts with this is a voluntary yield (kernel.schedule_point)
YIELD = "cond_resched"


class Strategy:
    """Picks the next CPU at a choice point (more than one CPU runnable).

    `runnable` is sorted; `current` is the CPU that reached the point (None
    when the previous one finished or blocked); `index` counts choice points;
    `what` names the operation (a name starting with YIELD is a voluntary
    yield: the current CPU waits for another); `default` is what the default
    policy would pick.
    """

    name = "default"
    seed: int | None = None

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        return default


class RandomStrategy(Strategy):
    """Uniform choice among runnable CPUs at every choice point, seeded."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        return runnable[self._rng.randrange(len(runnable))]


class PCTStrategy(Strategy):
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), depth `depth`.

    CPUs get random distinct priorities above `depth`; `depth - 1` change
    points are drawn among the first `length` choice points; at the i-th one
    the running CPU drops to priority i, below every initial one.  The highest
    priority runnable CPU always runs.  A bug of depth d is found with
    probability at least 1/(n * k^(d-1)) per run.
    """

    name = "pct"

    def __init__(self, seed: int, ncpus: int, depth: int, length: int) -> None:
        self.seed = seed
        rng = random.Random(seed)
        prios = list(range(depth, depth + ncpus))
        rng.shuffle(prios)
        self._prio = prios
        length = max(length, depth)
        points = rng.sample(range(1, length + 1), depth - 1) if depth > 1 else []
        self._changes = {p: i for i, p in enumerate(sorted(points))}

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        prio = self._prio
        drop = self._changes.get(index + 1)
        if drop is not None and current is not None:
            prio[current] = drop
        if current is not None and what.startswith(YIELD):
            # A CPU waiting in a yield loop must let the others run, or PCT's strict
            # priorities would spin it forever.
            prio[current] = min(prio) - 1
        return max(runnable, key=prio.__getitem__)


class ReplayStrategy(Strategy):
    """Follow a recorded schedule; past its end, the default policy.

    With `expect` (the original run's trace: the runnable set, as a bit mask,
    and the operation at each choice point) any difference is a
    NondeterminismError naming the step.
    """

    name = "replay"

    def __init__(self, schedule: str | Sequence[int],
                 expect: Sequence[tuple[int, str]] | None = None) -> None:
        self.choices = decode_schedule(schedule) if isinstance(schedule, str) else list(schedule)
        self.expect = expect

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        expect = self.expect
        if expect is not None:
            mask = cpu_mask(runnable)
            if index >= len(expect) or expect[index] != (mask, what):
                was = (f"{cpu_set(expect[index][0])} at {expect[index][1]}"
                       if index < len(expect) else "no such choice point")
                raise NondeterminismError(
                    f"choice point {index}: runnable CPUs {cpu_set(mask)} at {what} on replay, "
                    f"{was} in the recorded run: the driver depends on something the schedule "
                    "does not fix (wall-clock time, real threads, unseeded randomness, "
                    "id()-ordered sets)")
        if index < len(self.choices):
            cpu = self.choices[index]
            if cpu not in runnable:
                raise NondeterminismError(
                    f"choice point {index} ({what}): the schedule picks cpu{cpu} but only "
                    f"{cpu_set(cpu_mask(runnable))} can run")
            return cpu
        return default


class PartialReplay(Strategy):
    """Follow the picks of a schedule where it has one and it can be followed; elsewhere
    (None, a CPU that cannot run, past the end) the default policy.  Shrinking tries
    schedules with picks taken out; the run tells what they become."""

    def __init__(self, picks: Sequence[int | None], name: str = "replay") -> None:
        self.picks = list(picks)
        self.name = name

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        if index < len(self.picks):
            cpu = self.picks[index]
            if cpu is not None and cpu in runnable:
                return cpu
        return default


@define(slots=True)
class _Node:
    options: list[int]
    pos: int
    mask: int


class DFSStrategy(Strategy):
    """One run of a bounded exhaustive search (use `DFSSearch` to enumerate runs).

    Follows the nodes of its prefix, then the default policy, opening a node at
    each new choice point with the alternatives the preemption budget allows
    (a preemption is a switch away from a CPU that could have continued;
    Musuvathi and Qadeer's iterative context bounding, PLDI 2007).
    """

    name = "dfs"

    def __init__(self, stack: list[_Node], bound: int) -> None:
        self.stack = stack
        self.bound = bound
        self._preemptions = 0

    def choose(self, runnable: list[int], current: int | None, index: int, what: str,
               default: int) -> int:
        stack = self.stack
        preemptible = (current is not None and current in runnable
                       and not what.startswith(YIELD))
        if index < len(stack):
            node = stack[index]
            if node.mask != cpu_mask(runnable):
                now = cpu_set(cpu_mask(runnable))
                raise NondeterminismError(
                    f"choice point {index} ({what}): runnable CPUs {now}, "
                    f"{cpu_set(node.mask)} when this prefix was first run")
            cpu = node.options[node.pos]
        else:
            first = default
            options = [first]
            if not preemptible or self._preemptions < self.bound:
                options += [c for c in runnable if c != first]
            stack.append(_Node(options, 0, cpu_mask(runnable)))
            cpu = first
        if preemptible and cpu != current:
            self._preemptions += 1
        return cpu


class DFSSearch:
    """Enumerates every schedule within the preemption bound, one run at a time."""

    def __init__(self, bound: int = 2) -> None:
        self.bound = bound
        self._stack: list[_Node] = []
        self._started = False
        self.exhausted = False

    def next_strategy(self) -> DFSStrategy | None:
        if self._started:
            stack = self._stack
            while stack and stack[-1].pos == len(stack[-1].options) - 1:
                stack.pop()
            if not stack:
                self.exhausted = True
                return None
            stack[-1].pos += 1
        self._started = True
        return DFSStrategy(self._stack, self.bound)


def cpu_mask(cpus: Sequence[int]) -> int:
    """A set of CPUs as a bit mask: {0, 2} -> 0b101."""
    m = 0
    for c in cpus:
        m |= 1 << c
    return m


def cpu_set(mask: int) -> str:
    """A bit mask of CPUs for a message: 0b101 -> "{cpu0, cpu2}"."""
    return "{" + ", ".join(f"cpu{i}" for i in range(mask.bit_length()) if mask >> i & 1) + "}"
