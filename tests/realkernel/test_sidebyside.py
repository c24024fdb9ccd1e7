"""The side-by-side comparison on a real run kept as fixtures: the driver-level rows agree."""

import pytest

from mmplug.realkernel import sidebyside
from mmplug.realkernel.run import compare_kept, table_text

from kernelhelp import ZRAM_RUN


@pytest.fixture(scope="module")
def result():
    return compare_kept("zram", ZRAM_RUN)


def rows(result):
    return {r.label: r for r in result["_rows"]}


@pytest.mark.parametrize("label", [
    "zsmalloc pages before compaction (movable)",
    "zsmalloc pages after the fill",
    "compr_data_size before compaction",
    "zsmalloc pages before compaction (mem_used_total)",
    "zsmalloc pages after compact_memory",
    "pages freed by zram's compact (pages_compacted)",
    "zsmalloc pages after zram's compact",
    "DMA32 free pageblocks before",
])
def test_zram_rows_agree_exactly(result, label):
    row = rows(result)[label]
    assert row.tolerance == "exact"
    assert row.kernel == row.model, row


def test_pages_both_scanners_passed_moved_alike(result):
    row = next(r for r in result["_rows"] if r.label.startswith("DMA32 LRU and zsmalloc pages moved below"))
    assert row.ok, row


def test_no_row_differs_without_a_reason(result):
    bad = [r for r in result["_rows"] if not r.ok and not r.reasons]
    assert bad == []
    for r in result["_rows"]:
        for reason in r.reasons:
            assert reason in sidebyside.REASONS


def test_table_text(result):
    text = table_text(result)
    assert text.startswith("mmplug kernel run zram: seed 1, guest Linux 6.1.0")
    assert "kernel" in text.splitlines()[1] and "verdict" in text.splitlines()[1]
    assert "Reasons for the rows that differ:" in text


def test_tolerance_rules():
    assert sidebyside.within(100, 104, "±5%")
    assert not sidebyside.within(100, 106, "±5%")
    assert sidebyside.within(10, 13, "±3")
    assert not sidebyside.within(10, 14, "±3")
    assert sidebyside.within("1 2", "1 2", "exact")
    assert sidebyside.within(None, 3, "exact")
    row = sidebyside.Row("s", "x", 1, 2, "exact", ())
    assert row.verdict == "DIFFERS, unexplained"
    assert sidebyside.Row("s", "x", 1, 2, "exact", ("stride",)).verdict == "differs: stride"
