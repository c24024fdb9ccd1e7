"""racypool with its "order" bug built in, loadable by path as its own driver (racy_order)."""

import importlib.util
import sys
from functools import partial
from pathlib import Path

from mmplug import DriverInfo, hookimpl


def _racypool():
    name = "mmplug_tests_racypool"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("racypool.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_base = _racypool()
isolate_page = _base.isolate_page
migratepage = _base.migratepage
putback_page = _base.putback_page


@hookimpl
def mmplug_driver():
    info = _base.mmplug_driver()
    return DriverInfo(name="racy_order", version=info.version,
                      factory=partial(_base.RacyPool, bug="order"), summary=info.summary,
                      capabilities=info.capabilities)
