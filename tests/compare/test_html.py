"""The HTML report: self-contained, and rendered by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from comparehelp import KNOBPOOL, SIMPLEPOOL, host, tiny
from PIL import Image

from mmplug.compare.html import report, write_report
from mmplug.compare.rows import ROWS
from mmplug.compare.runner import run_all, scenario_dict

CHROMIUM = shutil.which("chromium")
#: a headless browser that reaches no network and keeps no state between runs
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a browser: apt-get install -y chromium (Debian package "
                             "chromium)")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(path of a report of two drivers, its text)."""
    w = tiny()
    results = run_all(host(), [KNOBPOOL, SIMPLEPOOL], w, [1], keep_maps=True)
    path = tmp_path_factory.mktemp("html") / "report.html"
    write_report(results, scenario_dict(w), [1], path)
    return path, path.read_text()


class _References(HTMLParser):
    """Every URL the page would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster") and value is not None:
                self.urls.append(value)
            if name == "id":
                self.ids.add(value)


def test_the_report_needs_no_other_file_and_no_network(written):
    _, text = written
    refs = _References()
    refs.feed(text)
    loaded = [u for u in refs.urls if not u.startswith(("data:", "#"))]
    assert loaded == []
    assert "url(" not in text and "@import" not in text and "<script" not in text
    images = [u for u in refs.urls if u.startswith("data:image/png;base64,")]
    assert len(images) == 3          # two zone maps, one buddyinfo figure
    # every link inside the page leads somewhere
    assert {u[1:] for u in refs.urls if u.startswith("#")} <= refs.ids


def test_the_report_has_the_table_maps_buddyinfo_details_and_every_definition(written):
    _, text = written
    for anchor in ("table", "zonemaps", "buddyinfo", "drivers", "definitions"):
        assert f'id="{anchor}"' in text
    for row in ROWS:
        assert f'id="row-{row.slug}"' in text, row.label
    assert "/proc/pagetypeinfo" in text and "extfrag_index" in text
    assert re.search(r"knobpool 0\.1: file .*knobpool\.py", text)


def test_text_from_drivers_is_escaped():
    w = tiny()
    results = run_all(host(), [KNOBPOOL], w, [1], keep_maps=True)
    results[0][0]["error"] = "<b>not markup</b>"
    results[0][0]["status"] = "error"
    text = report(results, scenario_dict(w), [1])
    assert "&lt;b&gt;not markup&lt;/b&gt;" in text and "<b>not markup</b>" not in text


def _chromium(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home))
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={home / 'profile'}",
                           *args], capture_output=True, text=True, timeout=120, env=env)


@needs_chromium
@pytest.mark.slow
def test_chromium_renders_the_report(written, tmp_path):
    path, _ = written
    shot = tmp_path / "shot.png"
    out = _chromium([f"--screenshot={shot}", "--window-size=1200,1600", path.as_uri()],
                    tmp_path / "shot")
    assert shot.is_file(), out.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    colours = img.getcolors(1 << 20)
    assert colours is not None and len(colours) > 20          # text, table shading, swatches
    most = max(count for count, _ in colours)
    assert most < 0.95 * img.width * img.height               # not a blank page

    dom = _chromium(["--dump-dom", path.as_uri()], tmp_path / "dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for key in ("mmplug compare: tiny", "knobpool", "simplepool", "order-9 ceiling",
                "efficiency", "Zone maps before and after compaction", "What the rows mean"):
        assert key in dom.stdout, key


def test_compare_html_writes_the_report(capsys, tmp_path):
    from mmplug.cli import main
    target = tmp_path / "r.html"
    with pytest.raises(SystemExit) as exc:
        main(["compare", KNOBPOOL, "--zone-size", "8MiB", "--html", str(target)])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    assert (exc.value.code or 0) == 0 and f"wrote {target}" in err
    assert "order-9 ceiling" in out                       # the table still goes to stdout
    text = target.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("data:image/png;base64,") == 2
