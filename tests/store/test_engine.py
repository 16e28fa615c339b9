"""The broker's state machine on a real database (SQLite and PostgreSQL), driven as the agents would.

No gRPC here: these call the engine directly with the agent protocol's messages,
so each lifecycle rule is checked on both databases in milliseconds.
"""

from __future__ import annotations

from typing import Any

import pytest
from fedbroker.v1 import agent_service_pb2, types_pb2

from broker import lifecycle
from broker.auth import Identity, sha256_hex
from broker.config import FederationConfig, parse_federation
from broker.engine import Broker
from broker.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from broker.spec import WorkloadSpec, parse_spec
from broker.store import Store

TENANT = Identity("tenant", "lion-rock-ai")
OTHER = Identity("tenant", "harbour-robotics")
SRE = Identity("operator", "sre")


def federation(**changes: Any) -> FederationConfig:
    data: dict[str, Any] = {
        "heartbeat_ttl_s": 10,
        "requeue_grace_s": 30,
        "subsidy_programs": [{"name": "aiss", "rate": 0.7}],
        "sites": [
            {
                "name": "cyberport",
                "backends": ["ray", "kubernetes"],
                "subsidy_programs": ["aiss"],
                "gpu_prices_hkd_per_hour": {"H800": 38},
                "agent_token_sha256": sha256_hex("a1"),
            },
            {
                "name": "sandy-ridge",
                "backends": ["kubernetes"],
                "gpu_prices_hkd_per_hour": {"H800": 32},
                "agent_token_sha256": sha256_hex("a2"),
            },
        ],
        "tenants": [
            {"name": "lion-rock-ai", "token_sha256": sha256_hex("t1")},
            {"name": "harbour-robotics", "token_sha256": sha256_hex("t2")},
        ],
        "operators": [{"name": "sre", "token_sha256": sha256_hex("o1")}],
    }
    data.update(changes)
    return parse_federation(data)


