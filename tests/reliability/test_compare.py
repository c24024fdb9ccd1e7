"""compare cannot be hung, silenced or fooled by the drivers it compares."""

from __future__ import annotations

import json

import pytest
from relhelp import (
    COPY,
    SIMPLEPOOL,
    broken,
    ctrl_c_while_migrating,
    errors,
    mmplug,
    run_cli,
    slow_driver,
    tiny_workload,
    variant,
)

#: a hang these tests look for must not hang the test run instead
pytestmark = pytest.mark.timeout(120)


def run_json(capsys, *argv: str) -> tuple[int, dict, str]:
    code, out, err = run_cli(capsys, "compare", *argv, "--json")
    return code, json.loads(out), err


@pytest.mark.parametrize("driver, found", [
    ("partial_copy", "object(s) corrupted; first: object "),
    ("stale_handle", "page(s) leaked"),
    ("leaks_page", "page(s) leaked; first: leaked page pfn 0x"),
    ("sets_pg_isolated", "VM warning(s), first ISO-3"),
])
def test_lost_corrupted_or_leaked_objects_and_vm_warnings_fail_the_run(capsys, tmp_path,
                                                                       driver, found):
    code, doc, _ = run_json(capsys, broken(driver), str(SIMPLEPOOL), "--workload",
                            tiny_workload(tmp_path))
    assert code == 1
    bad = doc["drivers"][f"broken_{driver}"]["runs"][0]
    assert bad["status"] == "failed"
    assert bad["error"].startswith("integrity: ") and found in bad["error"]
    assert bad["error"].endswith(f"(driver broken_{driver})")
    assert doc["drivers"]["simplepool"]["runs"][0]["status"] == "ok"


def test_the_table_says_which_driver_failed_and_why(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "compare", broken("partial_copy"), "--workload",
                           tiny_workload(tmp_path))
    assert code == 1
    assert "ERROR (1/1)" in out
    assert "error in broken_partial_copy: integrity: " in out


def test_a_failing_verify_fails_the_run(capsys, tmp_path):
    checked = variant(tmp_path, "checked", "    def pages(self):\n",
                      "    def verify(self):\n        assert not self.handles, 'a made-up "
                      "inconsistency'\n\n    def pages(self):\n")
    code, doc, _ = run_json(capsys, checked, "--workload", tiny_workload(tmp_path))
    run = doc["drivers"]["checked"]["runs"][0]
    assert code == 1 and run["status"] == "failed"
    assert "verify() failed: a made-up inconsistency" in run["error"]


@pytest.mark.parametrize("driver, says", [
    ("free_raises", "API-1: free() raised RuntimeError: bookkeeping bug in free"),
    ("custom_base_exception", "PUT-2: putback_page raised PoolGone: pool state lost"),
    ("exits_in_callback", "MIG-8: migratepage called sys.exit(0)"),
    ("interrupts_itself", "ISO-2: isolate_page raised KeyboardInterrupt itself"),
    ("hangs", "MIG-8: migratepage did not return within 2 s (hung)"),
    ("free_hangs", "API-1: free() did not return within 2 s (hung)"),
])
@pytest.mark.slow
def test_a_driver_that_raises_exits_or_hangs_fails_its_run_in_one_line(capsys, tmp_path,
                                                                      driver, says):
    code, out, err = run_cli(capsys, "compare", broken(driver), str(SIMPLEPOOL),
                             "--workload", tiny_workload(tmp_path), "--timeout", "2")
    assert code == 1, err
    assert f"error in broken_{driver}: {says}" in out
    assert errors(err) == []          # no traceback, no internal error


