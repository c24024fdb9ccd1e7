"""`mmplug explain RULE`: the rule's text, its kernel sources, the checks that enforce it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from mmplug.cli import main

FAKE = Path(__file__).resolve().parent / "fake_conformance.py"


def run_cli(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def fake_suite(monkeypatch):
    spec = importlib.util.spec_from_file_location("mmplug.conformance", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "mmplug.conformance", module)
    return module


def test_prints_text_sources_and_enforcing_checks(fake_suite, capsys):
    code, out, _ = run_cli(["explain", "MIG-7"], capsys)
    assert code == 0
    assert out.startswith("MIG-7  (MIG — migration")
    assert "What `migratepage` must do on success: copy the contents;" in out
    assert "https://elixir.bootlin.com/linux/v4.19/source/mm/migrate.c" in out
    assert "MIG-7/old-page-released  old page released on success" in out
    assert "ISO-4/lru-untouched" not in out
    assert "mmplug check-driver DRIVER --select MIG-7" in out


def test_a_check_listing_several_rules_appears_under_each(fake_suite, capsys):
    _, out, _ = run_cli(["explain", "flg-5"], capsys)
    assert out.startswith("FLG-5  (")
    assert "MIG-7/old-page-released" in out


def test_commits_link_to_the_kernel_history(fake_suite, capsys):
    _, out, _ = run_cli(["explain", "BUG-5"], capsys)
    assert "701d678599d0  https://git.kernel.org/torvalds/c/701d678599d0" in out


def test_a_check_id_explains_its_rule(fake_suite, capsys):
    code, out, _ = run_cli(["explain", "ISO-4/lru-untouched"], capsys)
    assert code == 0 and out.startswith("ISO-4  (")


def test_a_rule_no_check_cites_says_so(fake_suite, capsys):
    _, out, _ = run_cli(["explain", "CMP-2"], capsys)
    assert "(none: no check of `mmplug check-driver` cites this rule)" in out


def test_unknown_rule_suggests_the_closest_in_one_line(fake_suite, capsys):
    code, out, err = run_cli(["explain", "ISO-44"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("mmplug: error: no rule 'ISO-44'; did you mean ISO-4")
    assert err.count("\n") == 1


def test_without_the_suite_the_rule_is_still_explained(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mmplug.conformance", None)  # import fails
    code, out, _ = run_cli(["explain", "ISO-4"], capsys)
    assert code == 0
    assert "A driver must not touch `page->lru`" in out
    assert "could not be imported" in out


def test_a_group_or_nothing_lists_rules(fake_suite, capsys):
    _, out, _ = run_cli(["explain", "PUT"], capsys)
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  ")] == \
        ["PUT-1", "PUT-2", "PUT-3"]
    _, everything, _ = run_cli(["explain"], capsys)
    assert "ISO-4" in everything and "API-1" in everything and "LCK-3" in everything


def test_json_output(fake_suite, capsys):
    _, out, _ = run_cli(["explain", "REL-2", "--json"], capsys)
    data = json.loads(out)
    assert data["id"] == "REL-2"
    assert [c["id"] for c in data["checks"]] == ["REL-2/free-isolated"]


def test_an_id_only_checks_use_explains_those_checks(fake_suite, capsys):
    code, out, _ = run_cli(["explain", "race"], capsys)
    assert code == 0
    assert out.startswith("RACE/explore  races explored  [races]")
    assert "  ISO-5   The compaction scanner only offers" in out
    assert "mmplug check-driver DRIVER --select RACE/explore" in out
    _, data, _ = run_cli(["explain", "RACE/explore", "--json"], capsys)
    assert json.loads(data) == [{"id": "RACE/explore", "title": "races explored",
                                 "kind": "races", "rules": ["ISO-5"]}]


def test_links_follow_the_kernel_version_a_rule_describes(fake_suite, capsys):
    _, z3fold, _ = run_cli(["explain", "DRV-3F3"], capsys)
    assert "https://elixir.bootlin.com/linux/v6.0/source/mm/z3fold.c" in z3fold
    _, batches, _ = run_cli(["explain", "MIG-11"], capsys)
    assert "https://elixir.bootlin.com/linux/v6.18/source/mm/migrate.c" in batches
    _, flags, _ = run_cli(["explain", "FLG-5"], capsys)  # mentions [v6.0] only on the side
    assert "linux/v4.19/source/" in flags and "linux/v6.0/" not in flags


# --- rows of compare's table ---------------------------------------------------------------

@pytest.mark.parametrize("query", ["order-9 ceiling", "ceiling", "ORDER-9 CEILING",
                                   "order_9_ceiling"])
def test_a_row_of_compares_table_by_label_key_or_slug(capsys, query):
    code, out, _ = run_cli(["explain", query], capsys)
    assert code == 0
    assert out.startswith("order-9 ceiling  (ORDER-9 BLOCKS AT THE END; a row of `mmplug compare`)")
    assert "value:" in out and "reading:" in out and "blocking.ceiling" in out


def test_a_row_with_its_kernel_source(capsys):
    _, out, _ = run_cli(["explain", "extfrag index order 9"], capsys)
    assert "__fragmentation_index" in out and "-1.000" in out
    _, gorman, _ = run_cli(["explain", "Gorman cost (Mwords)"], capsys)
    assert "397487db696c" in gorman and "Wi" in gorman


def test_a_part_naming_several_rows_lists_them(capsys):
    code, _, err = run_cli(["explain", "extfrag"], capsys)
    assert code == 2 and "several rows" in err
    assert "'extfrag index order 3'" in err and "'extfrag index order 9'" in err


def test_rule_ids_still_win_and_unknown_words_say_so(fake_suite, capsys):
    code, out, _ = run_cli(["explain", "ISO-4"], capsys)
    assert code == 0 and out.startswith("ISO-4  (")
    code, _, err = run_cli(["explain", "nothing-like-this"], capsys)
    assert code == 2 and "no rule 'nothing-like-this'" in err


def test_a_row_as_json_and_through_compare(capsys):
    _, out, _ = run_cli(["explain", "efficiency", "--json"], capsys)
    doc = json.loads(out)
    assert doc["row"] == "efficiency" and doc["json"] == ["blocking.efficiency"]
    code, same, _ = run_cli(["compare", "--explain", "efficiency", "--json"], capsys)
    assert code == 0 and json.loads(same) == doc
    code, text, _ = run_cli(["compare", "--explain", "efficiency"], capsys)
    assert code == 0 and text.startswith("efficiency  (")
    code, _, err = run_cli(["compare", "--explain", "no such row"], capsys)
    assert code == 2 and "no row 'no such row'" in err


def test_the_rule_listing_points_at_rows(capsys):
    _, out, _ = run_cli(["explain"], capsys)
    assert "`mmplug explain ROW`" in out and "docs/metrics.md" in out
