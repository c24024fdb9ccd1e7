"""Race scenarios over the driver protocol: explore them, replay them.

A `Scenario` sets up a fresh VM and driver instance, then runs one body per
simulated CPU (mmplug.sched) and checks the result.  The generic scenarios
use only the driver-facing protocol (store/read/free/destroy/pages) and the
VM's own isolate_movable_page / migrate_pages / putback_movable_pages, so
they apply to any driver; a few are chosen by driver name (balloon,
zsmalloc) for races the kernel's history shows in those drivers.

The API `mmplug check-driver --races` uses:

    from mmplug import races
    for scenario in races.scenarios_for(loaded_driver):
        result = races.explore(driver, scenario, strategy="random", seed=0, runs=1000)
        print(result.render())          # every failure with its seed and schedule
    run = races.replay(driver, "free_while_isolated", "0x3-1-0")
    run = races.check_determinism(driver, "free_while_isolated", "0x3-1-0")

`driver` is an entry-point name, a module path or a .py file (as
PluginHost.load takes), a LoadedDriver, or a plugin object.  Strategies:
"random" (seeded, run i uses seed + i), "pct" (depth `depth`) and "dfs"
(every schedule within `preemption_bound` preemptions, or `runs` of them).
The same driver, scenario, strategy and seed give the same runs and results.
"""

from __future__ import annotations

import re
import traceback
from typing import Any, Callable, Sequence

import attrs
from attrs import define, field, frozen

from .constants import (
    GFP_HIGHUSER_MOVABLE, ISOLATE_ASYNC_MIGRATE, ISOLATE_UNEVICTABLE, MigrateMode,
)
from .errors import ContractViolation, Deadlock, NoMemory, UsageError
from .migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from .page import ISOLATED, LOCKED, LRU, PAGE_MAPPING_FLAGS, PAGE_MAPPING_MOVABLE, Page
from .plugins import Capabilities, LoadedDriver, PluginHost
from .cpus.schedule import (
    DFSSearch, NondeterminismError, PCTStrategy, RandomStrategy, ReplayStrategy, Strategy,
    decode_schedule,
)
from .cpus.scheduler import DEFAULT_MAX_STEPS, CpuReport, Scheduler
from .vm import VM, VMConfig

#: a small machine: races need few pages, and each run builds a fresh one
RACE_VM = VMConfig(nr_pages=256, pageblock_order=5, max_order=7, min_free_pages=1)

STRATEGIES = ("random", "pct", "dfs")


# --- the environment a scenario's code sees --------------------------------------------------

