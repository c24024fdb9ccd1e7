"""`mmplug kernel ...`, `mmplug snapshot` and `mmplug compare --snapshot` from the command line."""

import json
import os
import subprocess
import sys

import pytest
from kernelhelp import ZRAM_RUN


def mmplug(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mmplug", *args], capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.mark.slow
def test_kernel_run_from_a_kept_run_prints_the_table():
    out = mmplug("kernel", "run", "zram", "--from-run", str(ZRAM_RUN))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mmplug kernel run zram: seed 1")
    assert "pages freed by zram's compact (pages_compacted)" in out.stdout


@pytest.mark.slow
def test_kernel_run_json(tmp_path):
    out = mmplug("kernel", "run", "zram", "--from-run", str(ZRAM_RUN), "--json",
                 "--plot", str(tmp_path))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["seed"] == 1 and data["driver"] == "zsmalloc"
    assert {"section", "label", "kernel", "model", "tolerance", "verdict"} <= set(data["rows"][0])
    assert (tmp_path / "zonemap-zram.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["kernel", "run", "nosuch"], "unknown scenario 'nosuch'"),
    (["kernel", "run", "zram", "--accel", "warp"], "--accel 'warp'"),
    (["kernel", "run", "zram", "--from-run", "/nonexistent"], "/nonexistent"),
])
def test_bad_input_is_one_line(args, message):
    out = mmplug(*args)
    assert out.returncode in (1, 2)
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_missing_parts_name_the_package(tmp_path):
    env = dict(os.environ, MMPLUG_KERNEL_CACHE=str(tmp_path / "empty"), PATH=str(tmp_path))
    out = mmplug("kernel", "run", "zram", env=env)
    assert out.returncode == 2
    assert "qemu-system-x86" in out.stderr or "mmplug kernel setup" in out.stderr
    assert "Traceback" not in out.stderr


def test_kernel_scenarios_lists_the_builtins():
    out = mmplug("kernel", "scenarios")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()[:3]] == [
        "balloon", "zram", "zswap-z3fold"]


def test_snapshot_without_root_is_a_one_line_error():
    import mmplug.realkernel.command as command
    from mmplug.cli import main
    real = os.geteuid
    os.geteuid = lambda: 1000
    try:
        with pytest.raises(SystemExit) as exc:
            main(["snapshot", "-o", "/tmp/never"])
    finally:
        os.geteuid = real
    assert exc.value.code == 2
    assert command is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for /proc/kpageflags")
@pytest.mark.slow
def test_snapshot_of_this_machine_loads_into_compare(tmp_path):
    path = tmp_path / "host.json.gz"
    out = mmplug("snapshot", "-o", str(path))
    assert out.returncode == 0, out.stderr
    assert path.exists()
    from mmplug.compare.snapshot import PageFrames
    frames = PageFrames.read(path)
    assert frames.zones and len(frames.kinds) > 0


@pytest.mark.slow
def test_compare_snapshot_from_a_kept_run(tmp_path):
    from mmplug.realkernel.kernelside import read_run
    snap = tmp_path / "before.json.gz"
    read_run(ZRAM_RUN).before.frames.write(snap)
    out = mmplug("compare", "zsmalloc", "--snapshot", str(snap), "--seed", "2")
    assert out.returncode == 0, out.stderr
    assert "zone DMA32, seed 2" in out.stdout and "zsmalloc" in out.stdout
    bad = mmplug("compare", "--snapshot", str(tmp_path / "missing"))
    assert bad.returncode == 2 and "cannot read snapshot" in bad.stderr
