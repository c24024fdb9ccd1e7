"""Running the suite: load the driver, run each selected check, turn what happened into verdicts.

A check's outcome is decided here, in one place:
- it returned: OK (with a warning from the VM that is not the driver's fault: "warn");
- NotSupported, or a capability/knob it needs is not declared: "OK (not supported)";
- CheckFailed or a ContractViolation/DriverError from the core: FAIL, with the
  rule, the driver, the callback and the page the error names;
- a WARN_ON_ONCE only a driver can trigger (ISO-3, MIG-6): FAIL;
- a Deadlock on one CPU: FAIL (a lock taken twice, LCK-3);
- anything else raised from the driver's own code: FAIL (API-1); raised from
  mmplug itself: an InternalError (exit 3), since the suite must not guess.

A FAIL names its violation (mmplug.conformance.violations); another check that
finds the same one is SAME, pointing at the one that reports it, so one mistake
is reported once, in full, under the rule it breaks (see fold_violation).
"""

from __future__ import annotations

import os
import shlex
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .. import __version__
from ..drivercode import DriverCode
from ..errors import (
    CallbackTimeout,
    ContractViolation,
    Deadlock,
    DriverError,
    MmplugError,
    UsageError,
)
from ..plugins import LoadedDriver, PluginHost
from ..watchdog import describe, interrupts, is_user_interrupt, memory_limit, trap_exits
from .checks import all_checks, driver_checks
from .invariants import DRIVER_WARNINGS, check_warnings
from .model import FAIL, NOT_SUPPORTED, OK, SAME, WARN, CheckResult, CheckSpec, Report
from .outcomes import CheckFailed, NotSupported
from .registry import Check, Context
from .violations import RELEASED_MOVABLE, Violation


class InternalError(MmplugError):
    """The suite itself failed (a bug in mmplug, not in the driver): exit code 3."""


def list_checks(driver: str | None = None) -> list[CheckSpec]:
    """Every check of the suite, in run order: id, rules, title, needs, kind; with `driver`
    (as check-driver takes it), then the checks the driver brings.  A driver that does not
    load brings none here: running the suite says why."""
    extra: list[Check] = []
    if driver is not None:
        try:
            extra = driver_checks(PluginHost().get(driver))
        except MmplugError:
            extra = []
    return [c.spec for c in all_checks() + extra]


def select_patterns(select: Iterable[str]) -> list[str]:
    """The patterns of `--select` options (each may list several, comma-separated)."""
    select = list(select)
    patterns = [p.strip() for item in select for p in item.split(",") if p.strip()]
    if select and not patterns:
        raise UsageError("-k/--select '': an empty pattern selects nothing; give a rule id, "
                         "a prefix (ISO) or a check id (ISO-4/lru-untouched)")
    return patterns


def select_checks(select: Iterable[str] = (), *, races: bool = True,
                  extra: Iterable[Check] = ()) -> list[Check]:
    """The checks `--select` patterns (rule ids, prefixes, check ids) pick; all if none.
    `extra` are checks a driver brings, after the suite's own."""
    patterns = select_patterns(select)
    checks = all_checks() + list(extra)
    if not races:
        checks = [c for c in checks if c.spec.kind != "races"]
    if not patterns:
        return checks
    chosen = [c for c in checks if any(c.spec.matches(p) for p in patterns)]
    if not chosen:
        given = " ".join(patterns)
        given = given if len(given) <= 60 else given[:60] + "..."
        raise UsageError(f"--select {given} matches no check; rules and checks "
                         f"are e.g. {', '.join(sorted({c.spec.rule for c in checks}))}")
    return chosen


def load_driver(driver: str, host: PluginHost | None = None) -> tuple[PluginHost, LoadedDriver]:
    """The driver by entry-point name, module path or .py file (UsageError / PluginError)."""
    host = host if host is not None else PluginHost()
    loaded = host.get(driver)
    return host, loaded


