"""`fedbroker simulate`: replay real GPU-cluster traces through the real placement core.

One module per job: ``trace`` reads the trace CSV; ``mapping`` reads the file that maps
its clusters to tenants and sizes the sites; ``workload`` turns trace jobs into the core's
requests (seeded); ``policies`` holds fedbroker and the baselines as small strategies;
``replay`` is the event loop around ``PlacementCore``; ``metrics`` sums a run into a row;
``report`` prints rows; ``plot`` draws them (matplotlib, optional); ``scenario`` ties a
config, a trace, a mapping and a seed together.
"""

from __future__ import annotations

from . import report
from .mapping import Mapping, default_mapping, load_mapping, parse_mapping
from .metrics import percentile, summarise
from .plot import INSTALL_HINT, PlotUnavailable, require_matplotlib, write_plot
from .policies import POLICIES, Policy, make_policy
from .replay import Run, replay
from .scenario import Scenario, build_scenario, run_policies
from .trace import Trace, TraceError, TraceJob, read_trace
from .workload import SimJob, UnmappedCluster, Workload, build_workload

__all__ = [
    "INSTALL_HINT",
    "POLICIES",
    "Mapping",
    "PlotUnavailable",
    "Policy",
    "Run",
    "Scenario",
    "SimJob",
    "Trace",
    "TraceError",
    "TraceJob",
    "UnmappedCluster",
    "Workload",
    "build_scenario",
    "build_workload",
    "default_mapping",
    "load_mapping",
    "make_policy",
    "parse_mapping",
    "percentile",
    "read_trace",
    "replay",
    "report",
    "require_matplotlib",
    "run_policies",
    "summarise",
    "write_plot",
]
