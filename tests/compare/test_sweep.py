"""Sweeps (--seeds A..B, several workloads), the executors that run them, and progress."""

from __future__ import annotations

import io
import json
import sys

import pytest
from comparehelp import KNOBPOOL, SIMPLEPOOL, host, run, tiny, without_wall

from mmplug.compare.progress import Progress
from mmplug.compare.runner import run_one, run_sweep
from reliability.relhelp import TINY_TOML


def workload(tmp_path, name: str, pin: float = 0.0) -> str:
    """The reliability tests' tiny workload file, under another name and pinning `pin`."""
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY_TOML.replace('name = "tiny"', f'name = "{name}"')
                    .replace("pin = 0.0", f"pin = {pin}"))
    return str(path)


def killed_variant(tmp_path) -> str:
    """knobpool, renamed, whose migratepage kills its own process."""
    src = open(KNOBPOOL).read()
    old = "def migratepage(mapping, newpage, page, mode):\n"
    assert old in src
    src = src.replace(old, old + "    import os, signal\n"
                                 "    os.kill(os.getpid(), signal.SIGKILL)\n")
    src = src.replace('name="knobpool"', 'name="killed"')
    path = tmp_path / "killed.py"
    path.write_text(src)
    return str(path)


# --- the command line ----------------------------------------------------------------------

@pytest.mark.parametrize("seeds, says", [
    ("3..1", "--seeds '3..1': the range runs backwards; expected A <= B, e.g. 1..3"),
    ("x", "--seeds 'x': expected A..B, two integers (or one seed)"),
    ("1..", "--seeds '1..': expected A..B"),
    ("1..5000", "--seeds '1..5000': at most 1000 seeds"),
])
def test_bad_seed_ranges_are_one_line_usage_errors(capsys, seeds, says):
    code, out, err = run(capsys, "compare", KNOBPOOL, "--seeds", seeds)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], err


@pytest.mark.parametrize("argv, says", [
    (["--seeds", "1..2", "--seed", "3"], "give either --seeds A..B or --seed/--repeat"),
    (["--seeds", "1..2", "--repeat", "2"], "give either --seeds A..B or --seed/--repeat"),
    (["--executor", "spark"], "--executor 'spark': expected local, dask or tcp://HOST:PORT"),
    (["--executor", "tcp://host"], "expected local, dask or tcp://HOST:PORT"),
    (["--preset", "small", "--preset", "small"], "workload 'small' is given twice"),
    (["--preset", "small", "--preset", "storm", "--html", "r.html"],
     "--html shows one workload; this sweep has 2"),
])
def test_sweep_options_that_do_not_fit_are_usage_errors(capsys, argv, says):
    code, out, err = run(capsys, "compare", KNOBPOOL, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and says in err, err


def test_executor_dask_without_distributed_names_the_package(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)   # import distributed fails
    code, out, err = run(capsys, "compare", KNOBPOOL, "--zone-size", "4MiB", "--executor", "dask")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "mmplug: error: --executor dask needs the Python package 'distributed' "
        "(pip install 'mmplug[dask]')"]