def run_suite(driver: str, *, seed: int = 0, select: Iterable[str] = (), quick: bool = False,
              races: bool = True, max_examples: int | None = None, replay: str | None = None,
              exit_first: bool = False, host: PluginHost | None = None,
              on_result: Callable[[CheckResult], Any] | None = None,
              timeout: float | None = 2.0, memory: int | None = None,
              driver_options: dict[str, Any] | None = None,
              on_progress: Callable[[str, int, int], Any] | None = None,
              on_start: Callable[[Report], Any] | None = None) -> Report:
    """Run the conformance suite on `driver` and return the Report.

    `driver` is an entry-point name, a dotted module path or a .py file.
    `select` keeps the checks matching any of the rule ids / prefixes / check
    ids; `quick` runs smaller populations and fewer examples; `races` includes
    the multi-CPU checks; `max_examples` bounds the stateful fuzzing;
    `replay` ("SCENARIO@SCHEDULE") replays one race interleaving; `exit_first`
    stops after the first FAIL; `on_result` is called with each CheckResult as
    soon as it is known; `timeout` is the time limit of one driver call (None:
    none); `memory` bounds the address space the run may add (bytes, None: no
    bound); `driver_options` go to the driver's factory for every instance (a
    driver's own tests check a variant of it, e.g. {"bugs": {"BUG-6"}});
    `on_progress(check_id, done, total)` is told how far a long check (FUZZ,
    RACE) got; `on_start(report)` is called once the driver is loaded, before the
    first check, with the still empty report (its driver name and seed).  Every
    option is checked before the driver is loaded.  Raises UsageError (bad option,
    unknown driver), PluginError (the driver does not load or validate) or
    InternalError.
    """
    if replay:
        races = True
        check_replay(replay)
    select = list(select)
    select_patterns(select)   # an empty pattern is an error before any import
    with interrupts(), trap_exits(), memory_limit(memory):
        host, loaded = load_driver(driver, host)
        if replay:
            check_replay(replay, loaded)
        checks = select_checks(select, races=races, extra=driver_checks(loaded))
        if replay and not any(c.spec.kind == "races" for c in checks):
            checks = checks + [c for c in all_checks() if c.spec.kind == "races"]
        info = loaded.info
        report = Report(driver=info.name, driver_version=info.version,
                        mmplug_version=__version__, seed=seed)
        if on_start is not None:
            on_start(report)
        start = time.perf_counter()
        primary: dict[str, int] = {}
        for chk in checks:
            ctx = Context(loaded=loaded, host=host, seed=seed, check_id=chk.spec.id,
                          quick=quick, max_examples=max_examples, replay=replay,
                          driver_spec=driver, timeout=timeout,
                          driver_options=dict(driver_options or {}),
                          on_progress=_progress_of(chk.spec.id, on_progress))
            result = fold_violation(run_check(chk, ctx), report.results, primary)
            report.results.append(result)
            if on_result is not None:
                on_result(result)
            if exit_first and result.failed:
                break
        report.seconds = time.perf_counter() - start
    return report


def _progress_of(check_id: str, on_progress: Callable[[str, int, int], Any] | None
                 ) -> Callable[[int, int], Any] | None:
    if on_progress is None:
        return None
    return lambda done, total: on_progress(check_id, done, total)


def fold_violation(result: CheckResult, results: list[CheckResult],
                   primary: dict[str, int]) -> CheckResult:
    """`result` as it goes into `results`: a FAIL of a violation found before is SAME.

    A violation is reported in full once, preferably by a check listed under
    the rule it breaks: when such a check meets a violation that a check of
    another rule found first, the violation moves to it (the earlier result,
    and those pointing at it, become SAME pointing here).  `primary` maps each
    violation to the index of the result that reports it.
    """
    if result.verdict != FAIL or not result.violation:
        return result
    at = primary.get(result.violation)
    if at is None:
        primary[result.violation] = len(results)
        return result
    earlier = results[at]
    if result.rule == result.listed_rule and earlier.rule != earlier.listed_rule:
        for i, r in enumerate(results):
            if i == at or (r.verdict == SAME and r.same_as == earlier.check
                           and r.violation == result.violation):
                results[i] = attrs.evolve(r, verdict=SAME, same_as=result.check)
        primary[result.violation] = len(results)
        return result
    return attrs.evolve(result, verdict=SAME, same_as=earlier.check)


def check_replay(replay: str, loaded: LoadedDriver | None = None) -> None:
    """--replay [SCENARIO@]SCHEDULE: a schedule that parses and, once the driver is
    loaded, a scenario that applies to it (UsageError otherwise)."""
    from ..cpus.schedule import decode_schedule
    from ..races import scenarios_for
    name, sep, schedule = replay.partition("@")
    if not sep:
        name, schedule = "", replay
    shown = replay if len(replay) <= 60 else replay[:60] + "..."
    try:
        decode_schedule(schedule)
    except ValueError:
        raise UsageError(f"--replay {shown!r}: not a schedule: expected [SCENARIO@]SCHEDULE, "
                         "a schedule being CPU or CPUxCOUNT joined by '-' (e.g. "
                         "two_compactors@0x3-1-0), as a failure prints it") from None
    if loaded is None:
        return  # the driver's own scenarios are known once it is loaded
    names = [sc.name for sc in scenarios_for(loaded)]
    if name and name not in names:
        raise UsageError(f"--replay {shown!r}: no race scenario {name[:60]!r} for driver "
                         f"{loaded.info.name}; scenarios are {', '.join(names)}")


