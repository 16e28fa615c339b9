"""The Python SDK (`import fedbroker`) against a real broker: the README's example runs as written."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import fedbroker
import pytest

from broker.localfed import DEV_TOKENS, LocalFederation
from broker.sdk.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    federation = LocalFederation(
        tmp_path_factory.mktemp("sdk"),
        agent_overrides={"heartbeat_s": 0.5, "backend": {"time_scale": 0.0001}},
    )
    with federation:
        federation.start()
        yield federation


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("### The Python SDK") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's SDK example"
    return match.group(1)


def test_the_readme_example_runs_as_written(fed: LocalFederation, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(
        FEDBROKER_ENDPOINT=fed.endpoint,
        FEDBROKER_TOKEN=DEV_TOKENS["lion-rock-ai"],
        FEDBROKER_CONFIG=str(tmp_path / "none.yaml"),
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    workload_id, state, site = result.stdout.split()
    assert workload_id.startswith("wl-") and state in ("PLACED", "QUEUED") and site == "cyberport"


def client(fed: LocalFederation, who: str = "lion-rock-ai") -> fedbroker.Client:
    return fedbroker.Client(settings=Settings(fed.endpoint, DEV_TOKENS[who]))


def test_typed_results_and_errors(fed: LocalFederation) -> None:
    with client(fed) as api:
        run = api.submit(
            {
                "name": "typed",
                "backend": "kubernetes",
                "kubernetes": {"image": "registry.example.hk/x:1"},
                "resources": {"gpus_per_replica": 4, "gpu_model": "L40S"},
                "env": {"FEDBROKER_SIM_SECONDS": "0.3"},
            }
        )
        assert isinstance(run, fedbroker.WorkloadStatus) and isinstance(run.state, fedbroker.State)
        done = api.wait(run.id, timeout=60)
        assert done.state is fedbroker.State.SUCCEEDED and done.state.finished and done.site == "sandy-ridge"
        assert [e.state for e in api.events(run.id)][-1] is fedbroker.State.SUCCEEDED
        assert [w.id for w in api.list(name="typed", state="succeeded", since=timedelta(hours=1))] == [run.id]
        assert api.get("typed").id == run.id  # by name
        explanation = api.explain(run.id)
        chosen = next(c for c in explanation.candidates if c.site == "sandy-ridge")
        assert chosen.terms is not None and chosen.score is not None
        assert chosen.terms.locality_part + chosen.terms.cost_part + chosen.terms.load_part == pytest.approx(
            chosen.score
        )
        with pytest.raises(fedbroker.NotFoundError):
            api.get("wl-does-not-exist")
        with pytest.raises(fedbroker.RefusedError, match="can never fit"):
            api.submit(
                fedbroker.Workload(
                    name="never",
                    backend="ray",
                    ray={"entrypoint": "x"},
                    resources={"gpus_per_replica": 8, "gpu_model": "B200"},
                )
            )
        with pytest.raises(fedbroker.InvalidInput, match="must be a whole number"):
            api.submit({"name": "bad", "backend": "ray", "resources": {"gpus_per_replica": True}})
        sites = {s.name: s for s in api.sites()}
        assert sites["sandy-ridge"].price("L40S") == 12


def test_the_async_client_has_the_same_calls(fed: LocalFederation) -> None:
    async def main() -> None:
        settings = Settings(fed.endpoint, DEV_TOKENS["harbour-robotics"])
        async with fedbroker.AsyncClient(settings=settings) as api:
            run = await api.submit(
                {
                    "name": "asynchronous",
                    "backend": "kubernetes",
                    "kubernetes": {"image": "registry.example.hk/x:1"},
                    "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
                    "env": {"FEDBROKER_SIM_SECONDS": "0.3"},
                }
            )
            states = [event.state async for event in api.watch(run.id, timeout=60)]
            assert states[-1] is fedbroker.State.SUCCEEDED
            assert (await api.get(run.id)).state is fedbroker.State.SUCCEEDED
            assert [w.id for w in await api.list(name="asynchronous")] == [run.id]
            with pytest.raises(fedbroker.NotFoundError):
                await api.explain("wl-nope")

    asyncio.run(main())


def test_the_sdk_is_importable_as_fedbroker_without_loading_the_broker() -> None:
    code = "import fedbroker.v1, sys; print('broker.sdk.client' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
    assert {"Client", "AsyncClient", "Workload", "State"} <= set(fedbroker.__all__)
