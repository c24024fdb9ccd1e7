"""docs/fidelity.md: every row of every section names a model function that
exists, a status the doc defines, and a test that exists.

Model references are `module:attr`; a module without a dot is one of mmplug's
(`zone:Zone.can_steal_fallback` is mmplug.zone), a dotted one is imported as
written (`mmplug_zsmalloc.pool:ZsPool.free`)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from mmplug.vm import kernel_options

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "fidelity.md"
STATUSES = ("same", "approximated", "not modelled")
MODEL_REF = re.compile(r"`([\w.]+):([\w.]+)`")
TEST_REF = re.compile(r"`([\w./-]+\.py)::(\w+)`")
RANGE = re.compile(r"(\d+)-(\d+)")


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        # "\|" is a literal bar inside a cell
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells[0].split(" (")[0].lower() in ("kernel", "bug"):
            continue
        rows.append(cells)
    return rows


TEXT = DOC.read_text()
ROWS = _rows(_section(TEXT, "Drivers"))
#: every section's rows, the core's (v4.19 mm/*.c, the headers) and the drivers'
ALL_ROWS = _rows(TEXT)


def _resolve(module: str, attrs: str) -> object:
    try:
        ours = importlib.util.find_spec(f"mmplug.{module}") is not None
    except ModuleNotFoundError:   # mmplug.mmplug_zsmalloc.pool: a parent that isn't ours
        ours = False
    obj: object = importlib.import_module(f"mmplug.{module}" if ours else module)
    for name in attrs.split("."):
        obj = getattr(obj, name)
    return obj


def _test_exists(path: str, name: str) -> bool:
    file = ROOT / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name == name
               for node in ast.walk(tree))


def test_the_section_has_a_table_per_driver():
    kinds = {cells[1].split(".")[0].strip("`") for cells in ROWS if cells[1].startswith("`")}
    assert {"mmplug_balloon", "mmplug_zsmalloc", "mmplug_z3fold"} <= kinds
    assert len(ROWS) > 100


def test_the_core_sections_cover_the_core_files():
    titles = set(re.findall(r"\n## (.*)\n", TEXT))
    for source in ("mm/migrate.c", "mm/compaction.c", "mm/page_alloc.c", "mm/vmstat.c",
                   "page-flags.h"):
        assert any(source in t for t in titles), source
    assert len(ALL_ROWS) > len(ROWS) + 80


@pytest.mark.parametrize("cells", ALL_ROWS, ids=[c[0][:60] for c in ALL_ROWS])
def test_row(cells):
    if len(cells) == 5:
        # the newer-kernel options' table: kernel, model, option (release, commit), status, test
        # (or "none: ..." for a fix both versions share)
        option = re.match(r"`(\w+)` \((v[\d.]+), ([0-9a-f]{12})\)", cells[2])
        assert option or cells[2].startswith("none: "), cells[2]
        assert not option or option.group(1) in {o["name"] for o in kernel_options()}, cells[2]
        cells = [cells[0], cells[1], cells[3], cells[4]]
    assert len(cells) == 4, cells
    if cells[0].startswith("BUG-"):
        # the bugs an instance can put back: bug, behaviour, model, test
        kernel, status, (model, tests) = cells[1], "same", cells[2:]
    else:
        kernel, model, status, tests = cells
    for a, b in RANGE.findall(kernel):
        assert int(a) <= int(b), kernel
    for module, attrs in MODEL_REF.findall(model):
        _resolve(module, attrs)
    assert re.match(r"(same|approximated|not modelled)\b", status), status
    if not status.startswith("same"):
        assert ": " in status, f"{status!r} does not say how or why"
    refs = TEST_REF.findall(tests)
    if status.startswith("not modelled"):
        assert tests in ("—", "-") or refs, tests
    else:
        assert refs, f"no test pins {kernel}"
    for path, name in refs:
        assert _test_exists(path, name), f"{path}::{name} does not exist"
