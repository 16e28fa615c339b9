"""Observability across real processes: one broker and two agents on loopback, exporting
traces and metrics over OTLP/gRPC to a receiver in this test, and serving Prometheus.

One trace per workload, broker to agent to the workload's environment (TRACEPARENT); the
scraped figures agree with `fedbroker sites` and `fedbroker usage`; failures are counted by
the agent's reason; the Grafana dashboard and the alert rules read only metrics that the
processes export; JSON log lines about a workload carry its id and trace id, on the broker
and on the agent; the CLI's gRPC client spans parent the broker's server spans, and the
Submit RPC's span names the workload and its trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from broker.listen import free_port
from broker.localfed import DEV_TOKENS, REPO, LocalFederation
from tests.observability.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.observability.scrape import Sample, metric_names, scrape, value

T = TypeVar("T")
DASHBOARD = REPO / "helm" / "fedbroker" / "dashboards" / "fedbroker.json"
ALERTS = REPO / "helm" / "fedbroker" / "alerts" / "fedbroker.rules.yaml"


class Observed:
    def __init__(
        self,
        fed: LocalFederation,
        receiver: OtlpReceiver,
        broker_port: int,
        agent_port: int,
        otel: dict[str, str],
    ) -> None:
        self.fed, self.receiver = fed, receiver
        self.broker_port, self.agent_port = broker_port, agent_port
        self.otel = otel  # the OTEL_* variables the broker and agents export with

    def cli(self, *args: str, who: str = "lion-rock-ai", traced: bool = False) -> Any:
        """A `fedbroker` command; `traced`: with the processes' OTEL_* variables (client spans)."""
        env = {**os.environ, "FEDBROKER_ENDPOINT": self.fed.endpoint, "FEDBROKER_TOKEN": DEV_TOKENS[who]}
        if traced:
            env.update(self.otel)
        result = subprocess.run(
            [sys.executable, "-m", "broker", *args, "-o", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def submit(self, tmp_path: Path, name: str, traced: bool = False, **changes: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": name,
            "backend": "kubernetes",
            "kubernetes": {"image": "registry.example.hk/obs:1"},
            "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
            "sites": ["cyberport"],
            "env": {"FEDBROKER_SIM_SECONDS": "0.3"},
        }
        spec.update(changes)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        submitted: dict[str, Any] = self.cli("submit", "-f", str(path), traced=traced)
        return submitted

    def wait_state(self, workload_id: str, states: set[str]) -> dict[str, Any]:
        return wait_for(lambda: _if(self.cli("get", workload_id), lambda w: w["state"] in states), "a state")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result is not None:
            return result
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _if(value: T, condition: Callable[[T], bool]) -> T | None:
    return value if condition(value) else None


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    workdir = tmp_path_factory.mktemp("observed")
    broker_port, agent_port = free_port(), free_port()
    with OtlpReceiver() as receiver:
        otel = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the receiver while the test waits
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        }
        process_env = {
            "broker": {
                **otel,
                "FEDBROKER_METRICS_LISTEN": f"127.0.0.1:{broker_port}",
                "FEDBROKER_LOG_FORMAT": "json",
            },
            "agent-cyberport": {
                **otel,
                "FEDBROKER_METRICS_LISTEN": f"127.0.0.1:{agent_port}",
                "FEDBROKER_LOG_FORMAT": "json",
            },
            "agent-sandy-ridge": otel,
        }
        fed = LocalFederation(
            workdir,
            agent_overrides={"heartbeat_s": 0.5, "backend": {"time_scale": 0.0001}},
            process_env=process_env,
        )
        with fed:
            fed.start()
            yield Observed(fed, receiver, broker_port, agent_port, otel)


def test_one_trace_from_submit_to_the_workloads_environment(observed: Observed, tmp_path: Path) -> None:
    env_file = tmp_path / "env.json"
    submitted = observed.submit(
        tmp_path, "traced", env={"FEDBROKER_SIM_SECONDS": "0.3", "FEDBROKER_SIM_ENV_FILE": str(env_file)}
    )
    trace_id = submitted["trace_id"]
    observed.wait_state(submitted["id"], {"SUCCEEDED"})
    wanted = {"fedbroker.submit", "fedbroker.place", "fedbroker.dispatch", "agent.launch", "backend.launch"}

    def spans() -> dict[str, ReceivedSpan] | None:
        got = {s.name: s for s in observed.receiver.spans(trace_id)}
        return got if wanted <= set(got) else None

    by_name = wait_for(spans, f"the spans of trace {trace_id}")
    submit, place, dispatch = (
        by_name["fedbroker.submit"],
        by_name["fedbroker.place"],
        by_name["fedbroker.dispatch"],
    )
    launch, backend = by_name["agent.launch"], by_name["backend.launch"]
    assert {s.service for s in (submit, place, dispatch)} == {"fedbroker-broker"}
    assert {s.service for s in (launch, backend)} == {"fedbroker-agent"}
    # Parents: submit is the root; place and dispatch under it; the agent's launch under the
    # dispatch that sent it (across the gRPC stream); the backend call under the launch.
    assert submit.parent_span_id == ""
    assert place.parent_span_id == submit.span_id and dispatch.parent_span_id == submit.span_id
    assert launch.parent_span_id == dispatch.span_id
    assert backend.parent_span_id == launch.span_id
    assert submit.attributes["fedbroker.workload"] == submitted["id"]
    assert submit.attributes["fedbroker.tenant"] == "lion-rock-ai"
    assert place.attributes["fedbroker.site"] == "cyberport" and place.attributes["fedbroker.attempt"] == 1
    # The agent's spans use the broker's attribute names: one search finds both sides.
    for span in (launch, backend):
        assert span.attributes["fedbroker.workload"] == submitted["id"]
        assert span.attributes["fedbroker.attempt"] == 1
        assert span.attributes["fedbroker.site"] == "cyberport"
        assert span.attributes["fedbroker.tenant"] == "lion-rock-ai"
        assert "workload.id" not in span.attributes
    # Every candidate's terms and reasons are events on `place`.
    candidates = {attrs["site"]: attrs for name, attrs in place.events if name == "candidate"}
    assert set(candidates) == {"cyberport", "sandy-ridge"}
    assert candidates["cyberport"]["eligible"] is True
    assert {"score", "locality_hours", "cost_hkd", "load"} <= set(candidates["cyberport"])
    assert candidates["sandy-ridge"]["eligible"] is False
    assert candidates["sandy-ridge"]["reasons"] == ["not in the workload's allowed sites"]
    # The workload saw the same trace, its parent the agent's launch span.
    environment = json.loads(env_file.read_text())
    version, env_trace, env_parent, flags = environment["TRACEPARENT"].split("-")
    assert (version, env_trace, env_parent) == ("00", trace_id, launch.span_id)
    assert int(flags, 16) & 1, "sampled"


def test_metrics_reach_the_otlp_receiver(observed: Observed) -> None:
    wait_for(
        lambda: _if(
            observed.receiver.metric_names("fedbroker-broker"),
            lambda names: {"fedbroker.site.gpu.limit", "fedbroker.cycles"} <= names,
        ),
        "the broker's metrics over OTLP",
    )
    wait_for(
        lambda: _if(
            observed.receiver.metric_names("fedbroker-agent"),
            lambda names: "fedbroker.agent.connected" in names,
        ),
        "the agents' metrics over OTLP",
    )


def test_scraped_gpus_and_subsidy_match_the_cli(observed: Observed, tmp_path: Path) -> None:
    done = observed.submit(tmp_path, "charged")
    observed.wait_state(done["id"], {"SUCCEEDED"})

    def gpus(sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in site.items() if k == "name" or k.startswith("gpus_")} for site in sites]

    def agree() -> tuple[list[Sample], list[dict[str, Any]]] | None:
        before = observed.cli("sites", who="sre")
        samples = scrape(observed.broker_port)
        after = observed.cli("sites", who="sre")
        return (samples, after) if gpus(before) == gpus(after) else None  # no GPU moved in between

    samples, sites = wait_for(agree, "a quiet moment to compare")
    for site in sites:
        name = site["name"]
        assert value(samples, "fedbroker_site_gpu_limit", fedbroker_site=name) == site["gpus_total"]
        for state in ("allocated", "reserved", "free"):
            scraped = value(
                samples, "fedbroker_site_gpu_usage", fedbroker_site=name, fedbroker_gpu_state=state
            )
            assert scraped == site[f"gpus_{state}"], (name, state)
        assert value(samples, "fedbroker_site_healthy", fedbroker_site=name) == 1
        assert 0 <= value(samples, "fedbroker_site_heartbeat_age_seconds", fedbroker_site=name) < 5
    # Per GPU model too: Sandy Ridge has H800 and L40S.
    models = {s.labels["fedbroker_gpu_model"] for s in samples if s.name == "fedbroker_site_gpu_limit"}
    assert models == {"H800", "L40S"}

    budgets = {b["tenant"]: b for b in observed.cli("usage", who="sre")["budgets"]}
    lion = budgets["lion-rock-ai"]
    assert lion["spent_hkd"] > 0
    labels = {"fedbroker_tenant": "lion-rock-ai", "fedbroker_subsidy_program": "aiss"}
    assert value(samples, "fedbroker_subsidy_spent_total", **labels) == pytest.approx(
        lion["spent_hkd"], abs=0.01
    )
    assert value(samples, "fedbroker_subsidy_left", **labels) == pytest.approx(lion["left_hkd"], abs=0.01)
    assert value(samples, "fedbroker_subsidy_reserved", **labels) == pytest.approx(
        lion["reserved_hkd"], abs=0.01
    )

    assert value(samples, "fedbroker_workload_submits_total", fedbroker_tenant="lion-rock-ai") >= 1
    assert value(samples, "fedbroker_workload_dispatches_total", fedbroker_site="cyberport") >= 1
    assert value(samples, "fedbroker_workload_time_to_running_seconds_count") >= 1
    assert value(samples, "db_client_operation_duration_seconds_count", db_system_name="sqlite") >= 1
    assert value(samples, "fedbroker_placement_decisions_total", fedbroker_placement_outcome="placed") >= 1
    assert value(samples, "fedbroker_broker_role", fedbroker_role="active") == 1
    assert value(samples, "fedbroker_broker_role", fedbroker_role="standby") == 0
    assert value(samples, "fedbroker_db_reachable") == 1
    assert not any("wl-" in v for s in samples for v in s.labels.values()), "a workload id became a label"


