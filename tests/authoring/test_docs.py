"""The author docs stay true to the code: names, rule ids, the walkthrough's edit, diagrams."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import mmplug.kernel
from mmplug import rules
from mmplug.authoring import scaffold

DOCS = Path(__file__).resolve().parents[2] / "docs"
API = DOCS / "driver-api.md"
WALKTHROUGH = DOCS / "writing-a-driver.md"

pytestmark = pytest.mark.skipif(not API.is_file(), reason="runs from a source tree only")


def test_every_kernel_function_a_driver_calls_is_documented():
    text = API.read_text()
    public = [name for name, obj in vars(mmplug.kernel).items()
              if not name.startswith("_") and inspect.isfunction(obj)
              and obj.__module__ in ("mmplug.kernel", "mmplug.page")]
    missing = [name for name in public if f"`{name}(" not in text]
    assert missing == []


def test_every_rule_id_the_docs_cite_exists():
    cited = set()
    for doc in (API, WALKTHROUGH):
        text = re.sub(r"\b[A-Z]+-\d+/[\w-]+", "", doc.read_text())  # check ids
        cited |= set(re.findall(r"\b([A-Z]{3,4}-\d+)\b", text))
    assert cited and sorted(r for r in cited if not rules.exists(r)) == []


def test_the_line_the_walkthrough_deletes_is_in_the_template():
    deleted = re.search(r"Delete this line from `migratepage`:\n\n```python\n(.*)\n```",
                        WALKTHROUGH.read_text()).group(1)
    driver = scaffold.DriverProject.for_name("gpupool").files()["mmplug_gpupool/__init__.py"]
    assert deleted in driver.splitlines()


def test_the_sequence_diagrams_are_well_formed_mermaid():
    blocks = re.findall(r"```mermaid\n(.*?)```", API.read_text(), re.S)
    assert len(blocks) == 2
    for block in blocks:
        lines = [line.strip() for line in block.strip().splitlines()]
        assert lines[0] == "sequenceDiagram"
        opened = sum(line.startswith(("alt ", "loop ", "opt ")) for line in lines)
        assert opened == lines.count("end")
        # ';' ends a statement and '#' starts an entity in mermaid: neither may be in a message
        assert not any(";" in line or "#" in line for line in lines)
        declared = {m.group(1) for line in lines
                    if (m := re.match(r"participant (\w+) as ", line))}
        used = set()
        for line in lines:
            if arrow := re.match(r"(\w+)-{1,2}>>(\w+):", line):
                used |= {arrow.group(1), arrow.group(2)}
        assert used and used <= declared
