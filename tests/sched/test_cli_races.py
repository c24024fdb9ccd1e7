"""`mmplug check-driver --races` catches the racy drivers and its printed command replays them."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def check_driver(*args):
    return subprocess.run(["mmplug", "check-driver", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.parametrize("driver,rule", [("racy_release.py", "MIG-6"), ("racy_order.py", "LCK-3")])
def test_check_driver_races_catches_and_replays(driver, rule):
    path = str(HERE / driver)
    first = check_driver(path, "-k", "RACE")
    assert first.returncode == 1, first.stdout + first.stderr
    assert f"{rule}: race " in first.stdout
    repro = re.search(r"reproduce: mmplug check-driver (.*)", first.stdout).group(1)
    assert "--replay " in repro and "--scenario " in repro
    again = check_driver(*shlex.split(repro))
    assert again.returncode == 1
    failure = re.search(rf"{rule}: race .*", first.stdout).group(0)
    replayed = re.search(rf"{rule}: race .*", again.stdout).group(0)
    # the same failure, only the "how" (strategy/seed vs replayed) differs
    assert failure.split("): ", 1)[1] == replayed.split("): ", 1)[1]