def test_queue_by_tenant_and_priority_while_paused(observed: Observed, tmp_path: Path) -> None:
    assert observed.cli("pause", who="sre") == {"paused": True}
    try:
        queued = observed.submit(tmp_path, "waits", priority=7)
        assert queued["state"] == "QUEUED"
        samples = scrape(observed.broker_port)
        assert value(samples, "fedbroker_placement_paused") == 1
        assert (
            value(samples, "fedbroker_queue_length", fedbroker_tenant="lion-rock-ai", fedbroker_priority="7")
            == 1
        )
        assert value(samples, "fedbroker_workload_count", fedbroker_workload_state="QUEUED") >= 1
        assert (
            value(samples, "fedbroker_placement_rejections_total", fedbroker_placement_filter="paused") >= 1
        )
        assert value(samples, "fedbroker_queue_oldest_age_seconds", fedbroker_tenant="lion-rock-ai") >= 0
    finally:
        observed.cli("resume", who="sre")
    observed.wait_state(queued["id"], {"SUCCEEDED"})
    samples = scrape(observed.broker_port)
    assert value(samples, "fedbroker_queue_length") == 0
    assert value(samples, "fedbroker_workload_time_to_placed_seconds_count") >= 1  # it waited


def test_failures_are_counted_by_the_agents_reason(observed: Observed, tmp_path: Path) -> None:
    before = scrape(observed.broker_port)
    failing = observed.submit(
        tmp_path,
        "fails",
        max_attempts=2,
        env={"FEDBROKER_SIM_SECONDS": "0.1", "FEDBROKER_SIM_EXIT_CODE": "3"},
    )
    observed.wait_state(failing["id"], {"FAILED"})
    after = scrape(observed.broker_port)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("fedbroker_attempt_failures_total", fedbroker_failure_reason="exit") == 2
    assert grew("fedbroker_workload_requeues_total", fedbroker_failure_reason="exit") == 1
    assert grew("fedbroker_workload_transitions_total", fedbroker_workload_state="FAILED") == 1
    agent = scrape(observed.agent_port)
    assert value(agent, "fedbroker_agent_launches_total", fedbroker_launch_outcome="ok") >= 2
    assert value(agent, "fedbroker_agent_connected", fedbroker_site="cyberport") == 1


