"""The project's conformance suite against the balloon, one pytest test per check."""

import pytest

from mmplug.testing import conformance_tests

#: the whole suite runs, in seconds
test_conformance = pytest.mark.slow(conformance_tests("balloon"))
