"""mmplug.testing: the conformance suite as pytest tests, and the fixtures for driver authors.

The suite itself is replaced by tests/authoring/fake_conformance.py (installed
by a conftest.py in each throwaway project), so these tests pin down how the
plugin turns verdicts into pytest outcomes; test_generated_project.py runs the
real suite.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from mmplug.constants import MigrateMode
from mmplug.kernel import PAGE_MAPPING_MOVABLE, has_movable_tag, page_isolated, page_movable
from mmplug.testing import migrate_page

HERE = Path(__file__).resolve().parent
FAKE = HERE / "fake_conformance.py"
SIMPLEPOOL = HERE.parent / "drivers" / "simplepool.py"

CONFTEST = f"""
import importlib.util, sys
_spec = importlib.util.spec_from_file_location("mmplug.conformance", {str(FAKE)!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
# the run is in this process: submodules of the real suite imported earlier would be found
for _name in [n for n in sys.modules if n.startswith("mmplug.conformance.")]:
    del sys.modules[_name]
sys.modules["mmplug.conformance"] = _module
"""


@pytest.fixture
def run_pytest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run pytest in this process on the project in pytester.path, the suite being the fake
    one (pytester puts sys.modules back afterwards)."""
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)

    def run(*args: str, ini: str = "", log: Path | None = None) -> pytest.RunResult:
        pytester.makefile(".ini", pytest="[pytest]\n" + ini)
        pytester.makeconftest(CONFTEST)
        if log is not None:
            monkeypatch.setenv("MMPLUG_FAKE_LOG", str(log))
        # the outer run's time limit stays in charge; randomly would reorder the inner tests;
        # the others only cost start-up time (their modules are imported again on each run)
        return pytester.runpytest("-p", "no:randomly", "-p", "no:timeout", "-p", "no:benchmark",
                                  "-p", "no:hypothesispytest", "-rA", "-v", *args)
    return run


def write(project: Path, name: str, text: str) -> None:
    (project / name).write_text(textwrap.dedent(text))


@pytest.fixture
def whole_suite(pytester: pytest.Pytester, run_pytest):
    """One run of a module holding `conformance_tests("gooddrv")`: (exit code, output)."""
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_conformance = conformance_tests("gooddrv")
    """)
    out = run_pytest()
    return out.ret, out.stdout.str()


def test_one_pytest_test_per_check_with_the_cli_verdicts(whole_suite):
    code, text = whole_suite
    assert code == 1, text
    assert "test_conformance[ISO-4/lru-untouched] PASSED" in text
    assert "test_conformance[ISO-6/refusal] SKIPPED" in text
    assert "test_conformance[MIG-7/old-page-released] FAILED" in text
    assert "test_conformance[REL-2/free-isolated] PASSED" in text
    assert "test_conformance[RACE/explore] PASSED" in text
    assert "1 failed, 3 passed, 1 skipped" in text


def test_a_failure_shows_the_cli_lines_without_a_traceback(whole_suite):
    _, text = whole_suite
    assert "test MIG-7 old page released on success: FAIL" in text
    assert "expected the old page not PageMovable; it still is" in text
    assert "page: pfn 0x10" in text
    assert ("reproduce: mmplug check-driver gooddrv --seed 0 --select MIG-7/old-page-released"
            in text)
    assert "def test_conformance" not in text  # pytrace=False: no plugin source in the report


def test_not_supported_skips_and_warn_passes_with_a_warning(whole_suite):
    _, text = whole_suite
    assert "OK (not supported)" in text and "never refuses isolation" in text
    assert "ConformanceWarning: test REL-2 free while isolated: warn" in text


def test_select_keeps_only_matching_checks_and_is_passed_to_the_suite(pytester, run_pytest):
    log = pytester.path / "calls.jsonl"
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_conformance = conformance_tests("gooddrv", select=["ISO", "FLG-5"])
    """)
    text = run_pytest(log=log).stdout.str()
    assert "[ISO-4/lru-untouched] PASSED" in text
    assert "[ISO-6/refusal] SKIPPED" in text
    assert "[MIG-7/old-page-released] FAILED" in text  # selected through its rule FLG-5
    assert "REL-2/free-isolated" not in text
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["select"] for c in calls] == [["ISO", "FLG-5"]]


def test_the_suite_runs_once_per_settings_and_seed_comes_from_the_option(pytester, run_pytest):
    log = pytester.path / "calls.jsonl"
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_a = conformance_tests("gooddrv")
        test_b = conformance_tests("gooddrv")
        test_quick = conformance_tests("gooddrv", quick=True)
    """)
    run_pytest("--mmplug-seed", "7", log=log)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["quick"], c["seed"]) for c in calls] == [(False, 7), (True, 7)]


def test_a_driver_that_cannot_load_fails_every_check_with_one_line(pytester, run_pytest):
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_conformance = conformance_tests("unloadable")
    """)
    out = run_pytest()
    assert "5 failed" in out.stdout.str()
    assert ("mmplug check-driver unloadable: PluginError: driver 'unloadable' failed to load: "
            "missing callback putback_page(page)") in out.stdout.str()


