"""`fedbroker validate -f FILE`: check a workload, agent or federation file offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from broker.cli import output
from broker.cli.errors import BAD_INPUT
from broker.config import parse_federation
from broker.sdk import workloads
from broker.spec import parse_spec
from broker.validation import InvalidInput, decode_text, parse_yaml, read_text
from site_agents.config import parse_agent_config

KINDS = ("workload", "agent", "federation")


def detect_kind(data: Any) -> str:
    """By the top-level keys each kind must have (a workload: backend; an agent: site and
    broker; a federation: sites)."""
    if isinstance(data, dict):
        if "sites" in data and "backend" not in data:
            return "federation"
        if "site" in data and "broker" in data:
            return "agent"
    return "workload"


def check(kind: str, data: Any, source: str) -> str:
    """A one-line summary of the valid file; InvalidInput with every problem otherwise."""
    if kind == "workload":
        spec = workloads.checked(parse_spec(data, source), source)
        r = spec.resources
        return f"workload {spec.name}: {spec.backend}, {r.replicas} x {r.gpus_per_replica} {r.gpu_model}"
    if kind == "agent":
        agent = parse_agent_config(data, source)
        return f"agent for site {agent.site} ({agent.backend.kind} backend) reporting to {agent.broker}"
    federation = parse_federation(data, source)
    return f"federation: {len(federation.sites)} sites, {len(federation.tenants)} tenants"


@click.command()
@click.option("-f", "--file", "path", required=True, help="The file to check; - reads stdin.")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="What the file is (default: detected).")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table")
def validate(path: str, kind: str | None, fmt: str) -> None:
    """Check a workload, agent or federation file without a broker; exit 2 if it is not valid."""
    try:
        if path == "-":
            source, text = "<stdin>", decode_text(sys.stdin.buffer.read(), "<stdin>")
        else:
            source, text = path, read_text(Path(path))
        data = parse_yaml(text, source)
        kind = kind or detect_kind(data)
        summary = check(kind, data, source)
    except InvalidInput as error:
        if fmt == "json":
            body = {"file": path, "kind": kind, "valid": False, "problems": error.problems}
            click.echo(output.json.dumps(body))
        else:
            for problem in error.problems:
                click.echo(f"{error.source}: {problem}", err=True)
        sys.exit(BAD_INPUT)
    if fmt == "json":
        click.echo(output.json.dumps({"file": path, "kind": kind, "valid": True, "summary": summary}))
    else:
        click.echo(f"{path}: ok ({summary})")