def test_dashboard_and_alerts_read_only_exported_metrics(observed: Observed, tmp_path: Path) -> None:
    # Some series exist only while something waits, a histogram from its first value: one
    # workload waits in the queue (scraped then), then runs (scraped again).
    assert observed.cli("pause", who="sre") == {"paused": True}
    try:
        ran = observed.submit(tmp_path, "for-the-histograms")
        while_queued = scrape(observed.broker_port)
    finally:
        observed.cli("resume", who="sre")
    observed.wait_state(ran["id"], {"SUCCEEDED"})
    exported = {s.name for s in while_queued + scrape(observed.broker_port) + scrape(observed.agent_port)}
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
    for rule in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]:
        names = metric_names(rule["expr"])
        assert names and names <= exported, (rule["alert"], names - exported)


def test_json_log_lines_about_a_workload_carry_its_ids(observed: Observed, tmp_path: Path) -> None:
    submitted = observed.submit(tmp_path, "logged")
    observed.wait_state(submitted["id"], {"SUCCEEDED"})

    def lines() -> list[dict[str, Any]] | None:
        text = (observed.fed.workdir / "broker.log").read_text()
        parsed = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        mine = [line for line in parsed if line.get("workload_id") == submitted["id"]]
        return mine if any("settled" in line["message"] for line in mine) else None

    mine = wait_for(lines, "the broker's log lines")
    assert {line.get("state") for line in mine} >= {"PLACED", "RUNNING", "SUCCEEDED"}
    assert {line["trace_id"] for line in mine} == {submitted["trace_id"]}
    assert all(line["tenant"] == "lion-rock-ai" and {"time", "level", "logger"} <= set(line) for line in mine)


