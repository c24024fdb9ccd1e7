"""pytest plugin for driver authors (registered through the pytest11 entry point).

Fixtures:
- ``mmplug_host``: a PluginHost with every installed driver loaded.
- ``mmplug_vm``: a factory ``mmplug_vm(driver=None, **config)`` giving a fresh
  VM (and, with `driver`, ``(vm, instance)``), torn down after the test.
- ``mmplug_driver_vm``: a fresh VM with the driver under test created on it,
  unpacked as ``vm, instance = mmplug_driver_vm``.  The driver is named by the
  marker ``@pytest.mark.mmplug_driver("name", options={...}, **vmconfig)``,
  else by ``--mmplug-driver NAME``, else by the ini option ``mmplug_driver``.

The conformance suite inside an author's own tests, one pytest test per check::

    from mmplug.testing import conformance_tests
    test_conformance = conformance_tests("mydriver")             # every check
    test_isolation = conformance_tests("mydriver", select=["ISO"])

The suite (mmplug.conformance) runs once per session and settings; each test
then reports its own check with the lines `mmplug check-driver` prints: FAIL
fails, "OK (not supported)" skips, "warn" passes with a ConformanceWarning.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
from attrs import evolve, field, frozen

from .constants import GFP_HIGHUSER_MOVABLE, ISOLATE_ASYNC_MIGRATE, MigrateMode
from .errors import PluginError, UsageError
from .migrate import PageList, isolate_movable_page, migrate_pages, putback_movable_pages
from .page import Page, has_movable_tag, page_count
from .plugins import PluginHost
from .vm import VM, VMConfig

INI_DRIVER = "mmplug_driver"
MARKER = "mmplug_driver"


class ConformanceWarning(UserWarning):
    """A conformance check ended in "warn": a WARN_ON_ONCE fired, the driver still works."""


# --- options and markers ----------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_DRIVER, "mmplug: the driver the mmplug_driver_vm fixture creates "
                  "(entry-point name, module path or .py file)", default="")
    group = parser.getgroup("mmplug", "mmplug driver testing")
    group.addoption("--mmplug-driver", dest="mmplug_driver", default=None, metavar="DRIVER",
                    help="the driver the mmplug_driver_vm fixture creates (overrides the ini "
                         "option mmplug_driver)")
    group.addoption("--mmplug-seed", dest="mmplug_seed", type=int, default=None, metavar="N",
                    help="seed of the conformance suite run by conformance_tests() (default 0)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(name, *, options=None, **vmconfig): the driver, its factory "
        "options and the VMConfig the mmplug_driver_vm fixture uses")


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture
def mmplug_host() -> PluginHost:
    host = PluginHost()
    host.load_entry_points()
    return host


@pytest.fixture
def mmplug_vm(mmplug_host: PluginHost) -> Callable[..., Any]:
    def make(driver: str | None = None, /, options: dict[str, Any] | None = None,
             **config: Any) -> Any:
        vm = VM(VMConfig(**config), plugins=mmplug_host)
        if driver is None:
            return vm
        return vm, vm.create_driver(driver, **(options or {}))

    return make


@frozen(slots=True)
class DriverVM:
    """A fresh VM and one instance of the driver under test; unpacks as ``vm, instance``."""

    vm: VM
    instance: Any
    driver: str

    def __iter__(self) -> Iterator[Any]:
        return iter((self.vm, self.instance))


@pytest.fixture
def mmplug_driver_vm(request: pytest.FixtureRequest,
                     mmplug_host: PluginHost) -> Iterator[DriverVM]:
    marker = request.node.get_closest_marker(MARKER)
    name = marker.args[0] if marker is not None and marker.args else None
    name = name or request.config.getoption("mmplug_driver") or request.config.getini(INI_DRIVER)
    if not name:
        pytest.fail("mmplug_driver_vm: no driver named: use @pytest.mark.mmplug_driver(NAME), "
                    "--mmplug-driver NAME or the ini option mmplug_driver", pytrace=False)
    kwargs = dict(marker.kwargs) if marker is not None else {}
    options = kwargs.pop("options", None) or {}
    vm = VM(VMConfig(**kwargs), plugins=mmplug_host)
    try:
        instance = vm.create_driver(name, **options)
    except (UsageError, PluginError) as exc:  # a bad name or a broken plugin: one line
        pytest.fail(f"mmplug_driver_vm: {exc}", pytrace=False)
    yield DriverVM(vm, instance, vm.instance_record(instance).name)
    record = vm.instance_record(instance)
    # An instance the test left with isolated pages cannot be destroyed
    # (REL-3); the test's own failure says more than that would.
    if not record.destroyed and not record.mapping.nr_isolated:
        vm.destroy_driver(instance)


# --- migrating one page, as compaction would ----------------------------------------------

@frozen(slots=True)
class Migration:
    """What became of one page given to `migrate_page`."""

    #: isolate_movable_page succeeded
    isolated: bool
    #: migrate_pages' result: 0, the number of pages not migrated (1 when the page
    #: could not even be isolated), or -ENOMEM
    result: int
    #: the page the driver now uses instead, if it took one
    newpage: Page | None = None

    @property
    def migrated(self) -> bool:
        return self.isolated and self.result == 0 and self.newpage is not None


def migrate_page(vm: VM, page: Page, mode: MigrateMode = MigrateMode.SYNC) -> Migration:
    """Isolate `page` and migrate it to a fresh page of the zone, as compaction does.

    Whatever is left on the list afterwards is put back (MIG-9), so the page
    always ends migrated, put back, or released by its driver (PUT-3).
    """
    isolate_mode = ISOLATE_ASYNC_MIGRATE if mode != MigrateMode.SYNC else 0
    if isolate_movable_page(vm, page, isolate_mode) != 0:
        return Migration(isolated=False, result=1)
    pagelist = PageList("mmplug.testing")
    pagelist.add(page)
    targets: list[Page] = []

    def get_new_page(_page: Page, _private: Any) -> Page | None:
        newpage = vm.alloc_page(GFP_HIGHUSER_MOVABLE)
        if newpage is not None:
            targets.append(newpage)
        return newpage

    result = migrate_pages(vm, pagelist, get_new_page, None, None, mode)
    if pagelist:
        putback_movable_pages(vm, pagelist)
    # The driver keeps its own reference on the page it took (MIG-7).
    taken = [p for p in targets if page_count(p) and has_movable_tag(p)]
    return Migration(isolated=True, result=result, newpage=taken[-1] if taken else None)


# --- the conformance suite as pytest tests ------------------------------------------------

def _conformance() -> Any:
    try:
        return importlib.import_module("mmplug.conformance")
    except ImportError as exc:
        raise pytest.UsageError(f"mmplug.testing: the conformance suite (mmplug.conformance) "
                                f"cannot be imported: {exc}") from None


def _as_tuple(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


@frozen(slots=True)
class SuiteSettings:
    """The arguments of one run_suite call; equal settings share one run per session."""

    driver: str
    select: tuple[str, ...] = field(converter=_as_tuple)
    seed: int | None
    quick: bool
    races: bool
    max_examples: int | None


@frozen(slots=True)
class SuiteRun:
    """One run of the suite: its report, or the one-line error that stopped it."""

    results: dict[str, Any]
    error: str | None = None


_RUNS = pytest.StashKey[dict["SuiteSettings", "SuiteRun"]]()


def selects(check: Any, select: Sequence[str]) -> bool:
    """Whether `--select` patterns pick `check`, as `check-driver --select` decides."""
    if not select:
        return True
    matches = getattr(check, "matches", None)
    if callable(matches):
        return any(matches(item) for item in select)
    names = (str(check.id),) + tuple(str(r) for r in getattr(check, "rules", ()))
    return any(name.upper().startswith(item.upper()) for item in select for name in names)


def render_result(result: Any) -> str:
    """The lines `mmplug check-driver` prints for one result."""
    try:
        formatter = importlib.import_module("mmplug.conformance.command").render_result
    except (ImportError, AttributeError):
        formatter = _render_result
    lines = formatter(result)
    return lines if isinstance(lines, str) else "\n".join(lines)


def _render_result(result: Any) -> list[str]:
    """check-driver's format, for a suite without its command module."""
    lines = [f"test {str(result.check).split('/', 1)[0]} {result.title}: {result.verdict}"]
    if result.verdict == "FAIL":
        lines.append(f"    {result.rule}: {result.message}")
        if getattr(result, "page", None):
            lines.append(f"    page: {result.page}")
        lines.append(f"    reproduce: {getattr(result, 'repro', '')}")
    elif result.verdict == "warn":
        lines.append(f"    {result.message}")
    return lines


