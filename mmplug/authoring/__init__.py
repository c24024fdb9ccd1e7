"""Writing a new driver: the project generator (`mmplug new-driver`) and `mmplug explain`.

The pytest plugin for driver authors is mmplug.testing; the author docs are
docs/driver-api.md and docs/writing-a-driver.md.
"""

from .scaffold import DriverProject, write_project

__all__ = ["DriverProject", "write_project"]
