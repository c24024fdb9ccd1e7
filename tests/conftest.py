"""Fixtures of the core's tests (helpers live in corehelp.py)."""

import pytest

from corehelp import make_vm


@pytest.fixture
def pool_vm():
    return make_vm()