def test_a_refused_login_is_logged_and_counted_without_its_token(observed: Observed) -> None:
    secret = "not-a-token-of-ours-3f9a1c"
    env = {**os.environ, "FEDBROKER_ENDPOINT": observed.fed.endpoint, "FEDBROKER_TOKEN": secret}
    result = subprocess.run(
        [sys.executable, "-m", "broker", "sites"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode != 0

    def refused() -> list[dict[str, Any]] | None:
        text = (observed.fed.workdir / "broker.log").read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        found = [line for line in lines if line["message"] == "refused a call: unknown token"]
        return found or None

    [line, *_] = wait_for(refused, "the refusal in the broker's log")
    assert line["level"] == "WARNING"
    assert secret not in (observed.fed.workdir / "broker.log").read_text()
    samples = scrape(observed.broker_port)
    assert value(samples, "fedbroker_auth_refusals_total", fedbroker_auth_reason="unknown_token") >= 1


def test_the_brokers_rpcs_have_grpc_server_spans(observed: Observed, tmp_path: Path) -> None:
    observed.cli("get", observed.submit(tmp_path, "rpc")["id"])

    def rpc_spans() -> list[ReceivedSpan] | None:
        spans = [s for s in observed.receiver.spans() if s.attributes.get("rpc.system") == "grpc"]
        return spans if any(s.name.endswith("WorkloadService/Get") for s in spans) else None

    spans = [s for s in wait_for(rpc_spans, "gRPC server spans") if s.kind == Span.SPAN_KIND_SERVER]
    assert {s.service for s in spans} == {"fedbroker-broker"}
    names = {s.name for s in spans}
    assert "/fedbroker.v1.WorkloadService/Submit" in names
    assert not any("Connect" in n or "grpc.health" in n for n in names)  # the streams and probes are left out


def test_the_agents_json_log_lines_carry_the_attempt_and_its_trace(
    observed: Observed, tmp_path: Path
) -> None:
    submitted = observed.submit(tmp_path, "agent-logged")
    workload_id, trace_id = submitted["id"], submitted["trace_id"]
    observed.wait_state(workload_id, {"SUCCEEDED"})

    def lines() -> list[dict[str, Any]] | None:
        text = (observed.fed.workdir / "agent-cyberport.log").read_text()
        parsed = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        mine = [line for line in parsed if line.get("workload_id") == workload_id]
        return mine if any(line.get("state") == "SUCCEEDED" for line in mine) else None

    mine = wait_for(lines, "the agent's log lines about the workload")
    # Received, launched, RUNNING, SUCCEEDED: each with its fields, not only in its words.
    assert len(mine) >= 4
    for line in mine:
        assert (line["workload_id"], line["attempt"], line["site"]) == (workload_id, 1, "cyberport")
        assert line["trace_id"] == trace_id
        assert line["logger"] == "fedbroker.agent" and {"time", "level", "message"} <= set(line)
    assert {line.get("state") for line in mine} >= {"RUNNING", "SUCCEEDED"}
    [received] = [line for line in mine if line["message"].startswith("assignment ")]
    assert received["tenant"] == "lion-rock-ai"
    # The launch line names the agent's launch span, which is never made current.
    [launched] = [line for line in mine if line["message"].startswith("launched ")]
    launch = wait_for(
        lambda: next((s for s in observed.receiver.spans(trace_id) if s.name == "agent.launch"), None),
        "the agent's launch span",
    )
    assert launched["span_id"] == launch.span_id


def test_the_clis_client_spans_parent_the_brokers_server_spans(observed: Observed, tmp_path: Path) -> None:
    """With OTEL_TRACES_EXPORTER set, the CLI traces its calls; the Submit RPC's server span
    names the workload and the workload's own trace, so each is found from the other."""
    submitted = observed.submit(tmp_path, "client-traced", traced=True)
    workload_id, workload_trace = submitted["id"], submitted["trace_id"]

    def submit_rpc() -> tuple[ReceivedSpan, ReceivedSpan] | None:
        spans = observed.receiver.spans()
        servers = [
            s
            for s in spans
            if s.name == "/fedbroker.v1.WorkloadService/Submit"
            and s.kind == Span.SPAN_KIND_SERVER
            and s.attributes.get("fedbroker.workload") == workload_id
        ]
        if not servers:
            return None
        clients = [s for s in spans if s.span_id == servers[0].parent_span_id]
        return (servers[0], clients[0]) if clients else None

    server, client = wait_for(submit_rpc, "the Submit RPC's client and server spans")
    assert (client.service, client.kind, client.name) == (
        "fedbroker-cli",
        Span.SPAN_KIND_CLIENT,
        "/fedbroker.v1.WorkloadService/Submit",
    )
    assert client.trace_id == server.trace_id and client.attributes["rpc.system"] == "grpc"
    assert server.service == "fedbroker-broker"
    # RPC -> workload: the server span names the workload's trace, its own trace is the call's.
    assert server.attributes["fedbroker.workload.trace_id"] == workload_trace
    assert server.attributes["fedbroker.tenant"] == "lion-rock-ai"
    assert server.trace_id != workload_trace  # one trace per workload, not the client's
    # workload -> RPC: the attribute search that finds the workload's spans finds the RPC's too.
    wait_for(lambda: observed.receiver.spans(workload_trace) or None, "the workload's spans")
    found = {
        s.trace_id for s in observed.receiver.spans() if s.attributes.get("fedbroker.workload") == workload_id
    }
    assert found >= {workload_trace, server.trace_id}


def test_the_cycles_commit_is_a_database_span(observed: Observed, tmp_path: Path) -> None:
    observed.submit(tmp_path, "committed")

    def persist() -> ReceivedSpan | None:
        return next(
            (
                s
                for s in observed.receiver.spans()
                if s.name == "fedbroker.cycle.persist" and s.attributes.get("fedbroker.rows.inserted", 0) >= 1
            ),
            None,
        )

    span = wait_for(persist, "a persist span with an inserted workload")
    assert span.service == "fedbroker-broker"
    assert (span.attributes["db.system.name"], span.attributes["db.operation.name"]) == ("sqlite", "COMMIT")
    assert span.attributes["fedbroker.rows.events"] >= 1 and span.attributes["fedbroker.rows.decisions"] >= 1
    assert not [s for s in observed.receiver.spans() if s.name.startswith("fedbroker.db")]  # not twice
