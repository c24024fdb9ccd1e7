"""The project's conformance suite (mmplug check-driver) against z3fold, one test per check."""

import pytest

pytest.importorskip("mmplug.conformance")

from mmplug.testing import conformance_tests

test_conformance = conformance_tests("z3fold")
