"""Stateful fuzzing: random sequences of what the VM and the driver's users do, with the
contract's invariants checked after every step (Hypothesis RuleBasedStateMachine).

Steps: store, free, read, isolate, migrate (success in any mode; -EAGAIN through
a locked new page or the driver's "busy"/"pin" knobs; a permanent failure
through PG_writeback or the "map" knob; -ENOMEM through no new page),
putback, whole-zone compaction.  Hypothesis is seeded from
--seed and keeps no database, so a run is reproducible; a failure shrinks to
a short sequence printed as a recipe (with --quick it is printed unshrunk).
"""

from __future__ import annotations

import functools
from typing import Any

from ...compaction import compact_memory
from ...constants import MigrateMode
from ...errors import CallbackTimeout, ContractViolation
from ...page import ISOLATED, PAGE_MAPPING_MOVABLE, WRITEBACK, Page
from ..invariants import (
    check_no_leak,
    check_owned_pages,
    check_warnings,
    verify_driver,
    verify_objects,
)
from ..observation import PageSnapshot
from ..outcomes import CheckFailed
from ..registry import Context, check

MODES = (MigrateMode.ASYNC, MigrateMode.SYNC_LIGHT, MigrateMode.SYNC)


def _step(fn: Any) -> Any:
    """Mark the machine unclean while a step runs, so teardown knows a step failed.

    A callback that hung is remembered: every later example fails at once with
    the same error, so shrinking does not wait for the watchdog again and again.
    """
    @functools.wraps(fn)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.clean = False
        try:
            ret = fn(self, *args, **kwargs)
        except ContractViolation as exc:
            if _hung(exc):
                self.hung.append(exc)
            if exc.page is not None:
                # the example's bench is not kept: what the runner blames by, noted here
                moved = self.bench.journal.moved_here(exc.page)
                exc.new_page_of_migration = moved  # type: ignore[attr-defined]
            raise
        self.clean = True
        return ret

    return run