@define(slots=True, eq=False)
class RaceEnv:
    """One run's VM, driver instance and bookkeeping; the helpers scenarios call.

    `objects` maps every live handle to the bytes stored under it; `targets`
    are the pages the compactors go for (setup picks them); `notes` is the
    scenario's own scratch space.
    """

    vm: VM
    instance: Any
    driver: str
    capabilities: Capabilities
    sched: Scheduler
    objects: dict[int, bytes] = field(factory=dict)
    targets: list[Page] = field(factory=list)
    notes: dict[str, Any] = field(factory=dict)
    #: cpu -> the migrate lists it holds right now (ISO-5): a page on one of them is
    #: isolated by that cpu; a migrated page leaves its list, so a reused frame does not count
    isolating: dict[int, list[PageList]] = field(factory=dict)

    @property
    def cpu(self) -> int:
        return self.sched.current().cpu

    # --- the driver protocol, with errors that name the driver (API-1) ---
    def _call(self, op: str, fn: Callable, *args: Any) -> Any:
        sched = self.sched
        prev = sched.enter(f"{self.driver}.{op}")
        try:
            return self.vm.call_driver(self.driver, op, fn, *args,
                                       expected=(NoMemory, Deadlock, NondeterminismError))
        finally:
            sched.leave(prev)

    def store(self, data: bytes) -> int:
        handle = self._call("store", self.instance.store, data)
        self.objects[handle] = bytes(data)
        return handle

    def read(self, handle: int) -> bytes:
        """read(handle), checked against what was stored (API-1)."""
        got = self._call("read", self.instance.read, handle)
        want = self.objects[handle]
        if self.capabilities.stores_data and bytes(got) != want:
            raise ContractViolation("API-1", f"read({handle}) on cpu{self.cpu} returned "
                                    f"{bytes(got)[:16]!r}... instead of the {len(want)} bytes "
                                    "stored (a reader saw a page being migrated or freed)",
                                    driver=self.driver, hook="read")
        return got

    def free(self, handle: int) -> None:
        self.objects.pop(handle)
        self._call("free", self.instance.free, handle)

    def pages(self) -> list[Page]:
        return sorted(self._call("pages", self.instance.pages), key=lambda p: p.pfn)

    def payload(self, n: int, size: int = 48) -> bytes:
        """Distinct, recognisable bytes for object `n` (never all zero)."""
        size = min(size, self.capabilities.max_object_size or size)
        return bytes((n * 37 + i * 11 + 1) & 0xFF or 1 for i in range(size))

    # --- the VM side ---
    def new_page(self, page: Page, private: Any) -> Page | None:
        """get_new_page for migrate_pages: any free page (as compaction_alloc does)."""
        return self.vm.zone.alloc_pages(0, GFP_HIGHUSER_MOVABLE, ignore_watermark=True)

    def put_new_page(self, page: Page, private: Any) -> None:
        self.vm.cpus.put_page(page)

    def isolate(self, pages: Sequence[Page] | None = None,
                mode: MigrateMode = MigrateMode.SYNC) -> PageList:
        """The migrate scanner over `pages` (default: targets): what it isolated (ISO-1, ISO-5).

        Only pages that look movable and not isolated are tried, as
        isolate_migratepages_block does; two CPUs holding the same page
        isolated at once is an ISO-5 violation.
        """
        vm = self.vm
        cpu = self.cpu
        iso_mode = ISOLATE_UNEVICTABLE | (ISOLATE_ASYNC_MIGRATE if mode == MigrateMode.ASYNC
                                          else 0)
        lst = PageList(f"cpu{cpu}.migratepages")
        self.isolating.setdefault(cpu, []).append(lst)
        for page in self.targets if pages is None else pages:
            if (page.flags & (LRU | ISOLATED)
                    or page.mapping & PAGE_MAPPING_FLAGS != PAGE_MAPPING_MOVABLE):
                continue
            if isolate_movable_page(vm, page, iso_mode) != 0:
                continue
            for other, lists in self.isolating.items():
                if other != cpu and any(page in held.pages for held in lists):
                    raise ContractViolation("ISO-5", f"cpu{cpu} isolated a page cpu{other} "
                                            "holds isolated", driver=self.driver, page=page)
            lst.add(page)
        return lst

    def migrate(self, lst: PageList, mode: MigrateMode = MigrateMode.SYNC) -> int:
        """migrate_pages, then putback of whatever is left (MIG-9)."""
        rc = 0
        if lst:
            rc = migrate_pages(self.vm, lst, self.new_page, self.put_new_page, None, mode)
            if rc:
                putback_movable_pages(self.vm, lst)
        self._done(lst)
        return rc

    def _done(self, lst: PageList) -> None:
        lists = self.isolating.get(self.cpu, [])
        if lst in lists:
            lists.remove(lst)

    def putback(self, lst: PageList) -> None:
        putback_movable_pages(self.vm, lst)
        self._done(lst)

    def compact(self, mode: MigrateMode = MigrateMode.SYNC) -> int:
        """Isolate the targets and migrate them: one compactor's round."""
        return self.migrate(self.isolate(mode=mode), mode)

    def destroy(self) -> None:
        """Tear the instance down and check nothing still points at it (REL-3, BUG-5).

        An isolated page that still belongs to the instance (not released
        with __ClearPageMovable) would later be handed to putback_page or
        migratepage of a destroyed instance.
        """
        vm = self.vm
        rec = vm.instance_record(self.instance)
        self._call("destroy", self.instance.destroy)
        self.objects.clear()
        rec.destroyed = True
        word = rec.mapping.handle | PAGE_MAPPING_MOVABLE
        left = [p for p in vm.zone.pages if p.mapping == word]
        isolated = [p for p in left if p.flags & ISOLATED]
        if isolated:
            raise ContractViolation("REL-3", f"destroy returned while {len(isolated)} of the "
                                    "instance's pages are isolated and still movable: the VM "
                                    "will call putback_page/migratepage of a destroyed "
                                    "instance", driver=self.driver, hook="destroy",
                                    page=isolated[0])
        if left:
            raise ContractViolation("REL-3", f"{len(left)} page(s) still point at the mapping "
                                    "after destroy", driver=self.driver, hook="destroy",
                                    page=left[0])
        rec.mapping.a_ops = None


