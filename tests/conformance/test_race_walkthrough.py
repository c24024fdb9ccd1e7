"""The race failure docs/writing-a-driver.md walks through is what check-driver prints: the
template's _release with the mistake the walkthrough makes, run with --quick."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmplug.authoring import scaffold
from mmplug.conformance import FAIL, run_suite

WALKTHROUGH = Path(__file__).resolve().parents[2] / "docs" / "writing-a-driver.md"
LOOP = """\
        while True:
            page = record.page
            lock_page(page)
            if record.page is page:
                break
            unlock_page(page)
"""

pytestmark = pytest.mark.skipif(not WALKTHROUGH.is_file(), reason="runs from a source tree only")


def _section() -> str:
    text = WALKTHROUGH.read_text()
    return text[text.index("## 6. Read a race failure"):text.index("## 7. ")]


def test_the_race_walkthrough_prints_what_check_driver_prints(tmp_path: Path) -> None:
    section = _section()
    edit = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    source = scaffold.DriverProject.for_name("gpupool").files()["mmplug_gpupool/__init__.py"]
    assert source.count(LOOP) == 1
    broken = tmp_path / "__init__.py"
    broken.write_text(source.replace(LOOP, edit))
    assert run_suite(str(broken), races=False, quick=True).passed
    (race,) = run_suite(str(broken), select=["RACE"], quick=True).results
    assert race.verdict == FAIL and race.rule == "FLG-5" and race.site.startswith("Pool._release")
    shown = re.search(r"```console\n(.*?)```", section, re.DOTALL).group(1)
    first, *steps = [line for line in shown.splitlines()
                     if line.startswith("    FLG-5: race") or re.match(r" {5}[ >] +\d+ +\d ", line)]
    assert race.message.splitlines()[0] in first
    assert len(steps) >= 10 and all(step.strip() in race.message for step in steps)
