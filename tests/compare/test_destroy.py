"""Every compare run ends by destroying its instance: what destroy() leaves fails it (REL-3)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from comparehelp import KNOBPOOL, host, run, tiny

from mmplug.compare.machine import Machine
from mmplug.compare.runner import run_one
from mmplug.page import page_count

GOOD_DESTROY = '''    def destroy(self):
        for h in list(self.objects):
            self.free(h)
'''

#: destroy() that takes each page off the mapping but never gives it back
LEAKS = '''    def destroy(self):
        for st in self.states.values():
            lock_page(st.page)
            clear_page_movable(st.page)
            unlock_page(st.page)
        self.states.clear()
        self.objects.clear()
'''

#: destroy() that forgets its pages: still movable, still pointing at the mapping
KEEPS = '''    def destroy(self):
        self.states.clear()
        self.objects.clear()
'''


def broken(tmp_path, name: str, destroy: str) -> str:
    text = open(KNOBPOOL).read()
    assert GOOD_DESTROY in text
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace(GOOD_DESTROY, destroy).replace('name="knobpool"',
                                                                f'name="{name}"'))
    return str(path)


@pytest.mark.parametrize(("name", "destroy", "what"), [
    ("leaks_at_destroy", LEAKS, "still in use after destroy()"),
    ("keeps_at_destroy", KEEPS, "still point at the mapping after destroy"),
])
def test_a_driver_that_leaves_pages_at_destroy_fails_its_run(capsys, tmp_path, name, destroy,
                                                             what):
    path = broken(tmp_path, name, destroy)
    code, out, err = run(capsys, "compare", path, "--json", "--zone-size", "8MiB")
    assert code == 1
    (r,) = json.loads(out)["drivers"][name]["runs"]
    assert r["status"] == "failed"
    error = r["error"]
    assert "\n" not in error
    assert error.startswith("REL-3: ") and what in error
    assert f"driver {name}" in error and "callback destroy" in error and "page pfn" in error
    # the metrics of the run are all there: only destroy() failed
    assert r["integrity"]["objects_lost"] == 0 and r["integrity"]["leaked_pages"] == 0


def test_the_table_names_the_run_that_failed_at_destroy(capsys, tmp_path):
    path = broken(tmp_path, "leaks_at_destroy", LEAKS)
    code, out, err = run(capsys, "compare", path, "--driver", KNOBPOOL, "--zone-size", "8MiB")
    assert code == 1
    line = next(ln for ln in (out + err).splitlines() if "REL-3" in ln)
    assert "leaks_at_destroy" in line and "destroy" in line and "page pfn" in line


def test_a_driver_that_releases_everything_passes_and_its_pages_are_back():
    machines, had = [], []
    destroy = Machine.destroy

    def watched(m: Machine) -> None:
        machines.append(m)
        had.extend(m.guarded.pages())
        destroy(m)

    with mock.patch.object(Machine, "destroy", watched):
        r = run_one(host(), KNOBPOOL, tiny())
    assert r["status"] == "ok", r["error"]
    (m,) = machines
    assert m.guarded.destroyed and had
    assert all(page_count(p) == 0 for p in had)      # every page back in the zone
    assert r["wall_seconds"]["destroy"] >= 0.0