def test_races_false_leaves_out_the_race_checks(pytester, run_pytest):
    log = pytester.path / "calls.jsonl"
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_conformance = conformance_tests("gooddrv", races=False)
    """)
    text = run_pytest(log=log).stdout.str()
    assert "RACE/explore" not in text and "ISO-4/lru-untouched" in text
    assert [json.loads(line)["races"] for line in log.read_text().splitlines()] == [False]


def test_deselected_checks_are_not_run(pytester, run_pytest):
    log = pytester.path / "calls.jsonl"
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_conformance = conformance_tests("gooddrv")
    """)
    out = run_pytest("-k", "lru or refusal", log=log)
    assert "1 passed, 1 skipped, 3 deselected" in out.stdout.str()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["select"] for c in calls] == [["ISO-4/lru-untouched", "ISO-6/refusal"]]


def test_a_select_that_matches_nothing_is_a_usage_error(pytester, run_pytest):
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_conformance = conformance_tests("gooddrv", select=["NOPE"])
    """)
    out = run_pytest()
    assert out.ret != 0
    assert "select=['NOPE'] matches no check" in out.stdout.str() + out.stderr.str()


def test_one_check_runs_alone_by_its_node_id(pytester, run_pytest):
    write(pytester.path, "test_drv.py", """
        from mmplug.testing import conformance_tests
        test_conformance = conformance_tests("gooddrv")
    """)
    out = run_pytest("test_drv.py::test_conformance[ISO-4/lru-untouched]")
    assert out.ret == 0, out.stdout.str()
    assert "1 passed" in out.stdout.str()


# --- the mmplug_driver_vm fixture ----------------------------------------------------------

DRIVER_VM_TEST = """
    import pytest

    def test_ini_driver(mmplug_driver_vm):
        vm, pool = mmplug_driver_vm
        assert mmplug_driver_vm.driver == "simplepool"
        assert pool.read(pool.store(b"abc")) == b"abc"
        assert vm.config.nr_pages == 4096

    @pytest.mark.mmplug_driver({path!r}, nr_pages=1024)
    def test_marker_sets_driver_and_vm_config(mmplug_driver_vm):
        assert mmplug_driver_vm.vm.config.nr_pages == 1024

    def test_each_test_gets_a_fresh_vm(mmplug_driver_vm):
        vm, pool = mmplug_driver_vm
        assert vm.instances[0].instance is pool and len(vm.instances) == 1
"""


def test_driver_vm_fixture_takes_the_driver_from_ini_and_marker(pytester, run_pytest):
    write(pytester.path, "test_fixture.py", DRIVER_VM_TEST.format(path=str(SIMPLEPOOL)))
    out = run_pytest(ini=f"mmplug_driver = {SIMPLEPOOL}\n")
    assert out.ret == 0, out.stdout.str()
    assert "3 passed" in out.stdout.str()


def test_driver_vm_fixture_option_overrides_ini(pytester, run_pytest):
    write(pytester.path, "test_fixture.py", """
        def test_driver(mmplug_driver_vm):
            assert mmplug_driver_vm.driver == "simplepool"
    """)
    out = run_pytest("--mmplug-driver", str(SIMPLEPOOL), ini="mmplug_driver = nosuch\n")
    assert out.ret == 0, out.stdout.str()


def test_driver_vm_fixture_without_a_usable_driver_fails_in_one_line(pytester, run_pytest):
    write(pytester.path, "test_fixture.py", """
        import pytest

        def test_no_driver(mmplug_driver_vm):
            pass

        @pytest.mark.mmplug_driver("nosuch")
        def test_unknown_driver(mmplug_driver_vm):
            pass
    """)
    out = run_pytest()
    assert out.ret == 1
    assert "no driver named: use @pytest.mark.mmplug_driver(NAME), --mmplug-driver NAME" \
        in out.stdout.str()
    assert "mmplug_driver_vm: unknown driver 'nosuch'" in out.stdout.str()
    assert "Traceback" not in out.stdout.str() and "raise " not in out.stdout.str()


# --- migrate_page (in-process) ---------------------------------------------------------------

@pytest.mark.mmplug_driver(str(SIMPLEPOOL), nr_pages=1024)
def test_migrate_page_moves_the_object_to_a_new_page(mmplug_driver_vm):
    vm, pool = mmplug_driver_vm
    handle = pool.store(b"payload")
    (page,) = pool.pages()

    moved = migrate_page(vm, page)

    assert moved.migrated and moved.result == 0
    assert pool.pages() == [moved.newpage]
    assert pool.read(handle) == b"payload"
    assert page.mapping in (0, PAGE_MAPPING_MOVABLE)  # released by the driver, or freed
    assert has_movable_tag(moved.newpage)


@pytest.mark.mmplug_driver(str(SIMPLEPOOL), nr_pages=1024)
def test_migrate_page_puts_back_a_page_its_driver_keeps(mmplug_driver_vm):
    vm, pool = mmplug_driver_vm
    handle = pool.store(b"pinned")
    (page,) = pool.pages()
    pool.pin(handle)

    kept = migrate_page(vm, page, MigrateMode.ASYNC)

    assert kept.isolated and not kept.migrated and kept.result == 1
    assert kept.newpage is None
    assert pool.pages() == [page] and not page_isolated(page)  # put back
    assert vm.vmstat.events["migrate_eagain"] > 0
    vm.cpus.lock_page(page)
    assert page_movable(page)
    vm.cpus.unlock_page(page)
    pool.unpin(handle)
