"""The pytest plugin's VMs watch the driver as the commands do."""

from __future__ import annotations

import pytest
from relhelp import BROKEN

from mmplug.errors import DriverError
from mmplug.testing import migrate_page

#: a hang these tests look for must not hang the test run instead
pytestmark = pytest.mark.timeout(120)


def test_a_hung_callback_fails_the_test_instead_of_hanging_it(mmplug_vm):
    vm, pool = mmplug_vm(str(BROKEN / "hangs.py"), callback_timeout=0.5)
    for _ in range(4):            # a full page: the broken driver waits for a free slot
        pool.store(b"x" * 64)
    (page,) = pool.pages()
    with pytest.raises(DriverError) as exc:
        migrate_page(vm, page)
    err = exc.value
    assert (err.rule, err.driver, err.hook) == ("MIG-8", "broken_hangs", "migratepage")
    assert "did not return within 0.5 s (hung)" in err.message


def test_the_fixture_vms_have_the_default_time_limit(mmplug_vm):
    assert mmplug_vm().config.callback_timeout == 10.0
