"""Every row of compare's table is defined, once, and docs/metrics.md is that definition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from comparehelp import KNOBPOOL, SIMPLEPOOL, host, tiny

from mmplug.compare import rows
from mmplug.compare.render import table
from mmplug.compare.runner import iter_public, run_all, scenario_dict

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@pytest.fixture(scope="module")
def results():
    w = tiny()
    return run_all(host(), [KNOBPOOL, SIMPLEPOOL], w, [1]), w


def test_docs_metrics_md_is_written_from_the_row_definitions():
    if not DOC.is_file():
        pytest.skip("runs from a source tree only")
    assert DOC.read_text() == rows.markdown(), (
        "docs/metrics.md is stale: python -m mmplug.compare.rows > docs/metrics.md")


def test_every_row_the_table_prints_has_a_definition(results):
    res, w = results
    text = table(res, scenario_dict(w), [1])
    body = text.split("\n\n", 1)[1].split("FREE BLOCKS PER ORDER")[0]
    printed = [m.group(1) for line in body.splitlines()
               if (m := re.match(r"  (\S.*?\S)\s{2,}\S", line))]
    assert len(printed) == len(rows.TABLE_ROWS)
    doc = rows.markdown()
    for label in printed:
        row = rows.find(label)
        assert row is not None, f"the table prints {label!r}, which has no definition"
        assert f"### {label}\n" in doc
    assert "FREE BLOCKS PER ORDER" in text and rows.find("free blocks per order") is not None


def test_every_definition_is_complete_and_names_real_json_fields(results):
    res, _ = results
    public = dict(iter_public(res[0][0]))
    assert len({r.key for r in rows.ROWS}) == len(rows.ROWS)
    assert len({r.slug for r in rows.ROWS}) == len(rows.ROWS)
    for row in rows.ROWS:
        assert len(row.formula) > 20 and len(row.reading) > 20, row.label
        assert row.section in {title for title, _ in rows.SECTIONS}, row.label
        assert row.fields, row.label
        for field in row.fields:
            node = public
            for part in field.split("."):
                assert isinstance(node, dict) and part in node, f"{row.label}: no JSON {field}"
                node = node[part]


def test_indices_cite_the_kernel_and_say_what_minus_one_means():
    extfrag = rows.resolve("extfrag index order 9")
    assert "__fragmentation_index" in extfrag.kernel and "-1.000" in extfrag.reading
    assert "unusable_free_index" in rows.resolve("unusable index order 9").kernel


def test_non_causes_are_not_listed_as_causes():
    causes = [r.label for r in rows.ROWS if r.section == "pageblocks not emptied, by cause"]
    assert "order-9 obtained" not in causes and "efficiency" not in causes
    assert "order-9 ceiling" not in causes and len(causes) == 6


def test_the_causes_add_up_and_the_ceiling_bounds_what_was_obtained(results):
    res, _ = results
    for runs in res:
        b = runs[0]["blocking"]
        assert sum(b["blocking_by_cause"].values()) == (
            b["pageblocks"] - b["free_pageblocks"] - b["held_pageblocks"])
        assert b["obtained"] <= b["ceiling"] <= b["pageblocks"]
