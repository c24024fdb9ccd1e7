"""`mmplug compare`: drivers' migration behaviour side by side, in numbers and pictures.

workload.py (presets, TOML files), trace.py (histories replayed exactly),
machine.py (one VM and one driver executing events), runner.py (workloads as
events, the drivers x seeds grid, processes), probe.py (what the driver's
callbacks answered), metrics.py (snapshots, blocking pageblocks, ceiling,
cost), rows.py (every row of the table and its definition), render.py (table,
kernel formats, JSON), plot.py (PNG pictures), html.py (the HTML report),
cli.py (the command).
"""

from .runner import run_all, run_one
from .trace import Trace, load_trace, parse_trace
from .workload import PRESETS, Trigger, Workload, load_workload, preset

__all__ = ["PRESETS", "Trace", "Trigger", "Workload", "load_trace", "load_workload",
           "parse_trace", "preset", "run_all", "run_one"]
