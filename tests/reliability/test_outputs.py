"""Outputs are whole: files written atomically, the table printed even if a file cannot be."""

from __future__ import annotations

import errno
import json
import os

import pytest
from relhelp import SIMPLEPOOL, run_cli, tiny_workload

from mmplug import outputs
from mmplug.compare import cli as compare_cli


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with outputs.atomic_file(target) as f:
            f.write(b"{\"half\": ")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_completed_write_replaces_the_file_with_normal_permissions(tmp_path):
    target = tmp_path / "t.trace"
    outputs.write_atomic(target, "whole\n")
    assert target.read_text() == "whole\n"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_interrupted_picture_leaves_no_png(monkeypatch, capsys, tmp_path):
    """Ctrl-C while a PNG is saved: no 33-byte picture is left behind."""
    from PIL import Image

    def save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 25)
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", save)
    pics = tmp_path / "pics"
    code, out, err = run_cli(capsys, "compare", str(SIMPLEPOOL), "--workload",
                             tiny_workload(tmp_path), "--plot", str(pics))
    assert code == 130 and "mmplug: interrupted" in err
    assert not list(pics.glob("*.png")) and not list(pics.glob(".*"))


def test_the_table_is_printed_when_a_picture_cannot_be_written(monkeypatch, capsys, tmp_path):
    def full(*args, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(compare_cli, "write_pictures", full)
    code, out, err = run_cli(capsys, "compare", str(SIMPLEPOOL), "--workload",
                             tiny_workload(tmp_path), "--plot", str(tmp_path / "pics"))
    assert code == 2
    assert "simplepool" in out and "INTEGRITY" in out          # the whole table
    assert err.splitlines()[-1] == (f"mmplug: error: --plot {str(tmp_path / 'pics')!r}: cannot "
                                    "write the pictures: No space left on device")


def test_the_json_is_printed_when_a_trace_cannot_be_written(monkeypatch, capsys, tmp_path):
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "replace", full)
    target = tmp_path / "h.trace"
    code, out, err = run_cli(capsys, "compare", str(SIMPLEPOOL), "--workload",
                             tiny_workload(tmp_path), "--json", "--save-trace", str(target))
    assert code == 2
    assert json.loads(out)["drivers"]["simplepool"]["runs"][0]["status"] == "ok"
    assert err.splitlines()[-1].startswith(f"mmplug: error: cannot write {str(target)!r}: "
                                           "No space left on device")
    assert list(tmp_path.glob("*.trace*")) == [] and not list(tmp_path.glob(".h.trace*"))


def test_check_driver_json_report_is_written_whole(capsys, tmp_path):
    target = tmp_path / "r.json"
    code, out, _ = run_cli(capsys, "check-driver", str(SIMPLEPOOL), "-k", "MIG-2",
                           "--json", str(target))
    assert code == 0 and json.loads(target.read_text())["driver"] == "simplepool"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_special_files_and_links_are_written_not_replaced(tmp_path):
    outputs.write_atomic("/dev/null", "discarded\n")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(real)
    outputs.write_atomic(link, "{}\n")
    assert link.is_symlink() and real.read_text() == "{}\n"
