"""Bad input is a usage error: exit 2 and one line that says what to change, before any work."""

from __future__ import annotations

import pytest
from relhelp import SIMPLEPOOL, run_cli, tiny_workload

from mmplug import UsageError
from mmplug.compare import trace as trace_mod
from mmplug.compare.trace import load_trace, parse_trace
from mmplug.compare.workload import load_workload

SP = str(SIMPLEPOOL)


def one_line_usage_error(code: int, out: str, err: str) -> str:
    assert code == 2, err
    assert out == "" and "running" not in err       # nothing ran
    assert err.startswith("mmplug: error: ") and err.count("\n") == 1
    return err


@pytest.mark.parametrize("toml, says", [
    ("[objects]\nsizes = [[100, inf]]\n", "0 < weight <= 1e+06, got [100, inf]"),
    ("[objects]\nsizes = [[100, nan]]\n", "got [100, nan]"),
    ("[mix]\ndriver = inf\n", "key 'mix.driver': expected a number from 0 to 1e+06, got inf"),
    ("[mix]\nlru = nan\n", "key 'mix.lru'"),
    ("[knobs]\npin = nan\n", "key 'knobs.pin': expected a number from 0 to 1"),
    ("[zone]\npage_size = 4611686018427387904\n", "a power of two from 64 to 1048576"),
    ("[zone]\npages = 4611686018427387904\n", "512-page pageblocks, from 1 to"),
    ("[zone]\nsize = \"99999999999TiB\"\n", "key 'zone.size'"),
    ("rounds = 1000000000\n", "key 'rounds': expected an integer from 1 to 1,000"),
    ("[[compact]]\nkind = \"direct\"\ncount = 100000000\n", "'compact[0].count'"),
    (f"name = \"{'x' * 5000}\"\n", "key 'name': expected a printable string"),
    ("description = \"a\\u0000b\"\n", "key 'description'"),
])
def test_workload_values_out_of_range(capsys, tmp_path, toml, says):
    path = tmp_path / "w.toml"
    path.write_text(toml)
    err = one_line_usage_error(*run_cli(capsys, "compare", SP, "--workload", str(path)))
    assert says in err and "w.toml" in err
    assert len(err) < 400        # never the whole input echoed


def test_workload_and_trace_files_that_are_folders_huge_or_binary(capsys, tmp_path):
    for option in ("--workload", "--trace"):
        err = one_line_usage_error(*run_cli(capsys, "compare", SP, option, str(tmp_path)))
        assert "is a folder" in err
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    assert "at most 1 MiB" in one_line_usage_error(*run_cli(capsys, "compare", SP,
                                                            "--workload", str(big)))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not a text file" in one_line_usage_error(*run_cli(capsys, "compare", SP,
                                                              "--workload", str(binary)))


def test_a_trace_over_the_size_cap(monkeypatch, tmp_path):
    path = tmp_path / "t.trace"
    path.write_text("mmplug-trace 2\nzone pages=512\n" + "lru 1\nfree 1\n" * 100 + "end 200\n")
    monkeypatch.setattr(trace_mod, "MAX_TRACE_BYTES", 1024)
    with pytest.raises(UsageError, match="a trace file may be at most"):
        load_trace(path)


@pytest.mark.parametrize("argv, says", [
    (["--zone-size", "1024GiB"], "this machine has"),
    (["--zone-size", "4611686018427387904"], "--zone-size: 4611686018427387904 is"),
    (["--zone-size", "-5MiB"], "is not a size"),
    (["--zone-size", ""], "is not a size"),
    (["--repeat", "100000000"], "--repeat 100000000: expected a count from 1 to 1000"),
    (["--repeat", "0"], "--repeat 0"),
    (["--jobs", "0"], "--jobs 0"),
    (["--jobs", "1000000"], "--jobs 1000000"),
    (["--format", ""], "--format ''"),
    (["--preset", ""], "unknown preset ''"),
    (["--timeout", "-1"], "--timeout -1.0"),
    (["--timeout", "inf"], "--timeout inf"),
    (["--memory-limit", "1"], "at least 64MiB"),
    (["--plot", "/etc/hostname"], "--plot '/etc/hostname' is a file; give a folder"),
    (["--plot", "/proc/version/pics"], "'/proc/version' is a file, not a folder"),
    (["--plot", "/proc/mmplug-pics"], "cannot write in '/proc'"),   # read-only, even for root
    (["--save-trace", "/"], "--save-trace '/' is a folder; give a file name"),
    (["--save-trace", "/no/such/folder/h.trace"], "'/no/such/folder' does not exist"),
])
def test_compare_options_are_checked_before_the_run(capsys, argv, says):
    err = one_line_usage_error(*run_cli(capsys, "compare", SP, *argv))
    assert says in err


