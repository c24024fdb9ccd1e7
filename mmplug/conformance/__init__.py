"""`mmplug check-driver`: the conformance suite that tells a driver author, rule by rule,
whether a driver keeps the VM <-> driver contract (mmplug/contract.md).

Public API (the pytest plugin and `mmplug explain` build on it):

- ``list_checks(driver=None) -> list[CheckSpec]``: every check (id such as
  "ISO-4/lru-untouched", the rule ids it enforces, title, needs, kind), and with a
  driver the checks it brings (DRV-*, its mmplug_conformance_checks hook).
- ``run_suite(driver, *, seed=0, select=(), quick=False, races=True,
  max_examples=None, replay=None, exit_first=False, host=None, on_result=None)
  -> Report``.
- ``Report`` (driver, driver_version, mmplug_version, seed, results, totals,
  ``to_json()``) and ``CheckResult`` (check, rule, title, verdict, message,
  page, repro, violation, same_as), with verdicts "OK", "FAIL", "same" (the
  violation an earlier check reported), "OK (not supported)", "warn".
"""

from __future__ import annotations

from .model import FAIL, NOT_SUPPORTED, OK, SAME, WARN, CheckResult, CheckSpec, Report
from .runner import InternalError, list_checks, run_suite

__all__ = ["FAIL", "NOT_SUPPORTED", "OK", "SAME", "WARN", "CheckResult", "CheckSpec",
           "InternalError", "Report", "list_checks", "run_suite"]
