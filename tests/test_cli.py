"""The command line: --version, plugins, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from corehelp import SIMPLEPOOL


def run(*args):
    return subprocess.run([sys.executable, "-m", "mmplug.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("mmplug ")


def test_help_lists_plugins_command():
    r = run("--help")
    assert r.returncode == 0 and "plugins" in r.stdout


def test_plugins_json_includes_a_loaded_file_driver():
    r = run("plugins", "--json", "--load", str(SIMPLEPOOL))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    row = next(d for d in data["drivers"] if d["name"] == "simplepool")
    assert row["status"] == "loaded" and row["version"] == "1.0" and row["origin"].startswith("file")


def test_plugins_lists_a_failed_driver_with_its_reason(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import nonexistent_module_abc\n")
    r = run("plugins", "--load", str(bad))
    assert r.returncode == 0
    assert "failed: import failed: ModuleNotFoundError" in r.stdout


def test_unknown_driver_is_one_line_and_exit_2():
    r = run("plugins", "--load", "no_such_driver_qq")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown driver 'no_such_driver_qq'" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_option_is_one_line_and_exit_2():
    r = run("plugins", "--frobnicate")
    assert r.returncode == 2 and r.stderr.strip().startswith("mmplug: error:")
    assert "Traceback" not in r.stderr


def test_compare_kernel_version_lists_the_kernel_options_of_a_run():
    """`mmplug compare --kernel-version`: v4.19 and every newer-kernel option, off."""
    from mmplug.vm import VMConfig, kernel_options
    r = run("compare", "--kernel-version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("kernel: Linux v4.19")
    assert "slab_fix = False  (v6.2, 8b8817630ae8" in r.stdout
    r = run("compare", "--kernel-version", "--json")
    data = json.loads(r.stdout)
    assert data["baseline"] == "v4.19"
    assert data["options"] == kernel_options(VMConfig())
    assert all(opt["value"] is False for opt in data["options"])


def test_compare_json_names_the_kernel_model():
    r = run("compare", str(SIMPLEPOOL), "--zone-size", "8MiB", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["kernel"]["baseline"] == "v4.19"
    assert [o["name"] for o in data["kernel"]["options"]] == [
        "slab_fix", "free_scan_stride", "rescan_block", "scan_counts_isolated", "zone_scan_counts"]


def test_every_newer_kernel_option_names_its_kernel_and_defaults_to_v419():
    """VMConfig keeps the newer-kernel options in one place (issue 11)."""
    import attrs
    from mmplug.vm import KernelOption, VMConfig
    opts = [a for a in attrs.fields(VMConfig) if "kernel" in a.metadata]
    assert [a.name for a in opts] == ["slab_fix", "free_scan_stride", "rescan_block",
                                      "scan_counts_isolated", "zone_scan_counts"]
    for a in opts:
        opt = a.metadata["kernel"]
        assert isinstance(opt, KernelOption) and opt.version.startswith("v")
        assert len(opt.commit) >= 12 and a.default is False