def _run_suite(config: pytest.Config, settings: SuiteSettings) -> SuiteRun:
    runs = config.stash.setdefault(_RUNS, {})
    if settings in runs:
        return runs[settings]
    return runs.setdefault(settings, _suite_run(config, settings))


def _suite_run(config: pytest.Config, settings: SuiteSettings) -> SuiteRun:
    conformance = _conformance()
    seed = settings.seed
    if seed is None:
        seed = config.getoption("mmplug_seed", None) or 0
    try:
        report = conformance.run_suite(settings.driver, seed=seed, select=settings.select,
                                       quick=settings.quick, races=settings.races,
                                       max_examples=settings.max_examples)
    except Exception as exc:  # the driver cannot load: every check reports why
        return SuiteRun({}, f"{type(exc).__name__}: {exc}")
    return SuiteRun({str(r.check): r for r in report.results})


def _collected_checks(request: pytest.FixtureRequest, function: Any) -> tuple[str, ...]:
    """The checks of `function` still in this session after -k / deselection."""
    return tuple(item.callspec.params["mmplug_check"] for item in request.session.items
                 if getattr(item, "obj", None) is function and hasattr(item, "callspec"))


def conformance_tests(driver: str, *, select: Iterable[str] = (), seed: int | None = None,
                      quick: bool = False, races: bool = True,
                      max_examples: int | None = None) -> Callable[..., None]:
    """A pytest test function with one case per conformance check of `driver`.

    Assign it to a ``test_*`` name in a test module.  `select` takes rule ids,
    check ids or prefixes (``"ISO"``, ``"MIG-7"``), like ``check-driver
    --select``; `seed` defaults to ``--mmplug-seed`` or 0.
    """
    settings = SuiteSettings(driver, tuple(select), seed, quick, races, max_examples)
    checks = [c for c in _conformance().list_checks(driver) if selects(c, settings.select)
              and (races or getattr(c, "kind", "") != "races")]
    if not checks:
        raise pytest.UsageError(f"conformance_tests({driver!r}): select={list(settings.select)} "
                                "matches no check")
    every = tuple(str(c.id) for c in checks)
    params = [pytest.param(check_id, id=check_id) for check_id in every]

    @pytest.mark.parametrize("mmplug_check", params)
    def test_conformance(mmplug_check: str, request: pytest.FixtureRequest) -> None:
        collected = _collected_checks(request, test_conformance)
        # Only what is left after -k or deselection runs; a check id selects itself.
        narrowed = settings if set(collected) >= set(every) or mmplug_check not in collected \
            else evolve(settings, select=collected)
        run = _run_suite(request.config, narrowed)
        if run.error is not None:
            pytest.fail(f"mmplug check-driver {driver}: {run.error}", pytrace=False)
        result = run.results.get(mmplug_check)
        if result is None:
            pytest.skip(f"{mmplug_check}: not run by the suite with these settings")
        verdict = str(result.verdict)
        text = render_result(result)
        if verdict in ("FAIL", "same"):   # "same": the violation another check reports
            pytest.fail(text, pytrace=False)
        if verdict.startswith("OK (not supported)"):
            # check-driver's line leaves the reason out; a skip should say it.
            pytest.skip(f"{text} ({result.message})" if result.message else text)
        if verdict == "warn":
            warnings.warn(ConformanceWarning(text), stacklevel=1)

    test_conformance.__doc__ = f"mmplug conformance suite on driver {driver}: one test per check."
    return test_conformance