def test_a_zone_that_does_not_fit_says_how_large_one_fits(capsys):
    err = one_line_usage_error(*run_cli(capsys, "compare", SP, "--zone-size", "2TiB"))
    assert "a zone of 2 TiB needs about" in err and "available" in err
    assert "--zone-size " in err.split("available", 1)[1]


@pytest.mark.parametrize("drivers, says", [
    ([""], "driver '': give an entry-point name"),
    (["/"], "no driver file"),
    ([SP, SP], "driver simplepool is named twice"),
])
def test_compare_bad_driver_lists(capsys, drivers, says):
    err = one_line_usage_error(*run_cli(capsys, "compare", *drivers))
    assert says in err


# --- traces: whole, and meaning one history -------------------------------------------------

HEAD = ["mmplug-trace 2", "zone pages=512 page_size=4096"]


@pytest.mark.parametrize("lines, says", [
    (HEAD + ["store 1 100", "free 1", "free 1", "end 3"],
     "t.trace:5: 'free 1': expected a live id: id 1 was freed at line 4 (a double free)"),
    (HEAD + ["store 1 100", "store 1 100", "end 2"],
     "t.trace:4: 'store 1 100': expected a new id: id 1 is still live (store at line 3"),
    (HEAD + ["free 7", "end 1"], "t.trace:3: 'free 7': expected a live id: id 7 was never stored"),
    (HEAD + ["lru 2", "pin 2", "end 2"],
     "t.trace:4: 'pin 2': expected a driver object: id 2 is lru"),
    (HEAD + ["unmap 3", "end 1"], "id 3 was never stored"),
    (HEAD + ["store 1 100"], "t.trace:3: no 'end 1' line: the trace was cut off"),
    (HEAD + ["store 1 100", "end 5"], "t.trace:4: 'end 5': expected 'end 1'"),
    (HEAD + ["end 0", "lru 1"], "t.trace:4: 'lru 1': expected nothing after the 'end' line"),
    (HEAD + ["x" * 5000], "t.trace:3: 'xxxx"),
])
def test_trace_errors_name_the_line(lines, says):
    with pytest.raises(UsageError) as err:
        parse_trace(lines, "t.trace")
    assert says in str(err.value)
    assert len(str(err.value)) < 300      # at most ~100 characters of the line


def test_a_trace_cut_off_mid_line_is_an_error(tmp_path):
    path = tmp_path / "cut.trace"
    path.write_text("\n".join(HEAD) + "\nstore 1 100\nsto")
    with pytest.raises(UsageError, match=r"cut.trace:4: the file ends in the middle of a line"):
        load_trace(path)


def test_version_1_traces_without_end_line_are_still_read():
    t = parse_trace(["mmplug-trace 1", "zone pages=512", "lru 1", "free 1"], "old.trace")
    assert t.events == (("lru", 1), ("free", 1))


def test_a_saved_history_is_a_valid_trace(capsys, tmp_path):
    """The recorder never writes what the reader refuses (a rejected size is not kept)."""
    path = tmp_path / "h.trace"
    code, _, err = run_cli(capsys, "compare", SP, "--workload", tiny_workload(tmp_path),
                           "--save-trace", str(path))
    assert code == 0, err
    assert load_trace(path).events


def test_workload_size_cap_and_unknown_files(tmp_path):
    with pytest.raises(UsageError, match="no such workload file"):
        load_workload(tmp_path / "none.toml")


LONG = "d" * 5000   # longer than any file name the system takes


@pytest.mark.parametrize("argv", [
    ["compare", SP, "--plot", LONG],
    ["compare", SP, "--save-trace", LONG],
    ["compare", SP, "--workload", LONG],
    ["compare", SP, "--trace", LONG],
    ["compare", LONG],
    ["check-driver", SP, "-o", LONG],
    ["check-driver", LONG],
    ["check-driver", SP, "--replay", "0x99999999999999999999"],
    ["plugins", "--load", "a." * 300],
    ["new-driver", "ok", "--dir", LONG + "/x"],
])
def test_paths_and_schedules_the_system_cannot_take(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and err.startswith("mmplug: error: ") and err.count("\n") == 1
    assert len(err) < 600