def spec(**changes: Any) -> WorkloadSpec:
    data: dict[str, Any] = {
        "name": "train",
        "backend": "ray",
        "ray": {"entrypoint": "python train.py"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
        "max_attempts": 2,
    }
    data.update(changes)
    return parse_spec(data)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def report(
    seq: int, nodes: int = 2, allocated: int = 0, workloads: tuple[tuple[str, int, str], ...] = ()
) -> agent_service_pb2.InventoryReport:
    return agent_service_pb2.InventoryReport(
        seq=seq,
        nodes=[
            types_pb2.Node(
                name=f"n{i}", gpu_model="H800", gpus_allocatable=8, gpus_allocated=allocated if i == 0 else 0
            )
            for i in range(nodes)
        ],
        workloads=[
            agent_service_pb2.RunningWorkload(workload_id=w, attempt=a, state=lifecycle.to_proto(s))
            for w, a, s in workloads
        ],
    )


def update(workload_id: str, attempt: int, state: str, message: str = "") -> agent_service_pb2.WorkloadUpdate:
    return agent_service_pb2.WorkloadUpdate(
        workload_id=workload_id, attempt=attempt, state=lifecycle.to_proto(state), message=message
    )


def outbox(broker: Broker, site: str) -> list[agent_service_pb2.BrokerMessage]:
    session = broker.dispatch._sessions[site]
    messages = []
    while not session.outbox.empty():
        messages.append(session.outbox.get_nowait())
    return [m for m in messages if m is not None]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(db_url: str, clock: Clock) -> Broker:
    return Broker(federation(), Store(db_url), clock=clock)


def connect(broker: Broker, site: str, seq: int = 1, **kwargs: Any) -> None:
    broker.agent_hello(Identity("agent", site), agent_service_pb2.Hello(site=site, agent_id=f"{site}-agent"))
    broker.agent_report(site, report(seq, **kwargs))


def test_lifecycle_from_submit_to_succeeded(broker: Broker) -> None:
    connect(broker, "cyberport")
    row, explanation = broker.submit(TENANT, spec())
    assert row is not None and row.state == "PLACED" and row.site == "cyberport" and row.attempt == 1
    assert explanation["chosen"] == "cyberport"
    sent = outbox(broker, "cyberport")
    assignment = next(m.assignment for m in sent if m.HasField("assignment"))
    assert (assignment.workload_id, assignment.attempt, assignment.tenant) == (row.id, 1, "lion-rock-ai")
    assert assignment.trace_context["traceparent"].split("-")[1] == row.trace_id

    broker.agent_ack("cyberport", agent_service_pb2.Ack(workload_id=row.id, attempt=1))
    broker.agent_update("cyberport", update(row.id, 1, "RUNNING"))
    assert broker.site_usage("cyberport").gpus_reserved == 8
    broker.agent_report("cyberport", report(2, allocated=8, workloads=((row.id, 1, "RUNNING"),)))
    usage = broker.site_usage("cyberport")
    assert (usage.gpus_reserved, usage.gpus_allocated, usage.gpus_free) == (0, 8, 8)
    broker.agent_update("cyberport", update(row.id, 1, "SUCCEEDED", "exit code 0"))

    assert broker.get(TENANT, row.id).state == "SUCCEEDED"
    states = [e.state for e in broker.events_after(row.id, 0)]
    assert states == ["PLACED", "RUNNING", "SUCCEEDED"]
    # A late, repeated report never resurrects a finished workload.
    broker.agent_report("cyberport", report(3, workloads=((row.id, 1, "RUNNING"),)))
    assert broker.get(TENANT, row.id).state == "SUCCEEDED"


def test_no_overcommit_and_queue_drains_in_order(broker: Broker) -> None:
    connect(broker, "cyberport")  # 16 GPUs; sandy-ridge has not reported
    rows = [broker.submit(TENANT, spec(name=f"w{i}"))[0] for i in range(4)]
    assert [r.state for r in rows if r] == ["PLACED", "PLACED", "QUEUED", "QUEUED"]
    queued = rows[2]
    assert queued is not None
    waiting = broker.explain(TENANT, queued.id)
    assert waiting["chosen"] is None and waiting["summary"].startswith("waiting")
    first = rows[0]
    assert first is not None
    broker.agent_update("cyberport", update(first.id, 1, "SUCCEEDED"))
    assert broker.get(TENANT, queued.id).state == "PLACED"
    assert broker.get(TENANT, rows[3].id).state == "QUEUED"  # type: ignore[union-attr]


def test_refused_and_invalid_submissions_store_nothing(broker: Broker) -> None:
    connect(broker, "cyberport")
    with pytest.raises(FailedPrecondition, match="can never fit any site"):
        broker.submit(TENANT, spec(resources={"gpus_per_replica": 8, "gpu_model": "B200"}))
    with pytest.raises(InvalidArgument, match=r"datasets\[0\]: unknown dataset 'nope'"):
        broker.submit(TENANT, spec(datasets=["nope"]))
    with pytest.raises(PermissionDenied):
        broker.submit(SRE, spec())
    assert broker.list_workloads(SRE) == []
    row, explanation = broker.submit(TENANT, spec(), dry_run=True)
    assert row is None and explanation["chosen"] == "cyberport"
    assert broker.list_workloads(SRE) == []


def test_tenants_see_only_their_own(broker: Broker) -> None:
    row, _ = broker.submit(TENANT, spec())
    assert row is not None
    with pytest.raises(NotFound):
        broker.get(OTHER, row.id)
    with pytest.raises(NotFound):
        broker.cancel(OTHER, row.id)
    assert broker.list_workloads(OTHER) == []
    assert [r.id for r in broker.list_workloads(SRE)] == [row.id]
    with pytest.raises(PermissionDenied):
        broker.get(Identity("agent", "cyberport"), row.id)


def test_failed_attempt_is_retried_until_max_attempts(broker: Broker) -> None:
    connect(broker, "cyberport")
    row, _ = broker.submit(TENANT, spec(max_attempts=2))
    assert row is not None
    broker.agent_update("cyberport", update(row.id, 1, "FAILED", "exit code 3"))
    again = broker.get(TENANT, row.id)
    assert (again.state, again.attempt) == ("PLACED", 2)
    # A report still showing attempt 1 is fenced: the agent is told to cancel it.
    outbox(broker, "cyberport")
    broker.agent_report("cyberport", report(5, workloads=((row.id, 1, "RUNNING"),)))
    cancels = [m.cancel for m in outbox(broker, "cyberport") if m.HasField("cancel")]
    assert [(c.workload_id, c.attempt) for c in cancels] == [(row.id, 1)]
    broker.agent_update("cyberport", update(row.id, 2, "FAILED", "exit code 3"))
    final = broker.get(TENANT, row.id)
    assert final.state == "FAILED" and "no attempts left (2)" in final.message
    assert broker.site_usage("cyberport").gpus_reserved == 0


def test_cancel_running_tells_the_agent(broker: Broker) -> None:
    connect(broker, "cyberport")
    row, _ = broker.submit(TENANT, spec())
    assert row is not None
    outbox(broker, "cyberport")
    cancelled = broker.cancel(TENANT, row.id)
    assert cancelled.state == "CANCELLED"
    assert [m.cancel.workload_id for m in outbox(broker, "cyberport") if m.HasField("cancel")] == [row.id]
    with pytest.raises(FailedPrecondition, match="already CANCELLED"):
        broker.cancel(TENANT, row.id)
    assert broker.site_usage("cyberport").gpus_reserved == 0


def test_dead_site_requeues_unacked_now_and_running_after_grace(broker: Broker, clock: Clock) -> None:
    connect(broker, "cyberport")
    running, _ = broker.submit(TENANT, spec(name="running"))
    unacked, _ = broker.submit(TENANT, spec(name="unacked"))
    assert running is not None and unacked is not None
    broker.agent_update("cyberport", update(running.id, 1, "RUNNING"))
    clock.now += 11  # past the 10 s TTL
    broker.sweep()
    assert broker.get(TENANT, unacked.id).state == "QUEUED"
    assert broker.get(TENANT, running.id).state == "RUNNING"
    clock.now += 30  # past the 30 s grace
    broker.sweep()
    lost = broker.get(TENANT, running.id)
    assert lost.state == "QUEUED" and "unavailable" in lost.message
    # The agent returns with the stale attempt: it is fenced, and the work is placed anew.
    broker.agent_hello(Identity("agent", "cyberport"), agent_service_pb2.Hello(site="cyberport"))
    broker.agent_report("cyberport", report(9, workloads=((running.id, 1, "RUNNING"),)))
    sent = outbox(broker, "cyberport")
    assert (running.id, 1) in [(m.cancel.workload_id, m.cancel.attempt) for m in sent if m.HasField("cancel")]
    assert broker.get(TENANT, running.id).attempt == 2


def test_restart_keeps_every_workload(db_url: str, clock: Clock) -> None:
    store = Store(db_url)
    first = Broker(federation(), store, clock=clock)
    connect(first, "cyberport")
    placed, _ = first.submit(TENANT, spec(name="placed"))
    queued = [first.submit(TENANT, spec(name=f"q{i}"))[0] for i in range(2)]
    assert placed is not None and all(q is not None for q in queued)
    store.close()

    second = Broker(federation(), Store(db_url), clock=clock)
    rows = {r.name: r for r in second.list_workloads(SRE)}
    assert {name: r.state for name, r in rows.items()} == {"placed": "PLACED", "q0": "PLACED", "q1": "QUEUED"}
    # The placed attempts' reservations are restored: nothing is placed on top of them.
    connect(second, "cyberport", seq=2)
    assert second.get(TENANT, rows["q1"].id).state == "QUEUED"
    # The unacknowledged assignments are re-sent when the agent reconnects.
    sent = outbox(second, "cyberport")
    assert {m.assignment.workload_id for m in sent if m.HasField("assignment")} == {placed.id, rows["q0"].id}


def test_agent_token_must_match_its_site(broker: Broker) -> None:
    with pytest.raises(PermissionDenied, match="for site 'cyberport', not 'sandy-ridge'"):
        broker.agent_hello(Identity("agent", "cyberport"), agent_service_pb2.Hello(site="sandy-ridge"))
    with pytest.raises(PermissionDenied):
        broker.agent_hello(TENANT, agent_service_pb2.Hello(site="cyberport"))


def test_a_cancel_missed_while_the_agent_was_away_is_sent_when_it_reports(broker: Broker) -> None:
    connect(broker, "cyberport")
    row, _ = broker.submit(TENANT, spec())
    assert row is not None
    broker.agent_update("cyberport", update(row.id, 1, "RUNNING"))
    broker.agent_disconnected(broker.dispatch._sessions["cyberport"])
    broker.cancel(TENANT, row.id)  # no agent connected: this Cancel goes nowhere
    connect(broker, "cyberport", seq=1, workloads=((row.id, 1, "RUNNING"),))
    cancels = [m.cancel for m in outbox(broker, "cyberport") if m.HasField("cancel")]
    assert [(c.workload_id, c.attempt) for c in cancels] == [(row.id, 1)]
    assert broker.get(TENANT, row.id).state == "CANCELLED"


def test_after_a_restart_sites_get_one_ttl_before_their_work_is_requeued(db_url: str, clock: Clock) -> None:
    store = Store(db_url)
    first = Broker(federation(), store, clock=clock)
    connect(first, "cyberport")
    row, _ = first.submit(TENANT, spec(max_attempts=1))
    assert row is not None and row.state == "PLACED"
    store.close()
    clock.now += 60  # the broker was down for a minute
    second = Broker(federation(), Store(db_url), clock=clock)
    second.sweep()
    clock.now += 5
    second.sweep()
    assert second.get(TENANT, row.id).state == "PLACED"  # still within the TTL since start
    clock.now += 6
    second.sweep()  # now the site counts as unavailable: the unacknowledged attempt is stranded
    clock.now += 1
    second.sweep()
    assert second.get(TENANT, row.id).state == "FAILED"


def test_a_second_live_agent_for_a_site_is_refused(broker: Broker) -> None:
    connect(broker, "cyberport")
    with pytest.raises(FailedPrecondition, match="already has a live agent 'cyberport-agent'"):
        broker.agent_hello(
            Identity("agent", "cyberport"), agent_service_pb2.Hello(site="cyberport", agent_id="other")
        )
    # The same agent reconnecting (its old stream not yet noticed as broken) replaces its session.
    old = broker.dispatch.current("cyberport")
    broker.agent_hello(
        Identity("agent", "cyberport"), agent_service_pb2.Hello(site="cyberport", agent_id="cyberport-agent")
    )
    assert broker.dispatch.current("cyberport") is not old


def test_reservation_holds_until_the_site_reports_the_workload_running(broker: Broker) -> None:
    connect(broker, "cyberport")
    row, _ = broker.submit(TENANT, spec())
    assert row is not None
    # Pods pending: the agent knows the attempt, but its GPUs are not allocated yet.
    broker.agent_report("cyberport", report(2, workloads=((row.id, 1, "PLACED"),)))
    assert broker.site_usage("cyberport").gpus_reserved == 8
    broker.agent_report("cyberport", report(3, allocated=8, workloads=((row.id, 1, "RUNNING"),)))
    usage = broker.site_usage("cyberport")
    assert (usage.gpus_reserved, usage.gpus_allocated) == (0, 8)


def subsidised_federation() -> FederationConfig:
    base = federation()
    data = base.model_dump()
    data["tenants"][0]["subsidy"] = {"program": "aiss", "budget_hkd": 1000.0}
    data["sites"][0]["gpu_prices_hkd_per_hour"] = {"H800": 40.0}
    return parse_federation(data)


def run_for(
    broker: Broker, clock: Clock, row_id: str, attempt: int, hours: float, end: str = "SUCCEEDED"
) -> None:
    broker.agent_update("cyberport", update(row_id, attempt, "RUNNING"))
    clock.now += hours * 3600
    broker.agent_update("cyberport", update(row_id, attempt, end))


def test_subsidy_is_charged_from_the_real_run_once_and_survives_a_restart(db_url: str, clock: Clock) -> None:
    broker = Broker(subsidised_federation(), Store(db_url), clock=clock)
    connect(broker, "cyberport")
    # 8 H800 x 2 h estimated x HK$40 = 640; the program's 70% (448) is reserved at placement.
    row, _ = broker.submit(TENANT, spec(subsidy="required", estimated_hours=2))
    assert row is not None and row.site == "cyberport"
    _, budgets = broker.usage(SRE)
    assert budgets == [
        {
            "tenant": "lion-rock-ai",
            "program": "aiss",
            "budget_hkd": 1000.0,
            "spent_hkd": 0.0,
            "reserved_hkd": pytest.approx(448.0),
            "left_hkd": pytest.approx(552.0),
        }
    ]
    run_for(broker, clock, row.id, 1, hours=1.5)  # ran 1.5 h: 480, of which the program pays 336
    broker.agent_report(
        "cyberport", report(7, workloads=((row.id, 1, "SUCCEEDED"),))
    )  # repeated: no new charge
    rows, budgets = broker.usage(TENANT)
    assert rows == [
        {
            "tenant": "lion-rock-ai",
            "program": "aiss",
            "site": "cyberport",
            "gpu_hours": pytest.approx(12.0),
            "cost_hkd": pytest.approx(480.0),
            "tenant_hkd": pytest.approx(144.0),
            "program_hkd": pytest.approx(336.0),
        }
    ]
    assert budgets[0]["spent_hkd"] == pytest.approx(336.0) and budgets[0]["left_hkd"] == pytest.approx(664.0)
    assert broker.usage(OTHER) == ([], [])

    restarted = Broker(subsidised_federation(), Store(db_url), clock=clock)
    assert restarted.usage(SRE)[1][0]["left_hkd"] == pytest.approx(664.0)  # spent stays spent


def test_budget_is_never_reused_by_work_placed_after_it_was_spent(
    broker: Broker, clock: Clock, db_url: str
) -> None:
    broker = Broker(subsidised_federation(), Store(db_url), clock=clock)
    connect(broker, "cyberport")
    # Each needs 8 x 2 h x 40 x 0.7 = 448 of the 1000: two fit the budget, a third does not.
    rows = [
        broker.submit(TENANT, spec(name=f"s{i}", subsidy="required", estimated_hours=2))[0] for i in range(2)
    ]
    for row in rows:
        assert row is not None
        run_for(broker, clock, row.id, 1, hours=2)
    with pytest.raises(FailedPrecondition, match="subsidy budget"):
        broker.submit(TENANT, spec(name="third", subsidy="required", estimated_hours=2))
    assert broker.usage(SRE)[1][0]["spent_hkd"] == pytest.approx(896.0)


def test_a_failed_attempt_is_charged_for_the_time_it_ran(broker: Broker, clock: Clock) -> None:
    connect(broker, "cyberport")
    row, _ = broker.submit(TENANT, spec(max_attempts=2))
    assert row is not None
    run_for(broker, clock, row.id, 1, hours=0.5, end="FAILED")
    run_for(broker, clock, row.id, 2, hours=1.0)
    rows, _ = broker.usage(SRE)
    assert rows[0]["gpu_hours"] == pytest.approx(8 * 1.5)  # both attempts used the GPUs
    assert rows[0]["cost_hkd"] == pytest.approx(8 * 1.5 * 38)


def test_a_report_listing_a_node_twice_is_ignored(broker: Broker) -> None:
    connect(broker, "cyberport")
    broken = report(2)
    broken.nodes.append(types_pb2.Node(name="n0", gpu_model="H800", gpus_allocatable=8))
    broker.agent_report("cyberport", broken)  # must not raise into the agent's stream
    assert broker.site_usage("cyberport").gpus_total == 16
    broker.agent_report("cyberport", report(3, nodes=3))
    assert broker.site_usage("cyberport").gpus_total == 24


def test_running_work_a_restarted_agent_no_longer_knows_is_requeued(broker: Broker) -> None:
    connect(broker, "cyberport")
    row, _ = broker.submit(TENANT, spec(max_attempts=2))
    assert row is not None
    broker.agent_ack("cyberport", agent_service_pb2.Ack(workload_id=row.id, attempt=1))
    broker.agent_update("cyberport", update(row.id, 1, "RUNNING"))
    # A restarted agent says Hello again; its first report lists nothing.
    broker.agent_hello(
        Identity("agent", "cyberport"), agent_service_pb2.Hello(site="cyberport", agent_id="cyberport-agent")
    )
    broker.agent_report("cyberport", report(1))
    again = broker.get(TENANT, row.id)
    assert (again.state, again.attempt) == ("PLACED", 2)
    assert [e.message for e in broker.events_after(row.id, 0) if e.state == "QUEUED"] == [
        "attempt 1 lost by the cyberport agent; queued for attempt 2"
    ]
    # A later report that still lacks attempt 2 is not a loss: it was only just sent.
    broker.agent_report("cyberport", report(2))
    assert broker.get(TENANT, row.id).attempt == 2
