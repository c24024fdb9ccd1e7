"""Fixtures: a VM with only this package's driver registered, and page-level helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import mmplug
import mmplug_balloon
from mmplug.migrate import PageList
from mmplug_balloon.scenarios import isolate


@pytest.fixture
def make_balloon() -> Callable[..., tuple[mmplug.VM, Any]]:
    """make_balloon(nr_pages=1024, **balloon_options) -> (vm, balloon)."""

    def make(nr_pages: int = 1024, **options: Any) -> tuple[mmplug.VM, Any]:
        host = mmplug.PluginHost()
        host.register(mmplug_balloon, origin="module mmplug_balloon")
        vm = mmplug.VM(nr_pages=nr_pages, plugins=host)
        return vm, vm.create_driver("balloon", **options)

    return make


@pytest.fixture
def isolated() -> Callable[..., PageList]:
    """isolated(vm, *pages) -> a PageList holding the pages compaction isolated."""

    def isolate_all(vm: mmplug.VM, *pages: Any) -> PageList:
        pagelist = PageList()
        for page in pages:
            assert isolate(vm, page, pagelist), page
        return pagelist

    return isolate_all

