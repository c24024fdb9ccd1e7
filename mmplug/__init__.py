"""mmplug: the Linux kernel's non-LRU movable page migration, as a Python plugin framework."""

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import (
    ContractViolation, Deadlock, DriverError, MmplugError, NoMemory, PluginError, UsageError,
)
from .hookspecs import hookimpl, hookspec
from .mapping import AddressSpace, MovableOps
from .page import Page
from .plugins import Capabilities, DriverInfo, PluginHost
from .vm import VM, VMConfig

try:
    __version__ = _version("mmplug")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"

__all__ = [
    "AddressSpace", "Capabilities", "ContractViolation", "Deadlock", "DriverError", "DriverInfo",
    "MmplugError", "MovableOps", "NoMemory", "Page", "PluginError", "PluginHost", "UsageError",
    "VM", "VMConfig", "hookimpl", "hookspec", "__version__",
]
