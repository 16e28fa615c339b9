"""Workload spec validation, and its round trip over the wire format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fedbroker.v1 import types_pb2

from broker.spec import load_spec, parse_spec, spec_from_proto, spec_to_proto
from broker.validation import InvalidInput

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workloads"


def minimal(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "train",
        "backend": "ray",
        "ray": {"entrypoint": "python train.py"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
    }
    spec.update(changes)
    return spec


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_valid_and_survive_the_wire(path: Path) -> None:
    spec = load_spec(path)
    assert spec_from_proto(spec_to_proto(spec)) == spec
    # As stored in the database (model_dump), the same wire message.
    assert spec_to_proto(spec.model_dump(mode="json")) == spec_to_proto(spec)


def test_defaults() -> None:
    spec = parse_spec(minimal())
    assert (spec.subsidy, spec.priority, spec.max_attempts, spec.resources.replicas) == ("preferred", 0, 3, 1)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"resources": {"gpus_per_replica": 0, "gpu_model": "H800"}},
            "resources.gpus_per_replica: must be > 0",
        ),
        ({"resources": {"gpus_per_replica": 8}}, "resources.gpu_model: is required"),
        ({"backend": "slurm"}, "backend: must be one of 'ray' or 'kubernetes'"),
        ({"subsidy": "maybe"}, "subsidy: must be one of 'required', 'preferred' or 'none'"),
        ({"estimated_hours": 0}, "estimated_hours: must be > 0"),
        ({"ray": None}, "ray: is required for backend ray"),
        ({"kubernetes": {"image": "x"}}, "kubernetes: not allowed for backend ray"),
        (
            {"name": "Bad_Name"},
            "name: must be lowercase letters, digits and '-', starting and ending with a letter or digit",
        ),
        ({"gpus": 8}, "gpus: is not a known field"),
        ({"priority": 99_999_999_999}, "priority: must be <= 1000000"),
    ],
)
def test_errors_name_the_field(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_spec(minimal(**changes))
    assert expected in caught.value.problems


def test_wire_spec_without_resources_is_refused_by_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        spec_from_proto(
            types_pb2.WorkloadSpec(name="x", backend="ray", ray=types_pb2.RaySpec(entrypoint="e"))
        )
    assert caught.value.problems == ["resources: is required"]
