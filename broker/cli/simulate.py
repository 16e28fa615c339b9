"""`fedbroker simulate`: replay a GPU-cluster trace through the placement core per policy."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from broker.config import load_federation
from broker.simulate import (
    POLICIES,
    PlotUnavailable,
    Run,
    TraceError,
    UnmappedCluster,
    build_scenario,
    load_mapping,
    read_trace,
    report,
    require_matplotlib,
    run_policies,
    summarise,
    write_plot,
)
from broker.validation import InvalidInput

_File = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.option("--config", "config_path", type=_File, required=True, help="Federation file.")
@click.option(
    "--trace", "trace_path", type=_File, required=True, help="Trace CSV (common shape), gzip or plain."
)
@click.option(
    "--mapping",
    "mapping_path",
    type=_File,
    default=None,
    help="Clusters -> tenants, site inventory, datasets, subsidy (default: derived from the config).",
)
@click.option(
    "--policy",
    "policies",
    type=click.Choice(POLICIES),
    multiple=True,
    help="Repeat to pick several (default: all).",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Seeds the mapping's draws and 'random'."
)
@click.option(
    "--plot",
    "plot_path",
    type=_File,
    default=None,
    help="Write a PNG: queue and utilisation over time, wait CDF, per policy.",
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
def simulate(
    config_path: Path,
    trace_path: Path,
    mapping_path: Path | None,
    policies: tuple[str, ...],
    seed: int,
    plot_path: Path | None,
    output: str,
) -> None:
    """Replay a job trace on a simulated clock through the real placement core, once per
    policy (fedbroker and the baselines); print one row of figures per policy."""
    try:
        if plot_path is not None:
            require_matplotlib()  # before minutes of replay, not after
        config = load_federation(config_path)
        mapping = load_mapping(mapping_path, config) if mapping_path is not None else None
        trace = read_trace(trace_path)
        scenario = build_scenario(config, trace, mapping, seed)
    except (InvalidInput, TraceError) as error:
        _fail(str(error), 2)
    except UnmappedCluster as error:
        _fail(f"{trace_path}: {error}", 2)
    except PlotUnavailable as error:
        _fail(str(error), 1)
    progress = sys.stderr.isatty()  # a person watching; scripts get clean output

    def done(run: Run) -> None:
        if progress:
            click.echo(f"replayed {run.policy} in {run.wall_s:.1f} s", err=True)

    runs = run_policies(scenario, policies or POLICIES, on_run=done)
    rows = [summarise(run) for run in runs]
    ctx = report.context(scenario, str(trace_path))
    if output == "json":
        click.echo(report.as_json(ctx, rows))
    elif output == "csv":
        click.echo(report.as_csv(rows), nl=False)
    else:
        click.echo(report.as_table(ctx, rows))
    if plot_path is not None:
        write_plot(runs, plot_path, title=f"{trace_path.name} on {config_path.name}, seed {seed}")
        if output == "table":
            click.echo(f"\nplot: {plot_path}")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