@pytest.mark.slow
def test_dead_workers_fail_their_run_and_the_others_still_report(tmp_path):
    """--jobs 2: a worker killed, exited or hung in C fails its own run only."""
    killed = variant(tmp_path, "killed", COPY,
                     "        os.kill(os.getpid(), signal.SIGKILL)\n" + COPY,
                     "import os\nimport signal\n")
    quits = variant(tmp_path, "quits", COPY, "        posix._exit(0)\n" + COPY, "import posix\n")
    r = mmplug("compare", killed, quits, broken("exits_hard"), broken("sleeps"), str(SIMPLEPOOL),
               "--workload", tiny_workload(tmp_path), "--jobs", "2", "--timeout", "2", "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    status = {name: d["runs"][0]["status"] for name, d in doc["drivers"].items()}
    assert status == {"killed": "failed", "quits": "failed", "broken_exits_hard": "failed",
                      "broken_sleeps": "failed", "simplepool": "ok"}
    error = {name: d["runs"][0]["error"] for name, d in doc["drivers"].items()}
    assert "its worker process was killed by SIGKILL before giving a result" in error["killed"]
    assert "its worker process exited with code 0 before giving a result" in error["quits"]
    assert "migratepage called os._exit(0)" in error["broken_exits_hard"]
    assert "migratepage did not return within 2 s (hung)" in error["broken_sleeps"]


@pytest.mark.slow
def test_a_driver_that_eats_memory_fails_within_the_memory_limit(tmp_path):
    hog = variant(tmp_path, "hog", COPY,
                  "        junk = [bytearray(1 << 20) for _ in range(1 << 20)]\n" + COPY)
    for jobs in ("1", "2"):
        r = mmplug("compare", hog, "--workload", tiny_workload(tmp_path), "--jobs", jobs,
                   "--memory-limit", "512MiB", "--timeout", "100")   # memory first
        assert r.returncode == 1, r.stderr
        assert "error in hog: MIG-8: migratepage ran out of memory (MemoryError)" in r.stdout


def test_what_drivers_print_never_reaches_the_json_on_stdout(capsys, tmp_path):
    chatty = variant(tmp_path, "chatty", COPY, "        print('copying', page)\n" + COPY)
    loud = variant(tmp_path, "loud", "SLOTS = 4\n", "SLOTS = 4\nprint('imported!')\n")
    code, doc, err = run_json(capsys, chatty, loud, "--workload", tiny_workload(tmp_path))
    assert code == 0 and set(doc["drivers"]) == {"chatty", "loud"}
    assert "copying" in err and "imported!" in err


@pytest.mark.slow
def test_the_users_ctrl_c_stops_compare_and_its_workers(tmp_path):
    code, out, err = ctrl_c_while_migrating("compare", slow_driver(tmp_path), str(SIMPLEPOOL),
                                            "--jobs", "2", "--workload", tiny_workload(tmp_path))
    assert code == 130
    assert errors(err)[-1] == "mmplug: interrupted" and out == ""


@pytest.mark.parametrize("fmt", ["table", "kernel"])
@pytest.mark.slow
def test_a_dead_workers_run_renders_in_every_output(tmp_path, fmt):
    killed = variant(tmp_path, "killed", COPY,
                     "        os.kill(os.getpid(), signal.SIGKILL)\n" + COPY,
                     "import os\nimport signal\n")
    r = mmplug("compare", killed, str(SIMPLEPOOL), "--workload", tiny_workload(tmp_path),
               "--jobs", "2", "--format", fmt, "--plot", str(tmp_path / "pics"),
               "--save-trace", str(tmp_path / "h.trace"))
    assert r.returncode == 1, r.stderr
    assert "==> killed:" in r.stdout if fmt == "kernel" else "error in killed: " in r.stdout
    assert "no trace for killed: its run gave no history" in r.stderr
    assert (tmp_path / "pics" / "buddyinfo.png").exists()
    assert (tmp_path / "h-simplepool.trace").exists()


@pytest.mark.parametrize("tag", [0, 1, 3])
def test_a_driver_rewriting_an_isolated_pages_tag_fails_its_run_on_flg1(capsys, tmp_path, tag):
    """The VM took such a page for an LRU page and compare stopped with an internal error."""
    drv = variant(tmp_path, f"retags{tag}", "        pool.partial.pop(st, None)\n    return True\n",
                  "        pool.partial.pop(st, None)\n"
                  f"    page.mapping = page.mapping & ~3 | {tag}\n    return True\n")
    code, doc, err = run_json(capsys, drv, "--workload", tiny_workload(tmp_path))
    assert code == 1 and "internal error" not in err
    run = doc["drivers"][f"retags{tag}"]["runs"][0]
    assert run["status"] == "failed"
    assert run["error"].startswith("FLG-1: the mapping word of a page isolated as non-LRU "
                                   "movable lost PAGE_MAPPING_MOVABLE")
    assert f"driver retags{tag}" in run["error"] and "page pfn 0x" in run["error"]