# --- scenarios ------------------------------------------------------------------------------

def _always(loaded: LoadedDriver) -> bool:
    return True


@frozen(slots=True)
class Scenario:
    """A race: setup on one CPU, one body per CPU run concurrently, a final check.

    `rules` are the contract rules it exercises; `applies(loaded)` says
    whether it makes sense for a driver (by name or capabilities).  The
    common end-of-run checks (nothing left isolated or locked, every live
    object reads back, verify(), no leaked page, no VM warning) run after
    `check`.
    """

    name: str
    rules: tuple[str, ...]
    summary: str
    setup: Callable[[RaceEnv], None]
    cpus: tuple[Callable[[RaceEnv], None], ...]
    check: Callable[[RaceEnv], None] | None = None
    applies: Callable[[LoadedDriver], bool] = _always
    config: VMConfig = RACE_VM


def _setup_objects(n: int) -> Callable[[RaceEnv], None]:
    def setup(env: RaceEnv) -> None:
        for i in range(n):
            env.store(env.payload(i))
        env.targets = env.pages()
        env.notes["handles"] = sorted(env.objects)
    return setup


def _compactor(env: RaceEnv) -> None:
    env.compact(MigrateMode.SYNC)


def _isolate_then_putback(env: RaceEnv) -> None:
    env.putback(env.isolate(mode=MigrateMode.SYNC))


def _free_all(env: RaceEnv) -> None:
    for handle in env.notes["handles"]:
        env.free(handle)


def _read_free_read(env: RaceEnv) -> None:
    first, *rest = env.notes["handles"]
    for h in rest:
        env.read(h)
    env.free(first)
    for h in rest:
        env.read(h)


def _destroy(env: RaceEnv) -> None:
    env.destroy()


def _frees_isolated(loaded: LoadedDriver) -> bool:
    return loaded.info is not None and loaded.info.capabilities.free_while_isolated


def _is(name: str) -> Callable[[LoadedDriver], bool]:
    return lambda loaded: loaded.info is not None and loaded.info.name == name


def _check_two_compactors(env: RaceEnv) -> None:
    for lists in env.isolating.values():
        if any(held.pages for held in lists):
            raise ContractViolation("PUT-3", "a compactor ended with pages still isolated",
                                    driver=env.driver)


def _balloon_setup(env: RaceEnv) -> None:
    _setup_objects(3)(env)


def _balloon_deflate(env: RaceEnv) -> None:
    """One page deflated by handle, then leak_balloon() for the rest."""
    first, *rest = env.notes["handles"]
    env.free(first)
    deflate = getattr(env.instance, "deflate", None)
    if not callable(deflate):
        for handle in rest:
            env.free(handle)
        return
    env._call("deflate", deflate, len(rest))
    # leak_balloon() may stop early at isolated pages: those stay in the balloon
    live = getattr(env.instance, "handles", {})
    for handle in [h for h in env.objects if h not in live]:
        del env.objects[handle]


#: 3 KiB objects: their size class packs 4 of them into a zspage of 3 pages
#: (get_pages_per_zspage picks the least waste), so a zspage has a subpage chain
ZS_OBJECT_SIZE = 3072


def _zs_setup(env: RaceEnv) -> None:
    size = ZS_OBJECT_SIZE * env.vm.zone.page_size // 4096
    for i in range(4):
        env.store(env.payload(i, size))
    pages = env.pages()
    # a middle subpage: freeing walks the chain across it (BUG-7)
    env.targets = pages[1:] if len(pages) > 1 else pages
    env.notes["handles"] = sorted(env.objects)


def _free_all_then_work(env: RaceEnv) -> None:
    """Free every object, then run the pool's deferred work here, as a kworker would."""
    _free_all(env)
    work = getattr(env.instance, "run_deferred_work", None)
    if callable(work):
        env._call("run_deferred_work", work)


