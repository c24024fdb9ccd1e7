"""`mmplug check-driver DRIVER`: run the conformance suite and print one line per check.

Exit codes: 0 every check passed (warnings allowed), 1 a check failed, 2 usage
error, 3 internal error, 4 the driver could not be loaded or validated.  The
long checks (FUZZ, RACE) show how far they got on stderr (conformance.progress).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..commandline import emit_json, json_option, output_option, wants_json
from ..errors import PluginError, UsageError
from ..outputs import check_output_file, stdout_for_drivers
from ..watchdog import memory_budget, time_limit
from .model import FAIL, SAME, WARN, CheckResult, Report
from .progress import Progress
from .runner import InternalError, run_suite

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_PLUGIN = 0, 1, 2, 3, 4

#: the most random sequences --max-examples may ask for
MAX_EXAMPLES = 1_000_000


def render_result(result: CheckResult, rule: str | None = None) -> list[str]:
    """The line of one check and, for a FAIL or a warning, what it found.

    A FAIL of another rule than the check's says which ("FAIL (breaks MIG-7)");
    a check that found a violation reported elsewhere is one line that points at it.
    """
    shown = rule or result.listed_rule
    head = f"test {shown} {result.title}: "
    if result.verdict == SAME:
        return [f"{head}same as {result.rule} ({result.same_as})"]
    breaks = f" (breaks {result.rule})" if result.verdict == FAIL and \
        result.rule != result.listed_rule else ""
    lines = [f"{head}{result.verdict}{breaks}"]
    if result.verdict == FAIL:
        lines += render_details(result)
    elif result.verdict == WARN:
        lines.append(f"    {result.message}")
    return lines


def render_details(result: CheckResult) -> list[str]:
    """What a FAIL found, in full: rule and message, where, the page, how to reproduce."""
    where = ", ".join(x for x in (f"driver {result.driver}" if result.driver else "",
                                  f"callback {result.hook}" if result.hook else "") if x)
    head, *rest = result.message.splitlines() or [""]
    lines = [f"    {result.rule}: {head}" + (f" ({where})" if where else "")]
    lines += [f"    {line}" for line in rest]
    if result.site:
        lines.append(f"    in: {result.site}")
    if result.page:
        lines.append(f"    page: {result.page}")
    lines.append(f"    reproduce: {result.repro}")
    return lines


class Printer:
    """The lines of check-driver as results come in, each violation in full once.

    A FAIL found by a check listed under the rule it breaks is printed in full
    there.  One found by a check of another rule is one line ("FAIL (breaks
    MIG-7, reported below)"): the first check of its own rule that meets it
    reports it in full (the runner moves it there), or the summary at the end
    does.  A check that meets a violation reported already points at it.
    """

    def __init__(self) -> None:
        #: violations printed in full so far
        self.full: set[str] = set()

    def result(self, result: CheckResult) -> list[str]:
        head = f"test {result.listed_rule} {result.title}: "
        if result.verdict == FAIL and result.rule != result.listed_rule and result.violation:
            return [f"{head}FAIL (breaks {result.rule}, reported below)"]
        if result.verdict == SAME:
            where = "above" if result.violation in self.full else "reported below"
            return [f"{head}same as {result.rule} {where} ({result.same_as})"]
        if result.verdict == FAIL:
            self.full.add(result.violation)
        return render_result(result)

    def summary(self, report: Report) -> list[str]:
        """Each violation once, with the checks that met it; in full if it was not yet.

        Several come in the order a page meets the callbacks they are blamed on:
        one mistake often breaks later rules too (a reference taken in isolate_page
        is still there when migratepage returns, and when the pool is destroyed), and
        the earliest is then the one to fix first.
        """
        fails = sorted(report.failures(), key=_stage)
        if not fails:
            return []
        lines = [f"{len(fails)} violation(s):" if len(fails) == 1 else
                 f"{len(fails)} violation(s), in the order a page meets them (an early one "
                 "can cause the later ones):"]
        for first in fails:
            more = len(report.hits(first))
            found = f"found by {first.check}" + (f" and {more} more check(s)" if more else "")
            culprit = first.violation.split(":", 1)[0] if first.violation else first.rule
            if first.violation in self.full:
                head = (first.message.splitlines() or [""])[0]
                head = head if len(head) <= 120 else head[:117] + "..."
                lines += [f"  {culprit}: {head}", f"    {found}"]
            else:
                lines += [f"  {culprit}, {found}:"] + render_details(first)
        return lines


#: the callbacks in the order a page meets them (include/linux/fs.h, address_space_operations)
_HOOK_STAGE = {"isolate_page": 1, "migratepage": 2, "putback_page": 3}
#: a violation without one of those callbacks: by its rule's family
_RULE_STAGE = {"API": 0, "FLG": 0, "ISO": 1, "MIG": 2, "PUT": 3, "REL": 4}


def _stage(result: CheckResult) -> int:
    """Where in a page's life the violation of `result` happens ("RULE in HOOK")."""
    rule, _, hook = (result.violation or result.rule).partition(" in ")
    stage = _HOOK_STAGE.get(hook.strip())
    if stage is None:
        stage = _RULE_STAGE.get(rule.split("-", 1)[0], len(_RULE_STAGE))
    return stage


