"""The PNG of a simulation: queue length and per-site utilisation over time, and the
queue-wait CDF, one line per policy.

matplotlib (and numpy under it) is an optional dependency, imported only here and only
when a plot is asked for, so the simulator and the broker run without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .policies import POLICIES
from .replay import Run, Timeline

INSTALL_HINT = "pip install 'fedbroker[simulate]'"
BINS = 300  # points per time series: enough for two months of trace, light to draw


class PlotUnavailable(RuntimeError):
    pass


def require_matplotlib() -> None:
    """Fail early (before replaying anything) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def write_plot(runs: Sequence[Run], path: str | Path, title: str = "") -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.pyplot as plt

    sites = sorted(runs[0].gpus_total) if runs else []
    panels = 2 + len(sites)
    cols = 2
    rows = (panels + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 4.0 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    colour = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(POLICIES)}
    origin = min((r.first_s for r in runs), default=0.0)
    end = max((r.last_s for r in runs), default=1.0)

    queue_ax = flat[0]
    for run in runs:
        x, y = _binned(run.timeline, run.timeline.queued, origin, end)
        queue_ax.plot(x, y, label=run.policy, color=colour.get(run.policy), linewidth=1.2)
    _style(queue_ax, "Jobs waiting in the queue", "jobs (time-weighted mean per bin)")
    queue_ax.set_yscale("symlog", linthresh=10)

    for k, site in enumerate(sites):
        ax = flat[1 + k]
        for run in runs:
            gpus = run.gpus_total[site]
            x, y = _binned(run.timeline, run.timeline.busy[site], origin, end)
            ax.plot(x, y / gpus if gpus else y * 0, label=run.policy, color=colour.get(run.policy), lw=1.2)
        _style(ax, f"GPU utilisation at {site} ({runs[0].gpus_total[site]} GPUs)", "share of GPUs held")
        ax.set_ylim(0, 1.02)

    cdf_ax = flat[1 + len(sites)]
    for run in runs:
        xs, ys = _cdf(run.waits_s)
        cdf_ax.step(xs, ys, where="post", label=run.policy, color=colour.get(run.policy), lw=1.4)
    cdf_ax.set_xscale("symlog", linthresh=1)
    cdf_ax.set_xlim(left=0)
    cdf_ax.set_ylim(0, 1.01)
    cdf_ax.set_title("Queue wait CDF (placed jobs)")
    cdf_ax.set_xlabel("wait (minutes, log scale above 1)")
    cdf_ax.set_ylabel("share of jobs waiting at most x")
    cdf_ax.grid(True, alpha=0.3)
    for ax in flat[panels:]:
        ax.set_visible(False)
    # one legend for all panels, above them, so that no panel's lines are covered
    handles, labels = queue_ax.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=len(labels),
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, 0.965),
    )
    if title:
        fig.suptitle(title, fontsize=11, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _style(ax: Any, title: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("days since the first arrival")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _binned(tl: Timeline, values: Any, origin: float, end: float) -> tuple[Any, Any]:
    """Time-weighted mean of a step function over BINS equal bins; x in days."""
    import numpy as np

    t = np.frombuffer(tl.t, dtype=float)
    v = np.frombuffer(values, dtype=float)
    edges = np.linspace(origin, max(end, origin + 1.0), BINS + 1)
    if len(t) == 0:
        return (edges[:-1] - origin) / 86400, np.zeros(BINS)
    # integral of the step function up to each sample time, then up to each bin edge
    cum = np.concatenate(([0.0], np.cumsum(v[:-1] * np.diff(t))))
    k = np.clip(np.searchsorted(t, edges, side="right") - 1, 0, len(t) - 1)
    before = edges < t[0]
    area = np.where(before, 0.0, cum[k] + v[k] * (edges - t[k]))
    means = np.diff(area) / np.diff(edges)
    centres = (edges[:-1] + edges[1:]) / 2
    return (centres - origin) / 86400, means


def _cdf(waits_s: Sequence[float]) -> tuple[Any, Any]:
    """(wait in minutes, share of jobs waiting at most that), one point per distinct wait."""
    import numpy as np

    if not waits_s:
        return np.array([0.0]), np.array([0.0])
    values, counts = np.unique(np.asarray(waits_s, dtype=float) / 60, return_counts=True)
    shares = np.cumsum(counts) / len(waits_s)
    if len(values) > 4000:  # keep the curve's shape, not every distinct wait
        keep = np.unique(np.linspace(0, len(values) - 1, 4000).astype(int))
        values, shares = values[keep], shares[keep]
    return np.concatenate(([0.0], values)), np.concatenate(([0.0], shares))