def _check_zspages_freed(env: RaceEnv) -> None:
    """With every object freed, no zspage may survive once deferred work ran (DRV-Z4)."""
    work = getattr(env.instance, "run_deferred_work", None)
    if callable(work):
        env._call("run_deferred_work", work)
    left = env.pages() if not env.objects else []
    if left:
        raise ContractViolation("DRV-Z4", f"every object was freed but {len(left)} page(s) "
                                "of an emptied zspage are still held: a zspage emptied while "
                                "isolated was put back instead of freed (BUG-6)",
                                driver=env.driver, page=left[0])


TWO_COMPACTORS = Scenario(
    "two_compactors", ("ISO-5", "ISO-1", "PUT-3"),
    "two compactors scan the same pages: a page isolated by one is skipped by the other",
    _setup_objects(3), (_compactor, _compactor), _check_two_compactors)

FREE_WHILE_ISOLATED = Scenario(
    "free_while_isolated", ("REL-1", "REL-2", "MIG-3", "MIG-6", "BUG-4"),
    "the only object of a page is freed while a compactor isolates and migrates the page",
    _setup_objects(1), (_compactor, _free_all), None, _frees_isolated)

FREE_DURING_PUTBACK = Scenario(
    "free_during_putback", ("REL-2", "PUT-1", "PUT-3"),
    "the only object of a page is freed while the page is isolated and then put back",
    _setup_objects(1), (_isolate_then_putback, _free_all), None, _frees_isolated)

FREE_READ_WHILE_COPYING = Scenario(
    "free_read_while_copying", ("BUG-7", "BUG-13", "MIG-7", "API-1"),
    "objects are read and one is freed while their page is being migrated",
    _setup_objects(3), (_compactor, _read_free_read), None, _frees_isolated)

DESTROY_WHILE_ISOLATED = Scenario(
    "destroy_while_isolated", ("BUG-5", "REL-3", "REL-2"),
    "the instance is destroyed while a compactor holds one of its pages isolated",
    _setup_objects(2), (_compactor, _destroy), None, _frees_isolated)

BALLOON_DEFLATE_VS_MIGRATE = Scenario(
    "balloon_deflate_vs_migrate", ("BUG-9", "BUG-12", "DRV-B1", "DRV-B3"),
    "the balloon deflates while compaction isolates and migrates its pages",
    _balloon_setup, (_compactor, _balloon_deflate), None, _is("balloon"))

ZSPAGE_EMPTIED_WHILE_ISOLATED = Scenario(
    "zspage_emptied_while_isolated", ("BUG-6", "DRV-Z4", "DRV-Z5"),
    "every object of a zspage is freed while one of its subpages is isolated, then put back",
    _zs_setup, (_isolate_then_putback, _free_all), _check_zspages_freed, _is("zsmalloc"))

ZSPAGE_FREED_WHILE_MIGRATING = Scenario(
    "zspage_freed_while_migrating", ("BUG-6", "BUG-7", "DRV-Z3", "DRV-Z5"),
    "every object of a zspage is freed while one of its subpages migrates",
    _zs_setup, (_compactor, _free_all_then_work), _check_zspages_freed, _is("zsmalloc"))

#: every scenario, in the order check-driver runs them
SCENARIOS: tuple[Scenario, ...] = (
    TWO_COMPACTORS, FREE_WHILE_ISOLATED, FREE_DURING_PUTBACK, FREE_READ_WHILE_COPYING,
    DESTROY_WHILE_ISOLATED, BALLOON_DEFLATE_VS_MIGRATE, ZSPAGE_EMPTIED_WHILE_ISOLATED,
    ZSPAGE_FREED_WHILE_MIGRATING,
)


def get_scenario(name: str | Scenario) -> Scenario:
    """A scenario by name; UsageError listing the names if there is none."""
    if isinstance(name, Scenario):
        return name
    for sc in SCENARIOS:
        if sc.name == name:
            return sc
    raise UsageError(f"no race scenario {name!r}; scenarios are "
                     f"{', '.join(s.name for s in SCENARIOS)}")


def scenarios_for(driver: Any) -> list[Scenario]:
    """The scenarios that apply to a driver (generic ones, plus its own)."""
    loaded = load_driver(driver)
    return [sc for sc in SCENARIOS if sc.applies(loaded)]


# --- the end-of-run checks -------------------------------------------------------------------