@pytest.mark.slow
def test_a_sweep_runs_the_cross_product_and_keeps_every_run(capsys, tmp_path):
    a, b = workload(tmp_path, "calm"), workload(tmp_path, "pinned", pin=0.2)
    code, out, err = run(capsys, "compare", KNOBPOOL, SIMPLEPOOL, "--workload", a,
                         "--workload", b, "--seeds", "4..6", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["seeds"] == [4, 5, 6]
    assert [w["workload"]["name"] for w in doc["workloads"]] == ["calm", "pinned"]
    for w in doc["workloads"]:
        assert set(w["drivers"]) == {"knobpool", "simplepool"}
        for entry in w["drivers"].values():
            assert [r["seed"] for r in entry["runs"]] == [4, 5, 6]
            spread = entry["summary"]["counters.pgmigrate_success"]
            assert spread["n"] == 3 and spread["min"] <= spread["mean"] <= spread["max"]
    # the pinned workload pins knobpool's objects; simplepool has no such knob
    pins = [w["drivers"]["knobpool"]["summary"]["workload_stats.pins"]["mean"]
            for w in doc["workloads"]]
    assert pins[0] == 0 and pins[1] > 0


@pytest.mark.slow
def test_a_sweeps_table_has_one_table_per_workload(capsys, tmp_path):
    code, out, _ = run(capsys, "compare", KNOBPOOL, "--workload", workload(tmp_path, "one"),
                       "--workload", workload(tmp_path, "two"), "--seeds", "1..2")
    assert code == 0
    assert "workload one: 2,048 pages" in out and "workload two: 2,048 pages" in out
    assert out.count("seeds 1..2 (2 runs, mean±stdev)") == 2


@pytest.mark.slow
def test_the_same_seeds_give_the_same_runs_in_a_sweep_and_alone(tmp_path):
    w = tiny()
    alone = [run_one(host(), KNOBPOOL, w.with_overrides(seed=s)) for s in (2, 3)]
    swept = run_sweep(host(), [KNOBPOOL], [w, tiny(name="other", fill=0.6)], [2, 3])
    assert [without_wall(r) for r in swept[0][0]] == [without_wall(r) for r in alone]
    assert swept[1][0][0]["outcome"] != swept[0][0][0]["outcome"]


# --- progress --------------------------------------------------------------------------------

def test_progress_is_one_line_per_phase_when_stderr_is_not_a_terminal(capsys, tmp_path):
    code, out, err = run(capsys, "compare", KNOBPOOL, "--workload", workload(tmp_path, "tiny"),
                         "--seeds", "1..2", "--json")
    assert code == 0
    json.loads(out)                          # stdout holds the JSON and nothing else
    lines = [ln for ln in err.splitlines() if ln.startswith("mmplug compare: [")]
    first = [ln.split(": ", 2)[2] for ln in lines if "[1/2] knobpool on tiny, seed 1" in ln]
    phases = [p.split(";")[0].split(" in ")[0] for p in first]
    assert phases == ["populate", "fill", "free", "compaction", "verify", "destroy",
                      "done (ok)"]
    assert any("about" in ln and "left" in ln for ln in lines[1:])
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("mmplug compare: 2 of 2 runs done in ")


def test_progress_on_a_terminal_redraws_one_line_with_an_estimate():
    now = [0.0]
    out = io.StringIO()
    p = Progress(["zsmalloc on 1g, seed 1", "z3fold on 1g, seed 1"], stream=out, tty=True,
                 clock=lambda: now[0])
    hook = p.run_started(0)
    hook("populate", None)
    now[0] = 10.0
    hook("fill", 0.0)
    now[0] = 40.0
    hook("fill", 0.5)                        # 4 % + 27.5 % of the first of two runs in 40 s
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 3 and "\n" not in text
    assert text.endswith("[1/2] zsmalloc on 1g, seed 1: fill 50%; 0:40 so far, about 3:34 left")
    p.run_done(0, {"status": "ok"})
    p.close()
    assert out.getvalue().endswith("\n") and "1 of 2 runs done" in out.getvalue()


# --- executors ----------------------------------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.slow
def test_a_sweep_on_a_dask_local_cluster_equals_the_local_run(tmp_path):
    pytest.importorskip("distributed")
    specs = [KNOBPOOL, SIMPLEPOOL]
    scenarios = [tiny(), tiny(name="tiny-pinned", pin=0.3, fill=0.7)]
    seeds = [1, 2]
    here = run_sweep(host(), specs, scenarios, seeds)
    dask = run_sweep(host(), specs, scenarios, seeds, executor="dask", jobs=2)
    assert without_wall(dask) == without_wall(here)
    assert [[r["seed"] for r in runs] for runs in dask[1]] == [seeds, seeds]


@pytest.mark.timeout(180)
@pytest.mark.slow
def test_a_run_that_kills_its_process_on_a_dask_scheduler_fails_only_itself(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster:
        got = run_sweep(host(), [killed_variant(tmp_path), KNOBPOOL], [tiny()], [1],
                        executor=cluster.scheduler_address)
        alive = len(cluster.scheduler.workers)
    killed, fine = got[0][0][0], got[0][1][0]
    assert killed["status"] == "failed"
    assert "its worker process was killed by SIGKILL before giving a result" in killed["error"]
    assert fine["status"] == "ok"
    assert alive == 1                        # the Dask worker itself lives on
