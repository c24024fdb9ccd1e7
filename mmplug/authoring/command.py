"""The CLI commands of mmplug.authoring: `new-driver` and `explain` (registered in mmplug.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import explain as explaining
from .scaffold import write_project


def new_driver(
    name: Annotated[str, typer.Argument(
        metavar="NAME",
        help="The driver's name, a Python identifier (e.g. gpupool): the entry-point name "
             "and DriverInfo.name.")],
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", "-d", metavar="PATH",
        help="Where to write the project; it must not exist (default: ./mmplug-NAME).")] = None,
) -> None:
    """Write a complete, installable driver plugin to start from."""
    project = write_project(name, directory)
    where = project.directory
    typer.echo(f"Created {where}/: driver {project.name}, package {project.package}")
    for relpath in sorted(project.files()):
        typer.echo(f"  {relpath}")
    typer.echo("\nNext:")
    typer.echo(f"  cd {where}")
    typer.echo("  pip install -e .")
    typer.echo(f"  mmplug check-driver {project.name}")
    typer.echo("  pytest")


def explain(
    rule: Annotated[Optional[str], typer.Argument(
        metavar="RULE",
        help="A rule id (ISO-4), a check id (ISO-4/...) or a group (ISO); none lists every rule.")]
        = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print a rule of the VM <-> driver contract, its kernel sources and the checks enforcing it."""
    if rule is None or (group := explaining.group_of(rule)) is not None:
        selected = None if rule is None else group
        if as_json:
            chosen = selected if selected is not None else list(explaining.rules.all_rules().values())
            typer.echo(json.dumps([{"id": r.id, "section": r.section, "text": r.text}
                                   for r in chosen], indent=2))
            return
        typer.echo(explaining.listing(selected))
        typer.echo("\n`mmplug explain RULE` prints one rule in full.")
        return
    if not explaining.rules.exists(rule.split("/", 1)[0]):
        specs = explaining.checks_named(rule)
        if specs and as_json:
            typer.echo(json.dumps([{"id": c.id, "title": c.title, "kind": c.kind,
                                    "rules": list(c.rules)} for c in specs], indent=2))
            return
        if specs:
            typer.echo(explaining.render_checks(specs))
            return
    found = explaining.explain(rule)
    if as_json:
        typer.echo(json.dumps(explaining.as_dict(found), indent=2))
        return
    typer.echo(found.render())
