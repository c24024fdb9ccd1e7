"""mmplug: the Linux kernel's non-LRU movable page migration, as a Python plugin framework.

What a driver may use is here and in `mmplug.kernel`, nowhere else: the hook
markers, DriverInfo and Capabilities, the errors, and for the race scenarios
and checks a driver brings, Scenario, RaceEnv, conformance_check,
CheckFailed and NotSupported.  The VM's own entry points (VM, PluginHost, isolate_movable_page,
migrate_pages, putback_movable_pages) are here for tests and embedding.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version
from typing import TYPE_CHECKING, Any

try:
    __version__ = _version("mmplug")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"

from .errors import (
    ContractViolation,
    Deadlock,
    DriverError,
    MmplugError,
    NoMemory,
    PluginError,
    UsageError,
)
from .hookspecs import hookimpl, hookspec
from .mapping import AddressSpace, MovableOps
from .migrate import (
    PageList,
    isolate_movable_page,
    migrate_pages,
    putback_movable_pages,
)
from .page import Page
from .plugins import Capabilities, DriverInfo, PluginHost
from .vm import VM, VMConfig

if TYPE_CHECKING:
    from .conformance.outcomes import CheckFailed, NotSupported
    from .conformance.registry import check as conformance_check
    from .races import RaceEnv, Scenario

#: what a driver's scenarios and checks use, imported when first asked for: a command
#: that runs no race and no check does not pay for the scheduler and the suite
_LAZY = {"RaceEnv": ("mmplug.races", "RaceEnv"), "Scenario": ("mmplug.races", "Scenario"),
         "CheckFailed": ("mmplug.conformance.outcomes", "CheckFailed"),
         "NotSupported": ("mmplug.conformance.outcomes", "NotSupported"),
         "conformance_check": ("mmplug.conformance.registry", "check")}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mmplug' has no attribute {name!r}") from None
    return getattr(import_module(module), attr)


__all__ = [
    "AddressSpace", "Capabilities", "CheckFailed", "ContractViolation", "Deadlock",
    "DriverError", "DriverInfo", "MmplugError", "MovableOps", "NoMemory", "NotSupported", "Page",
    "PageList",
    "PluginError", "PluginHost", "RaceEnv", "Scenario", "UsageError", "VM", "VMConfig",
    "conformance_check", "hookimpl", "hookspec", "isolate_movable_page", "migrate_pages",
    "putback_movable_pages", "__version__",
]