def _hung(exc: BaseException) -> bool:
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, CallbackTimeout) or "(hung)" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _machine(ctx: Context) -> type:
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

    caps = ctx.caps
    hung = ctx.scratch.setdefault("hung", [])
    examples = ctx.scratch.setdefault("examples", [0, 0])   # [made, planned]

    class DriverMachine(RuleBasedStateMachine):
        """One driver instance on a small VM, driven at random."""

        def __init__(self) -> None:
            super().__init__()
            self.hung = hung
            if hung:
                raise hung[0]
            examples[0] += 1
            ctx.progress(min(examples[0], examples[1]), examples[1])
            self.bench = ctx.bench("fuzz", nr_pages=256, pageblock_order=5, max_order=7)
            # Each example has its own VM, reported through its exception if it fails:
            # the check keeps none of them (hundreds when a failure is shrunk).
            ctx.benches.remove(self.bench)
            self.cpus = self.bench.vm.cpus
            #: False while a step runs; a step that raised leaves it False
            self.clean = True

        # --- the driver's users -------------------------------------------------------
        @rule(n=st.integers(1, 6))
        @_step
        def store(self, n: int) -> None:
            # New objects never land in a page the driver gave up for isolation (ISO-2).
            vm = self.bench.vm
            isolated = {p: PageSnapshot.take(vm, p).digest for p in self._isolated()}
            self.bench.fill(n)
            for page, digest in isolated.items():
                if page.flags & ISOLATED and PageSnapshot.take(vm, page).digest != digest:
                    raise CheckFailed("ISO-2", "store() wrote into a page isolate_page had "
                                      "reported as taken out of the driver's structures",
                                      page=page, hook="store")

        @precondition(lambda self: self.bench.objects and (caps.free_while_isolated or
                                                           not self._isolated()))
        @rule(pick=st.integers(0, 10**6), n=st.integers(1, 4))
        @_step
        def free(self, pick: int, n: int) -> None:
            for _ in range(n):
                handles = list(self.bench.objects)
                if not handles:
                    return
                self.bench.free(handles[pick % len(handles)])

        @rule()

        @_step
        def read_all(self) -> None:
            verify_objects(self.bench, "API-1", "in a random sequence")

        # --- the VM -----------------------------------------------------------------------
        @rule(pick=st.integers(0, 10**6), n=st.integers(1, 4))
        @_step
        def isolate(self, pick: int, n: int) -> None:
            free = [p for p in self.bench.pages() if not p.flags & ISOLATED]
            for i in range(min(n, len(free))):
                self.bench.isolate(free[(pick + i) % len(free)])

        @precondition(lambda self: self._isolated())
        @rule(mode=st.sampled_from(MODES))
        @_step
        def migrate(self, mode: MigrateMode) -> None:
            self.bench.migrate(self.bench.to_list(self._isolated()), mode)

        @precondition(lambda self: self._isolated())
        @rule()
        @_step
        def migrate_eagain(self) -> None:
            """Every new page is locked by somebody else: -EAGAIN, pages stay isolated."""
            def locked(page: Any, private: Any) -> Any:
                newpage = self.bench.vm.alloc_page()
                if newpage is not None:
                    self.cpus.trylock_page(newpage)
                return newpage

            def put_locked(newpage: Any, private: Any) -> None:
                self.cpus.unlock_page(newpage)
                self.cpus.put_page(newpage)

            self.bench.migrate(self.bench.to_list(self._isolated()), MigrateMode.SYNC,
                               get_new_page=locked, put_new_page=put_locked, putback=False)

        @precondition(lambda self: self._isolated())
        @rule()
        @_step
        def migrate_permanent_failure(self) -> None:
            """PG_writeback in ASYNC mode: -EBUSY, each page put back at once."""
            pages = self._isolated()
            # Only a page its driver still holds can be under I/O.
            busy = [p for p in pages if p._refcount > 1]
            for p in busy:
                p.flags |= WRITEBACK
            try:
                self.bench.migrate(self.bench.to_list(pages), MigrateMode.ASYNC)
            finally:
                for p in busy:
                    p.flags &= ~WRITEBACK

        @precondition(lambda self: self._isolated())
        @rule()
        @_step
        def migrate_enomem(self) -> None:
            self.bench.migrate(self.bench.to_list(self._isolated()), MigrateMode.SYNC,
                               get_new_page=lambda page, private: None, putback=False)

        @precondition(lambda self: self._isolated() and "busy" in caps.knobs)
        @rule()
        @_step
        def migrate_driver_busy(self) -> None:
            """The driver's lock is held ("busy" knob): its migratepage says -EAGAIN."""
            self.bench.call("hold")
            try:
                self.bench.migrate(self.bench.to_list(self._isolated()), MigrateMode.SYNC,
                                   putback=False)
            finally:
                self.bench.call("release")

        @precondition(lambda self: self._isolated() and self.bench.objects and
                      caps.knobs & {"pin", "map"})
        @rule(pick=st.integers(0, 10**6), data=st.data())
        @_step
        def migrate_object_held(self, pick: int, data: Any) -> None:
            """One object pinned (-EAGAIN) or mapped (a permanent failure) while migrating."""
            knob = data.draw(st.sampled_from(sorted(caps.knobs & {"pin", "map"})))
            undo = {"pin": "unpin", "map": "unmap"}[knob]
            handles = list(self.bench.objects)
            handle = handles[pick % len(handles)]
            self.bench.call(knob, handle)
            held = self.bench.pages_holding([handle])
            since = len(self.bench.spy.results)
            try:
                self.bench.migrate(self.bench.to_list(self._isolated()), MigrateMode.SYNC)
                self.bench.moved_while_held(held, {"pin": "pinned", "map": "mapped"}[knob],
                                            since)
            finally:
                if handle in self.bench.objects:
                    self.bench.call(undo, handle)

        @precondition(lambda self: self._isolated())
        @rule()
        @_step
        def putback(self) -> None:
            self.bench.putback_isolated()

        @rule()

        @_step
        def compact(self) -> None:
            compact_memory(self.bench.vm)

        # --- invariants -----------------------------------------------------------------------
        @invariant()
        @_step
        def contract_holds(self) -> None:
            bench = self.bench
            bench.lru.verify("a random step")
            check_warnings(bench)
            for page in bench.vm.isolated:
                if not page.flags & ISOLATED:
                    released = page.mapping == PAGE_MAPPING_MOVABLE
                    raise CheckFailed("REL-2" if released else "FLG-6",
                                      "a page the VM holds isolated lost PG_isolated: only the "
                                      "VM clears it", page=page)
            check_owned_pages(bench, "FLG-4", "after a random step")
            verify_objects(bench, "MIG-7", "after a random step")
            verify_driver(bench, "API-1", "after a random step")
            check_no_leak(bench, "REL-1", "after a random step")

        def teardown(self) -> None:
            bench = self.bench
            if bench.guarded.destroyed:
                return
            if not self.clean:
                return  # a step failed: its error is the one to report
            self.clean = False
            bench.putback_isolated()
            bench.destroy()
            self.clean = True

        def _isolated(self) -> list[Page]:
            return [p for p in self.bench.lru.owner if p.flags & ISOLATED]

    return DriverMachine


