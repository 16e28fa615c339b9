"""`fedbroker demo`: a broker and two simulated site agents on loopback, with the example workloads."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

from broker import lifecycle
from broker.cli import output
from broker.localfed import EXAMPLES, LocalFederation
from broker.spec import load_spec

# Which example tenant submits which example workload.
DEMO_SUBMISSIONS = [
    ("lion-rock-ai", "whisper-cantonese-finetune.yaml"),
    ("lion-rock-ai", "legal-rag-embeddings.yaml"),
    ("harbour-robotics", "lidar-segmentation.yaml"),
    ("lion-rock-ai", "llm-eval-subsidised.yaml"),
]


@click.command()
@click.option("--time-scale", default=0.0002, show_default=True, help="Simulated seconds per real second.")
@click.option("--keep", is_flag=True, help="Keep the working folder (logs, database).")
def demo(time_scale: float, keep: bool) -> None:
    """Start a broker and two simulated sites, run the example workloads, then stop everything."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fedbroker-demo-"))
    click.echo(f"working folder: {workdir}")
    with LocalFederation(workdir, agent_overrides={"backend": {"time_scale": time_scale}}) as fed:
        fed.start_broker()
        click.echo(f"broker serving on {fed.endpoint}")
        for site in fed.agent_configs:
            fed.start_agent(site)
        fed.wait_healthy()
        with fed.client() as sre:
            click.echo(
                output.table([output.site_json(s) for s in sre.sites()], ["name", "healthy", "gpus_total"])
            )
        click.echo()

        submitted: list[str] = []
        for tenant, filename in DEMO_SUBMISSIONS:
            with fed.client(tenant) as client:
                response = client.submit(load_spec(EXAMPLES / "workloads" / filename))
            workload = output.workload_json(response.workload)
            submitted.append(workload["id"])
            click.echo(
                f"submitted {workload['name']} as {tenant}: {workload['state']}, {workload['message']}"
            )

        rows = []
        with fed.client() as sre:
            for workload_id in submitted:
                for _ in sre.watch(workload_id, timeout=120):
                    pass
                workload = output.workload_json(sre.get(workload_id))
                why = output.explanation_json(sre.explain(workload_id))["summary"]
                rows.append({**workload, "why": why})
            first = output.explanation_json(sre.explain(submitted[0]))
    click.echo()
    click.echo(output.table(rows, ["name", "tenant", "site", "state", "attempt", "why"]))
    click.echo("\nwhy the first went where it did (fedbroker explain):")
    click.echo(output.explanation_text(first))
    ok = all(r["state"] == lifecycle.SUCCEEDED for r in rows)
    click.echo(
        f"\n{len(rows)} workloads, {sum(r['state'] == 'SUCCEEDED' for r in rows)} succeeded, "
        f"in {time.monotonic() - started:.1f}s; all processes stopped"
    )
    if not keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if ok else 1)