def check_common(env: RaceEnv) -> None:
    """What must hold after any scenario, whatever the interleaving."""
    vm = env.vm
    drv = env.driver
    if vm.warnings:
        w = vm.warnings[0]
        raise ContractViolation(w.rule, f"WARN_ON_ONCE fired: {w.message}", driver=w.driver,
                                hook=w.hook)
    if vm.isolated:
        page = next(iter(vm.isolated))
        raise ContractViolation("PUT-3", f"{len(vm.isolated)} page(s) still isolated after "
                                "every CPU finished", driver=drv, page=page)
    for page in vm.zone.pages:
        if page.flags & LOCKED:
            raise ContractViolation("LCK-2", "a page is still locked after every CPU finished",
                                    driver=drv, page=page)
        if page.flags & ISOLATED and not page.flags & LRU:
            raise ContractViolation("PUT-3", "a page is still PG_isolated after every CPU "
                                    "finished", driver=drv, page=page)
    held = env.sched.held_locks()
    if held:
        raise ContractViolation("LCK-2", f"lock(s) still held after every CPU finished: "
                                f"{', '.join(held)}", driver=drv)
    rec = vm.instance_record(env.instance)
    if rec.destroyed:
        return
    for handle in sorted(env.objects):
        env.read(handle)
    verify = getattr(env.instance, "verify", None)
    if callable(verify):
        try:
            vm.call_driver(drv, "verify", verify, expected=(AssertionError,))
        except AssertionError as exc:
            raise ContractViolation("API-1", f"verify() failed after the race: {exc}",
                                    driver=drv, hook="verify") from exc
    for page in env.pages():
        if page._refcount <= 0:
            raise ContractViolation("REF-1", "the driver lists a page with no reference "
                                    "(freed under it)", driver=drv, page=page)
    leaked = vm.unclaimed_pages()
    if leaked:
        raise ContractViolation("PUT-3", f"{len(leaked)} page(s) in use that nobody owns "
                                "(leaked)", driver=drv, page=leaked[0])


# --- results ------------------------------------------------------------------------------------

@frozen(slots=True)
class RunResult:
    """One run: how it ended, and the schedule that reproduces it.

    `kind` is "ok", "violation" (a rule broken), "deadlock", "livelock",
    "inversion" (LCK-3 lock order, found even when no deadlock happened),
    "nondeterminism" or "error" (an unexpected exception).
    """

    driver: str
    scenario: str
    strategy: str
    seed: int | None
    schedule: str
    kind: str
    rule: str | None = None
    message: str = ""
    cpu: int | None = None
    steps: int = 0
    cpus: tuple[CpuReport, ...] = ()
    inversions: tuple[str, ...] = ()
    trace: tuple[tuple[int, str], ...] = ()
    replayable: bool | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def signature(self) -> str:
        """The failure without its numbers: two runs with the same one found the same bug."""
        return re.sub(r"0x[0-9a-f]+|\d+", "#", f"{self.kind} {self.rule} {self.message}")

    def replay_command(self) -> str:
        return (f"mmplug check-driver {self.driver} -k RACE/explore --races "
                f"--scenario {self.scenario} --replay {self.schedule}")

    def render(self) -> str:
        seed = f"seed {self.seed}" if self.seed is not None else "no seed"
        head = (f"{self.scenario} on {self.driver}: {self.kind}"
                f"{' ' + self.rule if self.rule else ''} ({self.strategy}, {seed}, "
                f"schedule {self.schedule}, {self.steps} steps)")
        if self.ok:
            return head
        lines = [head, f"  {self.message}"]
        if self.kind in ("deadlock", "livelock") or (self.cpus and self.kind != "inversion"):
            lines += [f"  {c.render()}" for c in self.cpus if c.state != "done"]
        lines += [f"  also: {inv}" for inv in self.inversions
                  if self.kind != "inversion" or inv != self.message]
        if self.replayable is False:
            lines.append("  (the schedule did not reproduce it: the driver is nondeterministic)")
        lines.append(f"  replay: {self.replay_command()}")
        return "\n".join(lines)

    __str__ = render


@frozen(slots=True)
class ExploreResult:
    """The runs of one scenario on one driver, and the distinct failures found."""

    driver: str
    scenario: str
    strategy: str
    seed: int
    runs: int
    failures: tuple[RunResult, ...]
    #: dfs only: every schedule within the preemption bound was run
    exhausted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self) -> str:
        what = f"{self.runs} run(s)" + (", search complete" if self.exhausted else "")
        head = (f"{self.scenario} on {self.driver}: {self.strategy}, seed {self.seed}, {what}: "
                + ("ok" if self.ok else f"{len(self.failures)} failure(s)"))
        return "\n".join([head] + [f.render() for f in self.failures])

    __str__ = render


