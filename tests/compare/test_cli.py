"""`mmplug compare` from the command line."""

from __future__ import annotations

import json

import pytest

from comparehelp import KNOBPOOL, SIMPLEPOOL, run


def test_table_for_a_py_driver_and_a_driver_option(capsys, tmp_path):
    code, out, err = run(capsys, "compare", KNOBPOOL, "--driver", SIMPLEPOOL, "--zone-size", "8MiB")
    assert code == 0
    assert "seed 1" in out and "knobpool" in out and "simplepool" in out
    assert "seed 1" in err            # printed when the run starts, too


def test_json_and_seed(capsys):
    code, out, _ = run(capsys, "compare", KNOBPOOL, "--json", "--seed", "11", "--zone-size", "8MiB")
    doc = json.loads(out)
    assert code == 0 and doc["seeds"] == [11]
    assert doc["drivers"]["knobpool"]["runs"][0]["seed"] == 11


def test_plot_and_kernel_format(capsys, tmp_path):
    code, out, err = run(capsys, "compare", KNOBPOOL, "--format", "kernel", "--plot",
                         str(tmp_path / "pics"), "--zone-size", "8MiB")
    assert code == 0 and "==> knobpool: /proc/buddyinfo <==" in out
    assert (tmp_path / "pics" / "zonemap-knobpool.png").stat().st_size > 0


def test_trace_save_and_replay(capsys, tmp_path):
    path = tmp_path / "h.trace"
    code, _, _ = run(capsys, "compare", KNOBPOOL, "--zone-size", "4MiB", "--save-trace", str(path))
    assert code == 0 and path.read_text().startswith("mmplug-trace 2\nzone pages=1024")
    code, out, _ = run(capsys, "compare", KNOBPOOL, "--trace", str(path))
    assert code == 0 and "replayed exactly" in out


@pytest.mark.parametrize("argv, expected", [
    (["compare", "no_such_driver_xyz"], "unknown driver 'no_such_driver_xyz'"),
    (["compare", KNOBPOOL, "--repeat", "0"], "--repeat 0"),
    (["compare", KNOBPOOL, "--format", "yaml"], "--format 'yaml'"),
    (["compare", KNOBPOOL, "--preset", "huge"], "unknown preset 'huge'"),
    (["compare", KNOBPOOL, "--preset", "small", "--trace", "x"], "one of --preset"),
    (["compare", KNOBPOOL, "--zone-size", "1000"], "--zone-size"),
])
def test_bad_input_is_one_line_and_nonzero(capsys, argv, expected):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert expected in err and err.count("\n") == 1 and err.startswith("mmplug: error:")


def test_bad_workload_file_names_file_and_key(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[knobs]\npin = -1\n")
    code, _, err = run(capsys, "compare", KNOBPOOL, "--workload", str(bad))
    assert code == 2 and "bad.toml" in err and "'knobs.pin'" in err and "from 0 to 1" in err


def test_list_presets(capsys):
    code, out, _ = run(capsys, "compare", "--list-presets")
    assert code == 0 and out.startswith("small")
