"""A lock-order graph in the manner of lockdep (kernel/locking/lockdep.c), rule LCK-3.

Locks are grouped into classes, as lockdep does: every page lock is one class
("page lock"), a driver's lock is known by the name it was created with, and
the VM's own locks by theirs.  Each time a CPU *waits* for a lock of class B
while holding a lock of class A, the edge A -> B is recorded with the place
it was seen.  An edge that closes a cycle is an inversion: two code paths
take the same locks in opposite orders, so some interleaving deadlocks, even
if the one that ran did not.

Trylocks add no edge (they cannot wait, lockdep's `trylock` case), but the
lock they take counts as held for later acquisitions.  Nesting a class under
itself (the VM's page lock then newpage's lock) is not an inversion here:
the kernel tells those apart with subclasses.
"""

from __future__ import annotations

from attrs import define, field, frozen


@frozen(slots=True)
class LockClass:
    """A lock class: `kind` is "page", "driver" or "vm"."""

    kind: str
    name: str

    def __str__(self) -> str:
        return self.name if self.kind == "page" else f"{self.name!r}"


#: the one class of every page's PG_locked
PAGE_LOCK = LockClass("page", "page lock")


@frozen(slots=True)
class Witness:
    """Where an edge A -> B was first seen: which CPU, in what code, waiting for B."""

    cpu: int
    where: str

    def __str__(self) -> str:
        return f"cpu{self.cpu} in {self.where}"


@frozen(slots=True)
class Inversion:
    """A new edge `held -> wanted` closing a cycle through `path` (LCK-3)."""

    held: LockClass
    wanted: LockClass
    witness: Witness
    #: the existing chain wanted -> ... -> held, each edge with its witness
    path: tuple[tuple[LockClass, LockClass, Witness], ...]

    def render(self) -> str:
        back = "; ".join(f"{a} -> {b} ({w})" for a, b, w in self.path)
        return (f"lock order inversion: {self.held} -> {self.wanted} ({self.witness}), "
                f"but earlier {back}")


@define(slots=True)
class LockDep:
    """The dependency graph of one run, and the inversions it found."""

    edges: dict[LockClass, dict[LockClass, Witness]] = field(factory=dict)
    inversions: list[Inversion] = field(factory=list)
    _reported: set[tuple[LockClass, LockClass]] = field(factory=set)

    def acquire(self, held: list[LockClass], wanted: LockClass, witness: Witness) -> None:
        """A CPU holding `held` (in order) is about to wait for `wanted`."""
        edges = self.edges
        for cls in held:
            if cls == wanted:
                continue
            out = edges.get(cls)
            if out is None:
                out = edges[cls] = {}
            if wanted in out:
                continue
            path = self._path(wanted, cls)
            out[wanted] = witness
            if path is not None and (cls, wanted) not in self._reported:
                self._reported.add((cls, wanted))
                self._reported.add((wanted, cls))
                self.inversions.append(Inversion(cls, wanted, witness, path))

    def _path(self, start: LockClass, goal: LockClass
              ) -> tuple[tuple[LockClass, LockClass, Witness], ...] | None:
        """A chain of recorded edges start -> ... -> goal (breadth first: the shortest)."""
        edges = self.edges
        if start not in edges:
            return None
        parent: dict[LockClass, tuple[LockClass, Witness]] = {}
        frontier = [start]
        seen = {start}
        while frontier:
            nxt = []
            for node in frontier:
                for to, wit in edges.get(node, {}).items():
                    if to in seen:
                        continue
                    seen.add(to)
                    parent[to] = (node, wit)
                    if to == goal:
                        chain = []
                        cur = to
                        while cur != start:
                            frm, w = parent[cur]
                            chain.append((frm, cur, w))
                            cur = frm
                        return tuple(reversed(chain))
                    nxt.append(to)
            frontier = nxt
        return None

    def render_graph(self) -> list[str]:
        """Every recorded edge, one line each (for reports)."""
        return [f"{a} -> {b} ({w})" for a, out in self.edges.items() for b, w in out.items()]
