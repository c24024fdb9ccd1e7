"""The project's conformance suite against the balloon, one pytest test per check."""

from mmplug.testing import conformance_tests

test_conformance = conformance_tests("balloon")
