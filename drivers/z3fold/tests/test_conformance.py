"""The project's conformance suite (mmplug check-driver) against z3fold, one test per check."""

import pytest

pytest.importorskip("mmplug.conformance")

from mmplug.testing import conformance_tests

#: the whole suite runs, in seconds
test_conformance = pytest.mark.slow(conformance_tests("z3fold"))
