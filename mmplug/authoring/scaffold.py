"""`mmplug new-driver`: write a complete, installable driver project from the template.

The project is a setuptools package with the `mmplug.drivers` entry point, a
driver module that keeps the whole contract (a pool of pages holding objects),
a test file that runs the conformance suite through mmplug's pytest plugin,
and a README.  Templates live in `template/` beside this module; a
placeholder is written `{{key}}` so that it never clashes with Python's or
TOML's own braces.
"""

from __future__ import annotations

import importlib.metadata
import keyword
import re
import unicodedata
from importlib import resources
from pathlib import Path

from attrs import frozen

from ..errors import UsageError
from ..plugins import ENTRY_POINT_GROUP

#: template file -> path in the project ({name}/{package} are filled in)
LAYOUT = (
    ("pyproject.toml.tmpl", "pyproject.toml"),
    ("README.md.tmpl", "README.md"),
    ("gitignore.tmpl", ".gitignore"),
    ("driver.py.tmpl", "{package}/__init__.py"),
    ("test_driver.py.tmpl", "tests/test_{name}.py"),
)

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@frozen(slots=True)
class DriverProject:
    """The names one driver project is built from."""

    #: the driver's name: DriverInfo.name and the entry-point name
    name: str
    #: the import package, e.g. mmplug_gpupool
    package: str
    #: the distribution, e.g. mmplug-gpupool
    dist: str
    #: where the project is written
    directory: Path

    @classmethod
    def for_name(cls, name: str, directory: Path | None = None) -> DriverProject:
        check_name(name)
        package = f"mmplug_{name}"
        dist = f"mmplug-{name.replace('_', '-')}"
        return cls(name, package, dist, Path(directory) if directory is not None else Path(dist))

    def placeholders(self) -> dict[str, str]:
        return {"name": self.name, "package": self.package, "dist": self.dist,
                "mmplug_requirement": _mmplug_requirement()}

    def next_steps(self) -> list[str]:
        """The commands that take the new project to passing tests, in order.

        pytest comes with the project's `test` extra, so the install names it.
        """
        return [f"cd {self.directory}",
                "python -m pip install -e '.[test]'",
                f"mmplug check-driver {self.name}",
                "python -m pytest"]

    def files(self) -> dict[str, str]:
        """Project-relative path -> rendered text, for every file of the template."""
        values = self.placeholders()
        out = {}
        for template, target in LAYOUT:
            text = resources.files(__package__).joinpath("template", template).read_text("utf-8")
            out[target.format(name=self.name, package=self.package)] = render(text, values)
        return out


def render(text: str, values: dict[str, str]) -> str:
    """Fill in `{{key}}` placeholders; an unknown key is a bug in the template."""
    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(fill, text)


#: the longest driver name: it is also a package, a distribution and file names
MAX_NAME = 64
#: what packaging accepts as a distribution name (PEP 508, core metadata "Name")
_DIST_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


def check_name(name: str) -> None:
    """A driver name must make a valid package, distribution and entry point, and name no
    installed driver: ASCII letters, digits and _, a letter first, not ending in _."""
    shown = name if len(name) <= 40 else name[:40] + "..."
    if not name:
        raise UsageError("driver name '' is empty; give one, e.g. gpupool")
    if len(name) > MAX_NAME:
        raise UsageError(f"driver name {shown!r} has {len(name)} characters; use at most "
                         f"{MAX_NAME} (it names the package, the distribution and their files)")
    if keyword.iskeyword(name):
        raise UsageError(f"driver name {name!r} is a Python keyword; choose another name")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name.endswith("_") or \
            not _DIST_NAME.match(f"mmplug-{name.replace('_', '-')}"):
        raise UsageError(f"driver name {shown!r} cannot be packaged: use ASCII letters, digits "
                         f"and _, starting with a letter and not ending with _{_hint(name)}")
    taken = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if name in taken:
        raise UsageError(f"a driver named {name!r} is already installed ({taken[name]}); "
                         "choose another name")


def _hint(name: str) -> str:
    """ (e.g. pool) for pöol, drv_9lives for 9lives: a name that would do, if one is near."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fixed = re.sub(r"[^A-Za-z0-9_]", "_", ascii_name).strip("_")
    fixed = re.sub(r"__+", "_", fixed)[:MAX_NAME]
    if fixed and not fixed[0].isalpha():
        fixed = f"drv_{fixed}"[:MAX_NAME].rstrip("_")
    if fixed and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*[A-Za-z0-9]|[A-Za-z]", fixed) and \
            not keyword.iskeyword(fixed):
        return f" (e.g. {fixed})"
    return ""


def write_project(name: str, directory: Path | str | None = None) -> DriverProject:
    """Write the project for driver `name` into `directory` (default ./mmplug-NAME).

    Raises UsageError for a bad name or a directory that already exists.
    """
    project = DriverProject.for_name(name, Path(directory) if directory is not None else None)
    target = project.directory
    shown = str(target) if len(str(target)) <= 120 else str(target)[:120] + "..."
    try:
        exists = target.exists()
    except OSError as exc:
        raise UsageError(f"--dir {shown!r}: {exc.strerror or exc}") from None
    if exists:
        raise UsageError(f"{shown!r} already exists; choose another --dir or remove it")
    files = project.files()
    try:
        for relpath, text in files.items():
            path = target / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {shown!r}: {exc.strerror or exc}") from None
    return project


def _mmplug_requirement() -> str:
    """`"mmplug>=X.Y"` for the running mmplug, or a bare `"mmplug"` from a source tree."""
    from .. import __version__

    match = re.match(r"(\d+)\.(\d+)", __version__)
    if match is None or __version__.startswith("0.0.0"):
        return '"mmplug"'
    return f'"mmplug>={match.group(1)}.{match.group(2)}"'