@check("FUZZ/state-machine",
       "random store/free/isolate/migrate/putback/compaction sequences keep the contract",
       rules=("ISO-4", "MIG-7", "MIG-8", "PUT-2", "PUT-3", "REL-1", "REL-2", "API-1"),
       kind="fuzz")
def state_machine(ctx: Context) -> str:
    from hypothesis import HealthCheck, Phase, seed as hypothesis_seed, settings
    from hypothesis.errors import Flaky
    from hypothesis.reporting import with_reporter
    from hypothesis.stateful import get_state_machine_test

    examples = ctx.max_examples if ctx.max_examples is not None else ctx.size(200, 10)
    ctx.scratch["examples"] = [0, examples]
    machine = _machine(ctx)
    conf = settings(max_examples=examples, stateful_step_count=ctx.size(30, 15),
                    deadline=None, database=None, derandomize=False, print_blob=False,
                    suppress_health_check=list(HealthCheck),
                    # --quick reports the failing sequence as found, unshrunk
                    phases=(Phase.explicit, Phase.generate) if ctx.quick else
                    (Phase.explicit, Phase.generate, Phase.shrink))
    test = hypothesis_seed(ctx.seed)(get_state_machine_test(machine, settings=conf))
    lines: list[str] = []
    try:
        with with_reporter(lambda text: lines.append(str(text))):
            test()
    except Flaky as exc:
        if ctx.scratch.get("hung"):
            hung = ctx.scratch["hung"][0]
            raise hung from hung.__cause__
        found = [e for e in getattr(exc, "exceptions", ()) if isinstance(e, ContractViolation)]
        if found:
            # It failed once; replaying the same steps did not: report the failure anyway.
            first = _first(found[0])
            first.recipe = [  # type: ignore[attr-defined]
                ("(the same steps did not fail again: the driver is not deterministic, "
                 "so no shortest sequence)")]
            raise first from first.__cause__
        # Module-level state (a global counter) is legal but defeats replaying.
        ctx.warnings.append(f"the driver behaves differently on the same sequence, so failures "
                            f"cannot be replayed: {str(exc).splitlines()[0]}")
        return "not deterministic"
    except BaseException as exc:
        exc = _first(exc)
        # Hypothesis attaches the shrunk sequence as notes (older versions report it).
        text = "\n".join(lines + [str(n) for n in getattr(exc, "__notes__", ())])
        recipe = [ln for ln in text.splitlines()
                  if ln.startswith("state") and not ln.startswith("state.contract_holds")]
        exc.recipe = recipe  # type: ignore[attr-defined]
        # its own cause kept: the driver's frames in it say where the driver was
        raise exc from exc.__cause__
    finally:
        ctx.benches.clear()  # every example made its own VM; nothing to report from them
    return f"{examples} random sequences"


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
