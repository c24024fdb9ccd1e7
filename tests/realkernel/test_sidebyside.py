"""The side-by-side comparison on a real run kept as fixtures (zram, Debian 6.1.192 guest).

The model with the guest's options (mmplug.vm.kernel_settings("6.1")) compacts
the same memory as the kernel: every row of the table is the kernel's figure
exactly.  The v4.19 model differs where the newer-kernel options say, and each
option the table names changes the rows that name it, and only those.
"""

import shutil

import pytest

from mmplug.realkernel import sidebyside
from mmplug.realkernel.kernelside import read_run
from mmplug.realkernel.run import compare_kept, compare_with_model, table_text
from mmplug.realkernel.scenario import load, plan
from mmplug.vm import kernel_settings

from kernelhelp import ZRAM_RUN


@pytest.fixture(scope="module")
def result():
    return compare_kept("zram", ZRAM_RUN)


def rows(result):
    return {r.label: r for r in result["_rows"]}


def test_with_the_guests_options_every_row_is_the_kernels_figure(result):
    assert result["model"]["release"] == "6.1"
    assert {k for k, v in result["model"]["options"].items() if v} == {
        "free_scan_stride", "rescan_block", "scan_counts_isolated", "zone_scan_counts"}
    for r in result["_rows"]:
        assert r.guested and r.ok, r
        assert r.guest == r.kernel, r


@pytest.mark.parametrize("label", [
    "pgmigrate_success", "compact_isolated", "compact_migrate_scanned", "compact_free_scanned",
    "zsmalloc pages migrated", "DMA32 pfn where the scanners met",
])
def test_v419_differs_and_the_verdict_names_the_options(result, label):
    row = rows(result)[label]
    assert not row.ok_baseline and row.ok
    assert row.verdict == "agrees; v4.19: " + ", ".join(row.versions)
    assert set(row.versions) <= set(sidebyside.VERSION_TAGS)
    # v4.19's free scanner looks at every pfn: it scans far more than 6.1's
    if label == "compact_free_scanned":
        assert row.model > 5 * row.kernel


@pytest.mark.parametrize("label", [
    "zsmalloc pages before compaction (movable)", "zsmalloc pages after the fill",
    "compr_data_size before compaction", "zsmalloc pages before compaction (mem_used_total)",
    "zsmalloc pages after compact_memory", "pages freed by zram's compact (pages_compacted)",
    "zsmalloc pages after zram's compact", "DMA32 free pageblocks before",
])
def test_driver_rows_are_exact_in_both_models(result, label):
    row = rows(result)[label]
    assert row.tolerance == "exact"
    assert row.kernel == row.model == row.guest, row


@pytest.fixture(scope="module")
def without_each_option():
    """The table again with the guest's options less one, for each option."""
    sc = load("zram")
    kernel = read_run(ZRAM_RUN)
    out = {}
    for tag, name in sidebyside.VERSION_TAGS.items():
        options = dict(kernel_settings("6.1"), **{name: False})
        out[tag] = compare_with_model(sc, plan(sc, None), kernel, options)
    return out


def test_each_option_changes_exactly_the_rows_that_name_it(result, without_each_option):
    """The rows each option is named by are the rows it changes on this run: taking it away
    changes some of them, and no row that does not name it."""
    full = rows(result)
    for tag, res in without_each_option.items():
        changed = {r.label for r in res["_rows"] if r.guest != full[r.label].guest}
        assert changed, tag
        for label in changed:
            assert tag in full[label].versions, (tag, label)


def test_table_text(result):
    text = table_text(result)
    lines = text.splitlines()
    assert lines[0].startswith("mmplug kernel run zram: seed 1, guest Linux 6.1.0")
    assert "v4.19, and v4.19 with 6.1's options (free_scan_stride" in lines[0]
    assert lines[1].split() == ["kernel", "v4.19", "6.1", "tolerance", "verdict"]
    assert "Reasons the verdicts name:" in text
    assert "stride: v4.19's isolate_freepages_block() looks at every pfn" in text
    assert "4fca9730c51d" in text and "DIFFERS, unexplained" not in text


def test_a_run_kept_without_records_reads_its_free_pages_from_kpageflags(tmp_path):
    """Runs kept before the probe recorded free pfns: the frames' free pages are the
    PG_buddy ones, the counters the snapshots' vmstat, the start rows cite drift when
    they differ."""
    old = tmp_path / "old"
    shutil.copytree(ZRAM_RUN, old)
    for moment in ("before", "after"):
        for f in (old / moment).iterdir():
            if f.name.split(".")[0] == "free" or "." in f.name and not f.name.endswith(".gz"):
                f.unlink()
    assert not list(old.glob("*/free*")) and not list(old.glob("*/vmstat.*"))
    kept = read_run(old)
    assert kept.before.buddyinfo_at_record is None and kept.after.vmstat_at_record is None
    res = compare_kept("zram", old)
    start = [r for r in res["_rows"] if r.label.endswith("/proc/buddyinfo | snapshot")]
    assert start and all(r.reasons == ("drift",) for r in start)
    assert not [r for r in res["_rows"] if not r.ok and not r.cited]


def test_tolerance_rules():
    assert sidebyside.within(100, 104, "±5%")
    assert not sidebyside.within(100, 106, "±5%")
    assert sidebyside.within(10, 13, "±3")
    assert not sidebyside.within(10, 14, "±3")
    assert sidebyside.within("1 2", "1 2", "exact")
    assert sidebyside.within(None, 3, "exact")


def test_verdicts():
    Row = sidebyside.Row
    assert Row("s", "x", 1, 2, "exact").verdict == "DIFFERS, unexplained"
    assert Row("s", "x", 1, 2, "exact", ("drift",)).verdict == "differs: drift"
    one = Row("s", "x", 1, 2, "exact", versions=("stride",))
    assert one.verdict == "differs: stride"
    both = Row("s", "x", 1, 2, "exact", ("reclaim-order",), guest=1, versions=("stride",),
               guested=True)
    assert both.ok and not both.ok_baseline and both.verdict == "agrees; v4.19: stride"
    still = Row("s", "x", 1, 2, "exact", ("reclaim-order",), guest=3, versions=("stride",),
                guested=True)
    assert still.verdict == "differs: reclaim-order"
    bare = Row("s", "x", 1, 2, "exact", guest=3, versions=("stride",), guested=True)
    assert bare.verdict == "DIFFERS, unexplained"
    for tag in sidebyside.VERSION_TAGS:
        assert sidebyside.VERSION_TAGS[tag] in sidebyside.REASONS[tag]
