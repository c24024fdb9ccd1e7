"""The generated driver project, installed into a fresh virtual environment, passes the suite.

Offline and quick: the inner venv sees the packages of the environment that
runs these tests (mmplug, pytest, setuptools, wheel) through a `.pth` file,
and the project is installed editable without dependencies, build isolation
or an index.  `--system-site-packages` would not do: when the tests run in a
venv, it shows the base interpreter's packages, not the venv's.  The console
script `mmplug` is not in the inner venv's bin, so its python runs the CLI
module itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import site
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from mmplug.authoring import write_project

NAME = "venvpool"


def _editable_builds_offline() -> bool:
    """setuptools builds an editable wheel with its own bdist_wheel (>= 70.1) or `wheel`'s."""
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1):
        return True
    return importlib.util.find_spec("wheel") is not None


pytestmark = [
    pytest.mark.slow,   # each test builds and installs a project into a fresh venv
    pytest.mark.skipif(not _editable_builds_offline(),
                       reason="an offline editable install needs setuptools>=70.1 "
                              "or the wheel package"),
]


def run(args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


#: what makes `pip install` work offline here: the venv already sees every dependency
OFFLINE = ["--no-deps", "--no-build-isolation", "--no-index"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """The python of a fresh venv that sees this environment's packages."""
    root = tmp_path_factory.mktemp("venv")
    made = run([sys.executable, "-m", "venv", root / "venv"], cwd=root)
    assert made.returncode == 0, made.stderr
    python = root / "venv" / "bin" / "python"
    _see_this_environment(python)
    return python


def install(python: Path, project: Path) -> None:
    installed = run([python, "-m", "pip", "install", *OFFLINE, "-e", project], cwd=project.parent)
    assert installed.returncode == 0, installed.stdout + installed.stderr


@pytest.fixture(scope="module")
def venv_project(venv, tmp_path_factory):
    """(python of a fresh venv with the generated driver installed, the project directory)."""
    root = tmp_path_factory.mktemp("generated")
    project = write_project(NAME, root / "mmplug-venvpool").directory
    install(venv, project)
    return venv, project


def variant(root: Path, name: str, edits: dict[str, str]) -> Path:
    """A generated project whose driver has `edits` (old text -> new text) applied."""
    project = write_project(name, root / f"mmplug-{name}").directory
    driver = project / f"mmplug_{name}" / "__init__.py"
    text = driver.read_text()
    for old, new in edits.items():
        assert text.count(old) == 1, f"the template no longer has {old!r}"
        text = text.replace(old, new)
    driver.write_text(text)
    return project


def pytest_in(python: Path, project: Path, *args: str) -> subprocess.CompletedProcess:
    return run([python, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                *args], cwd=project)


def _see_this_environment(python: Path) -> None:
    """Let the venv of `python` import what this environment has, editable installs included.

    `site.addsitedir` on each of this environment's site directories runs their
    `.pth` files too, which is how editable installs (mmplug's, the drivers')
    are found.
    """
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    inner = Path(out.stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                          *site.getsitepackages()])
    lines = [f"import site; site.addsitedir({d!r})" for d in ours if Path(d).is_dir()]
    (inner / "_mmplug_outer_env.pth").write_text("\n".join(lines) + "\n")


def test_the_installed_driver_is_found_through_its_entry_point(venv_project):
    python, project = venv_project
    out = run([python, "-m", "mmplug.cli", "plugins", "--json"], cwd=project.parent)
    assert out.returncode == 0, out.stderr
    rows = {d["name"]: d for d in json.loads(out.stdout)["drivers"]}
    assert rows[NAME]["status"] == "loaded"
    assert rows[NAME]["origin"] == f"entry point {NAME} = mmplug_{NAME}"


def test_check_driver_passes_every_check(venv_project):
    python, project = venv_project
    out = run([python, "-m", "mmplug.cli", "check-driver", NAME], cwd=project.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout
    assert f"Total for {NAME}:" in out.stdout and "Failed: 0" in out.stdout


def test_the_projects_own_tests_pass_with_the_conformance_suite(venv_project):
    python, project = venv_project
    out = run([python, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
              cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr
    # one test per check of the suite, plus the template's own two tests
    assert "failed" not in out.stdout and " passed" in out.stdout


# --- the project's own tests on drivers that use several pages ----------------------------

#: slots of 1500 bytes: two per 4 KiB page, so the template's objects take several pages
MULTI_PAGE = {"OBJECT_SIZE = 256": "OBJECT_SIZE = 1500"}


def test_the_projects_own_tests_pass_on_a_multi_page_variant(venv, tmp_path):
    project = variant(tmp_path, "multipool", MULTI_PAGE)
    install(venv, project)
    out = pytest_in(venv, project)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "failed" not in out.stdout and " passed" in out.stdout


def test_the_projects_own_tests_pass_on_zsmalloc(venv_project):
    """zsmalloc is correct and multi-page: zspages of up to 4 pages, objects across them."""
    python, project = venv_project
    out = pytest_in(python, project, "--mmplug-driver", "zsmalloc", "-k", "not conformance")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_the_migration_test_still_fails_on_a_driver_listing_a_migrated_page(venv, tmp_path):
    ghost = variant(tmp_path, "ghostpool", {
        **MULTI_PAGE,
        "            return [record.page for record in self.records]":
            "            return [record.page for record in self.records] + "
            "getattr(self, 'gone', [])",
        "    put_page(page)                           # MIG-7":
            "    pool.gone = getattr(pool, 'gone', []) + [page]\n"
            "    put_page(page)                           # MIG-7",
    })
    install(venv, ghost)
    out = pytest_in(venv, ghost, "-k", "test_objects_survive_migration")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed" in out.stdout and "the pool still lists page" in out.stdout


# --- new-driver's "Next:" steps, run as printed --------------------------------------------

def test_the_next_steps_new_driver_prints_work(venv, tmp_path):
    project = write_project("nextpool", tmp_path / "mmplug-nextpool")
    steps = [shlex.split(step) for step in project.next_steps()]
    meta = tomllib.loads((project.directory / "pyproject.toml").read_text())
    assert steps[0] == ["cd", str(project.directory)]
    cwd = Path(steps[0][1])
    ran = []
    for argv in steps[1:]:
        if argv[:4] == ["python", "-m", "pip", "install"]:
            # The extra the step installs must bring pytest, which the last step runs.
            extras = [a.split("[", 1)[1].rstrip("]") for a in argv if a.startswith(".[")]
            assert extras and all(any(dep.startswith("pytest")
                                      for dep in meta["project"]["optional-dependencies"][x])
                                  for x in extras)
            argv = [venv, *argv[1:], *OFFLINE]
        elif argv[0] == "python":
            argv = [venv, *argv[1:]]
        elif argv[0] == "mmplug":
            argv = [venv, "-m", "mmplug.cli", *argv[1:]]   # no console script in this venv
        out = run(argv, cwd=cwd)
        assert out.returncode == 0, f"{argv}: {out.stdout}{out.stderr}"
        ran.append(argv[1:3])
    assert ["-m", "pytest"] in ran