# --- running -------------------------------------------------------------------------------------

def load_driver(driver: Any) -> LoadedDriver:
    """A LoadedDriver from a spec string, a LoadedDriver or a plugin object."""
    if isinstance(driver, LoadedDriver):
        return driver
    host = PluginHost()
    if isinstance(driver, str):
        return host.get(driver)
    loaded = host.register(driver)
    if not loaded.ok:
        raise UsageError(f"driver {loaded.name!r} failed to load: {loaded.reason}")
    return loaded


def _classify(exc: BaseException) -> tuple[str, str | None, str]:
    if isinstance(exc, NondeterminismError):
        return "nondeterminism", None, str(exc)
    if isinstance(exc, Deadlock):
        return "deadlock", "LCK-3", str(exc)
    if isinstance(exc, ContractViolation):
        return "violation", exc.rule, str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else ""
    return "error", None, f"{type(exc).__name__}: {exc}{where}"


def run_once(driver: Any, scenario: Scenario | str, strategy: Strategy | None = None, *,
             max_steps: int = DEFAULT_MAX_STEPS, options: dict | None = None,
             timeout: float | None = None) -> RunResult:
    """One run of `scenario` on a fresh VM under `strategy` (default: the default policy).

    `timeout` is the time limit of one driver call (default: the scenario's VMConfig).
    """
    loaded = load_driver(driver)
    sc = get_scenario(scenario)
    strategy = strategy or Strategy()
    name = loaded.info.name if loaded.info else loaded.name
    sched = Scheduler(cpus=len(sc.cpus), max_steps=max_steps)
    config = sc.config if timeout is None else attrs.evolve(sc.config, callback_timeout=timeout)
    vm = VM(config, cpus=sched)
    base = dict(driver=name, scenario=sc.name, strategy=strategy.name, seed=strategy.seed)
    try:
        instance = vm.create_from(loaded, **(options or {}))
        env = RaceEnv(vm, instance, name, loaded.info.capabilities, sched)
        sc.setup(env)
    except Exception as exc:
        kind, rule, msg = _classify(exc)
        return RunResult(schedule="-", kind=kind, rule=rule, message=f"setup: {msg}", **base)
    out = sched.run([(lambda body=body: body(env)) for body in sc.cpus], strategy)
    error = out.error
    if error is None and not out.deadlock and not out.livelock:
        try:
            if sc.check is not None:
                sc.check(env)
            check_common(env)
        except Exception as exc:
            error = exc
    inversions = tuple(inv.render() for inv in sched.lockdep.inversions)
    fields = dict(schedule=out.schedule, steps=out.steps, cpus=out.cpus,
                  inversions=inversions, trace=out.trace, **base)
    if out.deadlock:
        return RunResult(kind="deadlock", rule="LCK-3", cpu=None, message=(
            "deadlock: every CPU that has not finished is blocked"), **fields)
    if out.livelock:
        return RunResult(kind="livelock", message=(
            f"no end after {max_steps} schedule points: a CPU spins without progress"), **fields)
    if error is not None:
        kind, rule, msg = _classify(error)
        if kind == "deadlock":
            msg = f"deadlock: {msg}"
        return RunResult(kind=kind, rule=rule, message=msg, cpu=out.error_cpu, **fields)
    if inversions:
        return RunResult(kind="inversion", rule="LCK-3", message=inversions[0], **fields)
    return RunResult(kind="ok", **fields)


def replay(driver: Any, scenario: Scenario | str, schedule: str, *,
           max_steps: int = DEFAULT_MAX_STEPS, options: dict | None = None,
           timeout: float | None = None) -> RunResult:
    """Run `scenario` again under `schedule` (as printed by a failure): the same result."""
    try:
        decode_schedule(schedule)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return run_once(driver, scenario, ReplayStrategy(schedule), max_steps=max_steps,
                    options=options, timeout=timeout)


