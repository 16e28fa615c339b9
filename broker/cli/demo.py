"""`fedbroker demo`: a broker and two site agents on loopback, with the example workloads.

Sandy Ridge runs on a real local Ray head the demo starts and stops (fake GPUs) when the
`ray` extra is installed, so its workloads are real Ray jobs whose output `fedbroker logs`
reads back; otherwise, and with `--backend simulated`, both sites are simulated.
Cyberport is always simulated.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from broker import lifecycle
from broker.cli import output
from broker.cli.progress import StatusLine
from broker.localfed import EXAMPLES, LocalFederation
from broker.localray import local_ray_head, ray_installed
from broker.spec import WorkloadSpec, load_spec, parse_spec

# Which example tenant submits which example workload.
DEMO_SUBMISSIONS = [
    ("lion-rock-ai", "whisper-cantonese-finetune.yaml"),
    ("lion-rock-ai", "legal-rag-embeddings.yaml"),
    ("harbour-robotics", "lidar-segmentation.yaml"),
    ("lion-rock-ai", "llm-eval-subsidised.yaml"),
]
RAY_SITE = "sandy-ridge"
RAY_GPUS = 16  # fake H800s on the one head node: the example workloads Sandy Ridge gets fit together
RAY_GPU_MODEL = "H800"


@click.command()
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=0.0002,
    show_default=True,
    help="Real seconds per simulated second: a workload runs estimated_hours x 3600 x this "
    "(0.0002: an hour of work in 0.72 s).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "ray", "simulated"]),
    default="auto",
    show_default=True,
    help="Sandy Ridge's backend: a real local Ray head (auto: when the ray extra is installed) or simulated.",
)
@click.option("--keep", is_flag=True, help="Keep the working folder (logs, database).")
def demo(time_scale: float, backend: str, keep: bool) -> None:
    """Start a broker and two sites, run the example workloads, then stop everything."""
    started = time.monotonic()
    use_ray = backend == "ray" or (backend == "auto" and ray_installed())
    if backend == "ray" and not ray_installed():
        click.echo("error: --backend ray needs the ray extra: pip install 'fedbroker[ray]'", err=True)
        sys.exit(2)
    workdir = Path(tempfile.mkdtemp(prefix="fedbroker-demo-"))
    click.echo(f"working folder: {workdir}")
    try:
        with _sandy_ridge(use_ray, workdir) as (ray_backend, config):
            if ray_backend is None:
                why = (
                    "" if backend == "simulated" else " (Ray is not installed: pip install 'fedbroker[ray]')"
                )
                click.echo(f"Sandy Ridge: simulated backend{why}; Cyberport: simulated backend")
            else:
                click.echo(
                    f"Sandy Ridge: a real local Ray head at {ray_backend['address']} ({RAY_GPUS} fake "
                    f"{RAY_GPU_MODEL} GPUs): its workloads run as real Ray jobs; Cyberport: simulated backend"
                )
            backends = {RAY_SITE: ray_backend} if ray_backend is not None else {}
            rows, first, ray_logs = _run(workdir, config, backends, time_scale, ray=ray_backend is not None)
        click.echo()
        click.echo(output.table(rows, ["name", "tenant", "site", "state", "attempt", "why"]))
        click.echo("\nwhy the first went where it did (fedbroker explain):")
        click.echo(output.explanation_text(first))
        for name, lines in ray_logs.items():
            click.echo(f"\n{name} ran as a Ray job at {RAY_SITE}; its output (fedbroker logs):")
            click.echo("\n".join(f"  {line}" for line in lines))
        ok = all(r["state"] == lifecycle.SUCCEEDED for r in rows)
        click.echo(
            f"\n{len(rows)} workloads, {sum(r['state'] == 'SUCCEEDED' for r in rows)} succeeded, "
            f"in {time.monotonic() - started:.1f}s; all processes stopped"
        )
        sys.exit(0 if ok else 1)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: every process stopped", err=True)
        sys.exit(130)
    finally:
        # Whatever happens (a failure, Ctrl-C), the processes are stopped by LocalFederation
        # and the working folder goes, unless --keep.
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _sandy_ridge(use_ray: bool, workdir: Path) -> Iterator[tuple[dict[str, Any] | None, Path]]:
    """(Sandy Ridge's backend section, or None for the file's simulated one; the federation config)."""
    if not use_ray:
        yield None, EXAMPLES / "federation.yaml"
        return
    click.echo("starting a local Ray head for Sandy Ridge ...")
    with local_ray_head(RAY_GPUS, RAY_GPU_MODEL) as address:
        # A Ray cluster runs Ray jobs only: the federation must not send it Kubernetes Jobs.
        federation = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
        for site in federation["sites"]:
            if site["name"] == RAY_SITE:
                site["backends"] = ["ray"]
        config = workdir / "federation.yaml"
        config.write_text(yaml.safe_dump(federation))
        yield {"kind": "ray", "address": address, "poll_s": 0.5}, config


def _run(
    workdir: Path, config: Path, backends: dict[str, dict[str, Any]], time_scale: float, *, ray: bool
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, list[str]]]:
    overrides = {"backend": {"time_scale": time_scale}}
    with LocalFederation(workdir, config=config, agent_overrides=overrides, backends=backends) as fed:
        fed.start_broker()
        click.echo(f"broker serving on {fed.endpoint}")
        for site in fed.agent_configs:
            fed.start_agent(site)
        fed.wait_healthy(timeout=60)
        with fed.client() as sre:
            click.echo(
                output.table([output.site_json(s) for s in sre.sites()], ["name", "healthy", "gpus_total"])
            )
        click.echo()

        submitted: list[str] = []
        for tenant, filename in DEMO_SUBMISSIONS:
            spec = load_spec(EXAMPLES / "workloads" / filename)
            if ray:
                spec = _runnable_on_a_laptop_ray(spec)
            with fed.client(tenant) as client:
                response = client.submit(spec)
            workload = output.workload_json(response.workload)
            submitted.append(workload["id"])
            click.echo(
                f"submitted {workload['name']} as {tenant}: {workload['state']}, {workload['message']}"
            )

        rows = []
        ray_logs: dict[str, list[str]] = {}
        with fed.client() as sre:
            for i, workload_id in enumerate(submitted, start=1):
                with StatusLine() as status:  # a spinner on a terminal, nothing in a log
                    status.show(f"waiting for workload {i} of {len(submitted)} ({workload_id})")
                    for _ in sre.watch(workload_id, timeout=180):
                        pass
                workload = output.workload_json(sre.get(workload_id))
                why = output.explanation_json(sre.explain(workload_id))["summary"]
                rows.append({**workload, "why": why})
                if ray and workload["site"] == RAY_SITE:
                    ray_logs[workload["name"]] = [
                        line for batch in sre.logs(workload_id, timeout=60) for line in batch.lines
                    ]
            first = output.explanation_json(sre.explain(submitted[0]))
    return rows, first, ray_logs


def _runnable_on_a_laptop_ray(spec: WorkloadSpec) -> WorkloadSpec:
    """The example as a Ray job this machine can run: a short stand-in for its entrypoint (the real
    one needs its code and data), GPUs only (the head's CPUs and memory are a laptop's), and the
    Kubernetes example meant for Sandy Ridge (which runs Ray here) as a Ray job on its H800s."""
    data = spec.model_dump(mode="json", exclude_none=True)
    original = " ".join(data["kubernetes"]["command"]) if data["backend"] == "kubernetes" else ""
    if data["backend"] == "kubernetes" and data.get("datasets") and _only_at_ray_site(data):
        data["backend"] = "ray"
        data["env"] = {**data.pop("kubernetes").get("env", {}), **data.get("env", {})}
        data["resources"]["gpu_model"] = RAY_GPU_MODEL
    if data["backend"] != "ray":
        return spec
    original = original or data["ray"]["entrypoint"]
    data["ray"] = {"entrypoint": _stand_in(data["name"], original)}
    for field in ("cpus_per_replica", "memory_gb_per_replica"):
        data["resources"].pop(field, None)
    return parse_spec(data)


def _only_at_ray_site(data: dict[str, Any]) -> bool:
    """Its data lives only at Sandy Ridge (the example's legal corpus): that is where it belongs."""
    federation = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    replicas = {d["name"]: d["replicas"] for d in federation["datasets"]}
    return all(replicas.get(name) == [RAY_SITE] for name in data["datasets"])


def _stand_in(name: str, original: str) -> str:
    """One line of Python that says what it stands in for, works a moment, and exits 0."""
    code = (
        "import os, socket, time; "
        f"print({name!r}, os.environ['FEDBROKER_WORKLOAD_ID'], 'on Ray at', socket.gethostname(), "
        "flush=True); "
        f"print('stand-in for:', {original!r}, flush=True); "
        "[(time.sleep(0.5), print(f'step {i}/3', flush=True)) for i in (1, 2, 3)]; "
        "print('done', flush=True)"
    )
    return f"python -c {shlex.quote(code)}"
