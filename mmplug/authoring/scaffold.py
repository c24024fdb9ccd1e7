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
    def for_name(cls, name: str, directory: Path | None = None) -> "DriverProject":
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


def check_name(name: str) -> None:
    """A driver name must be a Python identifier that names no installed driver."""
    if keyword.iskeyword(name):
        raise UsageError(f"driver name {name!r} is a Python keyword; choose another name")
    if not name.isidentifier():
        fixed = re.sub(r"\W", "_", name).strip("_")
        if fixed and fixed[0].isdigit():
            fixed = f"drv_{fixed}"
        hint = f" (e.g. {fixed})" if fixed.isidentifier() and not keyword.iskeyword(fixed) else ""
        raise UsageError(f"driver name {name!r} is not a Python identifier: use letters, digits "
                         f"and _, not starting with a digit{hint}")
    taken = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if name in taken:
        raise UsageError(f"a driver named {name!r} is already installed ({taken[name]}); "
                         "choose another name")


def write_project(name: str, directory: Path | str | None = None) -> DriverProject:
    """Write the project for driver `name` into `directory` (default ./mmplug-NAME).

    Raises UsageError for a bad name or a directory that already exists.
    """
    project = DriverProject.for_name(name, Path(directory) if directory is not None else None)
    target = project.directory
    if target.exists():
        raise UsageError(f"{str(target)!r} already exists; choose another --dir or remove it")
    files = project.files()
    try:
        for relpath, text in files.items():
            path = target / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    return project


def _mmplug_requirement() -> str:
    """`"mmplug>=X.Y"` for the running mmplug, or a bare `"mmplug"` from a source tree."""
    from .. import __version__

    match = re.match(r"(\d+)\.(\d+)", __version__)
    if match is None or __version__.startswith("0.0.0"):
        return '"mmplug"'
    return f'"mmplug>={match.group(1)}.{match.group(2)}"'