def check_determinism(driver: Any, scenario: Scenario | str, schedule: str, *,
                      max_steps: int = DEFAULT_MAX_STEPS, options: dict | None = None,
                      timeout: float | None = None) -> RunResult:
    """Replay `schedule` twice; the second must see the same runnable CPUs at every step.

    Returns the second run, of kind "nondeterminism" if they differed.
    """
    driver = load_driver(driver)  # once: a module's state must carry over, as it would
    first = replay(driver, scenario, schedule, max_steps=max_steps, options=options,
                   timeout=timeout)
    strategy = ReplayStrategy(schedule, expect=first.trace)
    second = run_once(driver, scenario, strategy, max_steps=max_steps, options=options,
                      timeout=timeout)
    if second.kind != "nondeterminism" and second.signature() != first.signature():
        return RunResult(driver=second.driver, scenario=second.scenario, strategy="replay",
                         seed=None, schedule=schedule, kind="nondeterminism", message=(
                             f"the same schedule ended two ways: {first.kind} "
                             f"({first.message}) then {second.kind} ({second.message})"))
    return second


def explore(driver: Any, scenario: Scenario | str, *, strategy: str = "random", seed: int = 0,
            runs: int = 1000, preemption_bound: int = 2, depth: int = 3, max_failures: int = 1,
            max_steps: int = DEFAULT_MAX_STEPS, options: dict | None = None,
            timeout: float | None = None) -> ExploreResult:
    """Run `scenario` under many schedules; collect distinct failures with their schedules.

    random: run i uses seed + i.  pct: one run under the default policy
    measures the number of choice points k, then run i uses PCT(seed + i,
    depth, k).  dfs: schedules in depth-first order within `preemption_bound`
    preemptions, up to `runs` of them (`exhausted` says whether all were run).
    Each failure is replayed once with the nondeterminism check, so
    `replayable` says whether its schedule reproduces it.  Stops after
    `max_failures` distinct failures.
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if runs < 1:
        raise UsageError("runs must be at least 1")
    if strategy == "pct" and depth < 1:
        raise UsageError("the PCT depth must be at least 1")
    loaded = load_driver(driver)
    sc = get_scenario(scenario)
    name = loaded.info.name if loaded.info else loaded.name
    failures: list[RunResult] = []
    seen: set[str] = set()
    kw = dict(max_steps=max_steps, options=options, timeout=timeout)
    dfs = DFSSearch(preemption_bound) if strategy == "dfs" else None
    length = 0
    if strategy == "pct":
        calib = run_once(loaded, sc, None, **kw)
        length = max(len(calib.trace), 1)
    done = 0
    for i in range(runs):
        if dfs is not None:
            strat: Strategy | None = dfs.next_strategy()
            if strat is None:
                break
        elif strategy == "pct":
            strat = PCTStrategy(seed + i, len(sc.cpus), depth, length)
        else:
            strat = RandomStrategy(seed + i)
        result = run_once(loaded, sc, strat, **kw)
        done += 1
        if result.ok:
            continue
        sig = result.signature()
        if sig in seen:
            continue
        seen.add(sig)
        again = run_once(loaded, sc, ReplayStrategy(result.schedule, expect=result.trace), **kw)
        result = attrs.evolve(result, replayable=again.signature() == sig)
        failures.append(result)
        if len(failures) >= max_failures:
            break
    exhausted = dfs is not None and dfs.exhausted
    return ExploreResult(name, sc.name, strategy, seed, done, tuple(failures), exhausted)


def check_driver(driver: Any, *, strategy: str = "random", seed: int = 0, runs: int = 1000,
                 preemption_bound: int = 2, depth: int = 3, scenarios: Sequence[str] | None = None,
                 max_failures: int = 1, options: dict | None = None,
                 timeout: float | None = None) -> list[ExploreResult]:
    """Explore every applicable scenario (or the named ones) on a driver."""
    loaded = load_driver(driver)
    chosen = ([get_scenario(n) for n in scenarios] if scenarios
              else [sc for sc in SCENARIOS if sc.applies(loaded)])
    return [explore(loaded, sc, strategy=strategy, seed=seed, runs=runs,
                    preemption_bound=preemption_bound, depth=depth, max_failures=max_failures,
                    options=options, timeout=timeout) for sc in chosen]


__all__ = [
    "ExploreResult", "RaceEnv", "RunResult", "SCENARIOS", "Scenario", "check_common",
    "check_determinism", "check_driver", "explore", "get_scenario", "load_driver", "replay",
    "run_once", "scenarios_for",
]
