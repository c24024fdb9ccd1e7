"""pytest plugin for driver authors (registered through the pytest11 entry point).

Fixtures:
- ``mmplug_host``: a PluginHost with every installed driver loaded.
- ``mmplug_vm``: a factory ``mmplug_vm(driver=None, **config)`` giving a fresh
  VM (and, with `driver`, ``(vm, instance)``), torn down after the test.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from .plugins import PluginHost
from .vm import VM, VMConfig


@pytest.fixture
def mmplug_host() -> PluginHost:
    host = PluginHost()
    host.load_entry_points()
    return host


@pytest.fixture
def mmplug_vm(mmplug_host: PluginHost) -> Callable[..., Any]:
    def make(driver: str | None = None, /, options: dict | None = None, **config: Any) -> Any:
        vm = VM(VMConfig(**config), plugins=mmplug_host)
        if driver is None:
            return vm
        return vm, vm.create_driver(driver, **(options or {}))

    return make
