"""The CLI commands of mmplug.authoring: `new-driver` and `explain` (registered in mmplug.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import rules
from ..commandline import emit_json, json_option, output_option
from ..compare import rows as table_rows
from . import explain as explaining
from .scaffold import write_project


def new_driver(
    name: Annotated[str, typer.Argument(
        metavar="NAME",
        help="The driver's name, a Python identifier (e.g. gpupool): the entry-point name "
             "and DriverInfo.name.")],
    directory: Annotated[Path | None, typer.Option(
        "--dir", "-d", metavar="PATH",
        help="Where to write the project; it must not exist (default: ./mmplug-NAME).")] = None,
    as_json: Annotated[bool, json_option("what was written")] = False,
    output: Annotated[str | None, output_option("what was written")] = None,
) -> None:
    """Write a complete, installable driver plugin to start from."""
    project = write_project(name, directory)
    where = project.directory
    steps = project.next_steps()
    document = {"name": project.name, "package": project.package, "dist": project.dist,
                "directory": str(where), "files": sorted(project.files()), "next": steps}
    if emit_json(document, as_json=as_json, output=output):
        return
    typer.echo(f"Created {where}/: driver {project.name}, package {project.package}")
    for relpath in sorted(project.files()):
        typer.echo(f"  {relpath}")
    typer.echo("\nNext:")
    for step in steps:
        typer.echo(f"  {step}")


def explain(
    rule: Annotated[str | None, typer.Argument(
        metavar="RULE|ROW",
        help="A rule id (ISO-4), a check id (ISO-4/...), a group (ISO), or a row of "
             "`mmplug compare`'s table (efficiency, \"order-9 ceiling\"); none lists every "
             "rule.")] = None,
    as_json: Annotated[bool, json_option("the explanation")] = False,
    output: Annotated[str | None, output_option("the explanation")] = None,
) -> None:
    """Print a rule of the VM <-> driver contract (its kernel sources, the checks enforcing
    it) or the definition of a row of compare's table."""
    def done(document: object) -> bool:
        return emit_json(document, as_json=as_json, output=output)

    if rule is None or (group := explaining.group_of(rule)) is not None:
        selected = None if rule is None else group
        chosen = selected if selected is not None else list(rules.all_rules().values())
        if done([{"id": r.id, "section": r.section, "text": r.text} for r in chosen]):
            return
        typer.echo(explaining.listing(selected))
        typer.echo("\n`mmplug explain RULE` prints one rule in full; `mmplug explain ROW` a row "
                   "of compare's table (every row: docs/metrics.md).")
        return
    if not rules.exists(rule.split("/", 1)[0]):
        specs = explaining.checks_named(rule)
        if specs:
            if not done([{"id": c.id, "title": c.title, "kind": c.kind,
                          "rules": list(c.rules)} for c in specs]):
                typer.echo(explaining.render_checks(specs))
            return
        row = explaining.row_of(rule)
        if row is not None:
            explain_row(row, as_json=as_json, output=output)
            return
    found = explaining.explain(rule)
    if not done(explaining.as_dict(found)):
        typer.echo(found.render())


def explain_row(row: table_rows.Row, *, as_json: bool, output: str | None) -> None:
    """One row's definition, as text or JSON (`explain ROW`, `compare --explain ROW`)."""
    if not emit_json(table_rows.as_dict(row), as_json=as_json, output=output):
        typer.echo(table_rows.render(row))
