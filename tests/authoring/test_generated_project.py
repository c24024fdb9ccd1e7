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
import site
import subprocess
import sys
import sysconfig
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


pytestmark = pytest.mark.skipif(not _editable_builds_offline(),
                                reason="an offline editable install needs setuptools>=70.1 "
                                       "or the wheel package")


def run(args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def venv_project(tmp_path_factory):
    """(python of a fresh venv with the generated driver installed, the project directory)."""
    root = tmp_path_factory.mktemp("generated")
    project = write_project(NAME, root / "mmplug-venvpool").directory
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", venv], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    _see_this_environment(python)
    installed = run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                     "--no-index", "-e", project], cwd=root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python, project


def _see_this_environment(python: Path) -> None:
    """Let the venv of `python` import what this environment has, editable installs included.

    `site.addsitedir` on each of this environment's site directories runs their
    `.pth` files too, which is how editable installs (mmplug's, the drivers')
    are found.
    """
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
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
