"""Workloads: presets, TOML files and the errors a malformed file gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmplug import UsageError
from mmplug.compare.workload import PRESETS, load_workload, pages_for, parse_bytes, preset

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workloads" / "zram-phone.toml"


def test_presets_cover_the_issue_and_small_is_cheap():
    assert {"small", "android", "vmhost", "storm", "slabmix", "1g"} <= set(PRESETS)
    assert preset("small").nr_pages <= 8192
    assert preset("1g").nr_pages == 262144
    assert any(t.kind == "direct" and t.order == 9 for t in preset("storm").triggers)
    assert preset("vmhost").rounds > 1


def test_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match=r"unknown preset 'nope'.*small"):
        preset("nope")


def test_example_file_loads_with_every_key():
    w = load_workload(EXAMPLE)
    assert w.name == "zram-phone" and w.seed == 7 and w.nr_pages == 128 * 256
    assert w.sizes[0] == (128, 3.0)
    assert [t.kind for t in w.triggers] == ["kcompactd", "direct"]
    assert w.triggers[1].count == 8 and w.free_pattern == "random" and w.rounds == 2


def _write(tmp_path, text):
    p = tmp_path / "w.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, key, expected", [
    ('[mix]\nfill = "lots"\n', "mix.fill", "a number from 0 to 1"),
    ("[mix]\nfill = 1.5\n", "mix.fill", "a number from 0 to 1"),
    ("[zone]\npages = 1000\n", "zone.pages", "whole number of 512-page pageblocks"),
    ('[zone]\nsize = "12 parsecs"\n', "zone.size", "a size like"),
    ("[zone]\npage_size = 1000\n", "zone.page_size", "a power of two"),
    ("[objects]\nsizes = [[100000, 1]]\n", "objects.sizes[0]", "1 <= bytes <= page_size"),
    ("[objects]\nsizes = [128]\n", "objects.sizes[0]", "a pair [bytes, weight]"),
    ('[free]\npattern = "spiral"\n', "free.pattern", "one of random, alternate"),
    ('[[compact]]\nkind = "sometimes"\n', "compact[0].kind", "one of whole_zone, direct"),
    ("[[compact]]\nkind = \"direct\"\norder = 12\n", "compact[0].order", "an order from 0 to 10"),
    ("seed = true\n", "seed", "an integer"),
    ("cpus = 64\n", "cpus", "an integer from 1 to 8"),
    ("[free]\nduring = 2\n", "free.during", "a number from 0 to 1"),
    ("[mix]\nlru = 0.2\nfrobs = 3\n", "mix.frobs", "unknown key"),
    ("mix = 3\n", "mix", "a table"),
])
def test_malformed_file_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_workload(path)
    msg = str(err.value)
    assert str(path) in msg and repr(key) in msg and expected in msg
    assert "\n" not in msg


def test_toml_syntax_error_names_the_file(tmp_path):
    path = _write(tmp_path, "[zone\npages = 4096\n")
    with pytest.raises(UsageError, match=r"w\.toml: not valid TOML"):
        load_workload(path)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="no such workload file"):
        load_workload(tmp_path / "absent.toml")


def test_sizes_and_zone_overrides():
    assert parse_bytes("64MiB") == 64 << 20 and parse_bytes("4096") == 4096
    assert pages_for("4GiB", 4096) == 1 << 20
    with pytest.raises(UsageError, match="--zone-size"):
        pages_for("3KiB", 4096)
    w = preset("small").with_overrides(seed=9, nr_pages=4096)
    assert (w.seed, w.nr_pages) == (9, 4096)


def test_uniform_range(tmp_path):
    w = load_workload(_write(tmp_path, "[objects]\nmin = 100\nmax = 200\n"))
    sizes = [s for s, _ in w.sizes]
    assert sizes[0] == 100 and sizes[-1] == 200 and all(100 <= s <= 200 for s in sizes)
