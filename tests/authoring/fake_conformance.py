"""A stand-in for mmplug.conformance with its public API (list_checks, run_suite).

Tests of mmplug.testing and `mmplug explain` install it as sys.modules
["mmplug.conformance"], so that they pin down how verdicts become pytest
outcomes independently of the real checks.  Every run_suite call is logged
to the file named by $MMPLUG_FAKE_LOG, when set.
"""

from __future__ import annotations

import json
import os

from attrs import frozen

from mmplug.errors import PluginError


@frozen(slots=True)
class CheckSpec:
    id: str
    rules: tuple[str, ...]
    title: str
    kind: str = "directed"


@frozen(slots=True)
class CheckResult:
    check: str
    rule: str
    title: str
    verdict: str
    message: str = ""
    page: str | None = None
    repro: str | None = None


@frozen(slots=True)
class Report:
    driver: str
    seed: int
    results: list


CHECKS = [
    CheckSpec("ISO-4/lru-untouched", ("ISO-4",), "driver leaves lru of an isolated page alone"),
    CheckSpec("ISO-6/refusal", ("ISO-6",), "a refused isolation changes nothing"),
    CheckSpec("MIG-7/old-page-released", ("MIG-7", "FLG-5"), "old page released on success"),
    CheckSpec("REL-2/free-isolated", ("REL-2", "REL-1"), "free while isolated"),
    CheckSpec("RACE/explore", ("ISO-5",), "races explored", kind="races"),
]

#: the verdict each check gets, per driver name given to run_suite
VERDICTS = {
    "ISO-4/lru-untouched": ("OK", ""),
    "ISO-6/refusal": ("OK (not supported)", "the driver never refuses isolation"),
    "MIG-7/old-page-released": ("FAIL", "expected the old page not PageMovable; it still is"),
    "REL-2/free-isolated": ("warn", "WARN_ON_ONCE fired once"),
    "RACE/explore": ("OK", ""),
}


def list_checks(driver=None):
    return list(CHECKS)


def run_suite(driver, *, seed=0, select=(), quick=False, races=True, max_examples=None,
              replay=None, exit_first=False, host=None, on_result=None):
    log = os.environ.get("MMPLUG_FAKE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps({"driver": driver, "seed": seed, "select": list(select),
                                  "quick": quick, "races": races}) + "\n")
    if driver == "unloadable":
        raise PluginError("driver 'unloadable' failed to load: missing callback putback_page(page)")
    results = []
    for spec in CHECKS:
        if not races and spec.kind == "races":
            continue
        if select and not any(spec.id.startswith(s) or any(r.startswith(s) for r in spec.rules)
                              for s in select):
            continue
        verdict, message = VERDICTS[spec.id]
        failed = verdict == "FAIL"
        results.append(CheckResult(
            spec.id, spec.rules[0], spec.title, verdict, message,
            page="pfn 0x10 flags 0x20001(locked|reclaim/isolated)" if failed else None,
            repro=f"mmplug check-driver {driver} --seed {seed} --select {spec.id}"
            if failed else None))
    return Report(driver, seed, results)