def run_check(chk: Check, ctx: Context) -> CheckResult:
    """One check, its outcome turned into a CheckResult (see the module docstring)."""
    spec = chk.spec
    t0 = time.perf_counter()
    base: dict[str, Any] = {"check": spec.id, "title": spec.title,
                            "driver": ctx.loaded.info.name}
    missing = _missing_needs(spec, ctx.loaded)
    if missing:
        return CheckResult(rule=spec.rule, verdict=NOT_SUPPORTED,
                           message=f"needs {missing}", **base)
    note = ""
    try:
        note = chk.fn(ctx) or ""
        for bench in ctx.benches:
            check_warnings(bench)
    except NotSupported as exc:
        return CheckResult(rule=spec.rule, verdict=NOT_SUPPORTED, message=str(exc),
                           seconds=time.perf_counter() - t0, **base)
    except CheckFailed as exc:
        what = getattr(exc, "what", None)
        # a page released but left movable is one violation whichever callback the VM
        # went on to call for it
        return _fail(ctx, spec, exc.rule, exc.message, exc.page_desc, exc.hook, t0, base,
                     getattr(exc, "recipe", None), driver=exc.driver, what=what, exc=exc,
                     culprit=what != RELEASED_MOVABLE)
    except ContractViolation as exc:
        if isinstance(exc, DriverError) and isinstance(exc.__cause__, Deadlock):
            # a lock the callback already holds, taken again: the VM's page lock, say
            return _fail(ctx, spec, "LCK-3", f"deadlock: {exc.message}", exc.page_desc,
                         exc.hook, t0, base, getattr(exc, "recipe", None), driver=exc.driver,
                         exc=exc)
        if _set_up_by_migration(exc, ctx):
            return _fail(ctx, spec, "MIG-7", f"{exc.hook} failed on the new page of a "
                         "migration, which migratepage left without the driver's private data: "
                         f"{exc.message}", exc.page_desc, exc.hook, t0, base,
                         getattr(exc, "recipe", None), driver=exc.driver,
                         what=f"{exc.hook} fails on a page migratepage set up", exc=exc,
                         culprit=False)
        return _fail(ctx, spec, exc.rule, exc.message, exc.page_desc, exc.hook, t0, base,
                     getattr(exc, "recipe", None), driver=exc.driver,
                     what=getattr(exc, "what", None), exc=exc)
    except Deadlock as exc:
        return _fail(ctx, spec, "LCK-3", f"deadlock: {exc}", None, None, t0, base,
                     getattr(exc, "recipe", None), exc=exc)
    except UsageError:
        raise
    except BaseException as exc:
        if is_user_interrupt(exc):
            raise
        corrupt = _corrupted_page(ctx)
        if corrupt is not None:
            page, what = corrupt
            return _fail(ctx, spec, "FLG-1", f"the driver corrupted struct page ({what}); the VM "
                         f"failed on it with {type(exc).__name__}: {exc}", page, None, t0, base,
                         None)
        call = getattr(exc, "call", None)
        if isinstance(exc, CallbackTimeout) and call is not None:
            return _fail(ctx, spec, "API-1", f"{call.hook} {describe(exc)}", None, call.hook,
                         t0, base, None, driver=call.driver, exc=exc)
        if _raised_by_driver(exc, ctx.loaded) or not isinstance(exc, Exception):
            # SystemExit, KeyboardInterrupt, os._exit, MemoryError: nothing of mmplug's
            # raises them, so they come from the driver (or what it exhausted).
            return _fail(ctx, spec, "API-1", f"driver code {describe(exc)}",
                         None, _driver_frame(exc, ctx.loaded), t0, base,
                         getattr(exc, "recipe", None), exc=exc)
        if isinstance(exc, MemoryError):
            return _fail(ctx, spec, "API-1", f"the run {describe(exc)}; the driver's "
                         "structures hold the memory", None, None, t0, base, None)
        if os.environ.get("MMPLUG_DEBUG"):
            raise
        frames = traceback.extract_tb(exc.__traceback__)
        loc = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise InternalError(f"check {spec.id} crashed: {type(exc).__name__}: {exc}{loc}") \
            from exc
    verdict, message = OK, note
    warned: list[object] = [w for b in ctx.benches for w in b.vm.warnings
                            if w.rule not in DRIVER_WARNINGS]
    warned += ctx.warnings
    if warned:
        verdict = WARN
        message = "; ".join(w.render() if hasattr(w, "render") else str(w) for w in warned)
    return CheckResult(rule=spec.rule, verdict=verdict, message=message,
                       repro=_repro(ctx) if verdict == WARN else "",
                       seconds=time.perf_counter() - t0, **base)


