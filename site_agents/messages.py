"""Translation between the agent protocol's messages and the backend's values; no I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from fedbroker.v1 import agent_service_pb2 as pb
from fedbroker.v1 import types_pb2
from google.protobuf.json_format import MessageToDict

from site_agents.backends.base import AttemptKey, AttemptStatus, Launch, NodeInventory, Resources, State

WORKLOAD_ID_ENV = "FEDBROKER_WORKLOAD_ID"
ATTEMPT_ENV = "FEDBROKER_ATTEMPT"
TRACEPARENT_ENV = "TRACEPARENT"


def key_of(message: pb.Assignment | pb.Cancel | pb.Ack) -> AttemptKey:
    return AttemptKey(message.workload_id, message.attempt)


def trace_id_of(assignment: pb.Assignment) -> str:
    """The workload's trace id from the assignment's W3C ``traceparent`` ("" if it has none)."""
    parts = assignment.trace_context.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""


def launch_from(assignment: pb.Assignment, trace_env: Mapping[str, str]) -> Launch:
    """The backend's view of an assignment; the agent's own variables win over the workload's."""
    spec = assignment.spec
    key = key_of(assignment)
    env = {
        **spec.kubernetes.env,
        **spec.env,
        **trace_env,
        WORKLOAD_ID_ENV: key.workload_id,
        ATTEMPT_ENV: str(key.attempt),
    }
    res = spec.resources
    return Launch(
        key=key,
        tenant=assignment.tenant,
        backend=spec.backend,
        resources=Resources(
            replicas=max(res.replicas, 1),  # proto3 default 0 means "not set": one replica
            gpus_per_replica=res.gpus_per_replica,
            gpu_model=res.gpu_model,
            cpus_per_replica=res.cpus_per_replica,
            memory_gb_per_replica=res.memory_gb_per_replica,
        ),
        env=env,
        nodes=tuple(assignment.nodes),
        estimated_hours=spec.estimated_hours if spec.HasField("estimated_hours") else None,
        entrypoint=spec.ray.entrypoint,
        runtime_env=MessageToDict(spec.ray.runtime_env) if spec.ray.HasField("runtime_env") else {},
        image=spec.kubernetes.image,
        command=tuple(spec.kubernetes.command),
    )


def state_to_proto(state: State) -> types_pb2.WorkloadState.ValueType:
    return types_pb2.WorkloadState.Value(f"WORKLOAD_STATE_{state.value}")


def hello(site: str, agent_id: str, backends: Sequence[str], version: str) -> pb.AgentMessage:
    return pb.AgentMessage(hello=pb.Hello(site=site, agent_id=agent_id, backends=backends, version=version))


def report(
    seq: int, nodes: Iterable[NodeInventory], datasets: Iterable[str], attempts: Iterable[AttemptStatus]
) -> pb.AgentMessage:
    return pb.AgentMessage(
        inventory=pb.InventoryReport(
            seq=seq,
            nodes=[_node(n) for n in nodes],
            datasets=list(datasets),
            workloads=[
                pb.RunningWorkload(
                    workload_id=a.key.workload_id,
                    attempt=a.key.attempt,
                    state=state_to_proto(a.state),
                    nodes=a.nodes,
                    message=a.message,
                    exit_code=a.exit_code,
                    reason=a.reason,
                )
                for a in attempts
            ],
        )
    )


def update(status: AttemptStatus) -> pb.AgentMessage:
    return pb.AgentMessage(
        update=pb.WorkloadUpdate(
            workload_id=status.key.workload_id,
            attempt=status.key.attempt,
            state=state_to_proto(status.state),
            message=status.message,
            exit_code=status.exit_code,
            reason=status.reason,
        )
    )


def ack(key: AttemptKey) -> pb.AgentMessage:
    return pb.AgentMessage(ack=pb.Ack(workload_id=key.workload_id, attempt=key.attempt))


def _node(node: NodeInventory) -> types_pb2.Node:
    return types_pb2.Node(
        name=node.name,
        gpu_model=node.gpu_model,
        gpus_allocatable=node.gpus_allocatable,
        gpus_allocated=node.gpus_allocated,
        gpu_memory_gb=node.gpu_memory_gb,
        cpus=node.cpus,
        memory_gb=node.memory_gb,
        labels=dict(node.labels),
    )