def render_totals(report: Report) -> str:
    t = report.totals
    return (f"Total for {report.driver}: {t['total']}, Succeeded: {t['succeeded']}, "
            f"Failed: {t['failed']}, Same violation: {t['same']}, Warnings: {t['warnings']}")


def check_driver(
    driver: Annotated[str, typer.Argument(
        metavar="DRIVER",
        help="Entry-point name, dotted module path or .py file of the driver; NAME@FILE "
             "loads FILE under the name NAME.")],
    seed: Annotated[int, typer.Option(
        "--seed", metavar="N", help="Seed of every random choice.")] = 0,
    select: Annotated[list[str] | None, typer.Option(
        "--select", "-k", metavar="RULE",
        help="Run only checks of this rule id or prefix (ISO, MIG-7, ISO-4/lru-untouched); "
             "repeatable.")] = None,
    exit_first: Annotated[bool, typer.Option(
        "--exit-first", "-x", help="Stop after the first failed check.")] = False,
    max_examples: Annotated[int | None, typer.Option(
        "--max-examples", metavar="N", min=1,
        help="Random sequences the stateful fuzzing tries.")] = None,
    races: Annotated[bool, typer.Option(
        "--races/--no-races", help="Run the race checks on several simulated CPUs.")] = True,
    replay: Annotated[str | None, typer.Option(
        "--replay", metavar="SCHEDULE",
        help="Replay one race interleaving (SCENARIO@SCHEDULE, as a failure prints it).")] = None,
    scenario: Annotated[str | None, typer.Option(
        "--scenario", metavar="NAME",
        help="The race scenario --replay replays (same as --replay NAME@SCHEDULE).")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Smaller populations and fewer random sequences (a few seconds).")]
        = False,
    as_json: Annotated[bool, json_option("the report")] = False,
    output: Annotated[str | None, output_option("the report")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS",
        help="Time limit of one driver call; a call that runs longer fails as hung "
             "(0: no limit).")] = 2.0,
    memory_limit: Annotated[str | None, typer.Option(
        "--memory-limit", metavar="SIZE",
        help="Most memory the run may add, e.g. 2GiB (0: no limit; default 2 GiB, at most "
             "what the machine has free).")] = None,
) -> None:
    """Check a driver against the VM <-> driver contract, rule by rule."""
    to_stdout = wants_json(as_json, output)
    if scenario is not None:
        if not replay:
            raise UsageError("--scenario needs --replay SCHEDULE")
        replay = f"{scenario}@{replay}"
    if output not in (None, "-"):
        check_output_file(output, "--output")
    if max_examples is not None and max_examples > MAX_EXAMPLES:
        raise UsageError(f"--max-examples {max_examples}: at most {MAX_EXAMPLES:,}")
    limit = time_limit(timeout)
    memory = memory_budget(memory_limit)

    progress = Progress(sys.stderr)
    printer = Printer()

    def start(report: Report) -> None:
        # the seed of every random choice, before any check runs or shows its progress
        if not to_stdout:
            typer.echo(f"check-driver {report.driver}: seed {report.seed}", file=out)

    def show(result: CheckResult) -> None:
        progress.clear()
        if to_stdout:
            return
        for line in printer.result(result):
            typer.echo(line, file=out)

    try:
        with stdout_for_drivers() as out:   # what the driver prints goes to stderr
            report = run_suite(driver, seed=seed, select=tuple(select or ()), quick=quick,
                               races=races, max_examples=max_examples, replay=replay,
                               exit_first=exit_first, on_result=show, timeout=limit,
                               memory=memory, on_progress=progress.update,
                               on_start=start)
    except (UsageError, PluginError):
        progress.clear()
        raise  # cli.main() prints one line: exit 2 / exit 4
    except InternalError as exc:
        progress.clear()
        typer.echo(f"mmplug: internal error: {exc}", err=True)
        raise SystemExit(EXIT_INTERNAL) from None
    if not to_stdout:
        for line in printer.summary(report):
            typer.echo(line)
        typer.echo(render_totals(report))
    emit_json(report.to_json() + "\n", as_json=as_json, output=output)
    # SystemExit, not typer.Exit: the code must survive click's non-standalone mode.
    raise SystemExit(EXIT_OK if report.passed else EXIT_FAILED)