def _set_up_by_migration(exc: ContractViolation, ctx: Context) -> bool:
    """isolate_page or putback_page raised on a page that a successful migratepage gave the
    driver and left without the private data the driver hangs off its pages: migratepage
    did not set it up as the driver's other pages (MIG-7)."""
    page = exc.page
    cause = exc.__cause__
    if not (isinstance(exc, DriverError) and exc.hook in ("isolate_page", "putback_page")
            and page is not None and not page.private and isinstance(cause, Exception)
            and not isinstance(cause, (ContractViolation, CallbackTimeout))):
        return False
    return bool(getattr(exc, "new_page_of_migration", False)) or \
        any(b.journal.moved_here(page) for b in ctx.benches)


def _fail(ctx: Context, spec: CheckSpec, rule: str, message: str, page: str | None,
          hook: str | None, t0: float, base: dict[str, Any], recipe: list[str] | None,
          driver: str | None = None, what: str | None = None,
          exc: BaseException | None = None, culprit: bool = True) -> CheckResult:
    """The FAIL; `culprit` False: the violation is known by `what` alone, not by the code
    it showed in (the callback the VM went on to call is not the one at fault)."""
    site = getattr(exc, "site", None)   # a race failure carries the site of its run
    if site is None and exc is not None:
        site = DriverCode.of(ctx.loaded).site_in_traceback(exc)
    violation = Violation.of(rule, driver or base["driver"], hook if culprit else None,
                             what or message,
                             site.function if site is not None and culprit else None)
    if recipe:
        message = message + "\nshortest failing sequence:\n" + "\n".join(
            "  " + line for line in recipe)
    return CheckResult(check=base["check"], title=base["title"],
                       driver=driver or base["driver"], rule=rule, verdict=FAIL,
                       message=message, page=page, hook=hook, repro=_repro(ctx),
                       seconds=time.perf_counter() - t0, violation=violation.describe(),
                       site=site.describe() if site is not None else "")


def _repro(ctx: Context) -> str:
    words = ["mmplug", "check-driver", shlex.quote(ctx.driver_spec or ctx.loaded.name),
             "--seed", str(ctx.seed), "-k", ctx.check_id]
    if ctx.quick:
        words.append("--quick")
    if ctx.max_examples is not None:
        words += ["--max-examples", str(ctx.max_examples)]
    cmd = " ".join(words)
    return f"{cmd} {ctx.repro_extra}".strip()


def _missing_needs(spec: CheckSpec, loaded: LoadedDriver) -> str:
    """"" if the driver declares what the check needs, else what is missing."""
    caps = loaded.info.capabilities
    missing = []
    for need in spec.needs:
        if need.startswith("knob:"):
            options = need[5:].split("|")
            if not any(k in caps.knobs for k in options):
                missing.append(" or ".join(f"the {k!r} knob" for k in options))
        elif not getattr(caps, need, False):
            missing.append(f"capability {need}")
    return ", ".join(missing)


def _raised_by_driver(exc: BaseException, loaded: LoadedDriver) -> bool:
    tb = traceback.extract_tb(exc.__traceback__)
    return bool(tb) and DriverCode.of(loaded).contains(tb[-1].filename)


def _driver_frame(exc: BaseException, loaded: LoadedDriver) -> str | None:
    site = DriverCode.of(loaded).site_in_traceback(exc)
    return site.function.rsplit(".", 1)[-1] if site is not None else None


def _corrupted_page(ctx: Context) -> tuple[str, str] | None:
    """A struct page whose fields no longer have their types: the driver wrote garbage."""
    for bench in ctx.benches:
        for page in bench.vm.zone.pages:
            for name, value in (("flags", page.flags), ("refcount", page._refcount),
                                ("mapping", page.mapping)):
                if type(value) is not int:
                    return (f"pfn {page.pfn:#x} {name} {value!r}",
                            f"page->{name} is a {type(value).__name__}")
    return None
