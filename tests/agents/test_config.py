"""The agent config and token resolution: what validates, and errors that name the field path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from broker.validation import InvalidInput
from site_agents.config import (
    KubernetesBackendConfig,
    RayBackendConfig,
    SimulatedBackendConfig,
    load_agent_config,
    parse_agent_config,
    resolve_token,
)

EXAMPLE = """\
site: cyberport
broker: 127.0.0.1:50051
heartbeat_s: 2
datasets: [cantonese-speech]      # replicas this site's storage holds
token_file: null
backend:
  kind: simulated
  time_scale: 0.001
  node_groups:
    - {count: 4, name_prefix: cp-h800, gpu_model: H800, gpus: 8, gpu_memory_gb: 80,
       cpus: 128, memory_gb: 1024}
"""

VALID: dict[str, Any] = {
    "site": "cyberport",
    "broker": "127.0.0.1:50051",
    "backend": {
        "kind": "simulated",
        "node_groups": [
            {
                "count": 4,
                "name_prefix": "cp-h800",
                "gpu_model": "H800",
                "gpus": 8,
                "gpu_memory_gb": 80,
                "cpus": 128,
                "memory_gb": 1024,
            }
        ],
    },
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """VALID with the value at a dotted path set (or removed when value is DELETE)."""
    data = copy.deepcopy(VALID)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target: Any = data
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


DELETE = object()


def test_the_design_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(EXAMPLE)
    config = load_agent_config(path)
    assert (config.site, config.broker, config.heartbeat_s, config.datasets) == (
        "cyberport",
        "127.0.0.1:50051",
        2.0,
        ["cantonese-speech"],
    )
    assert isinstance(config.backend, SimulatedBackendConfig)
    assert config.backend.node_groups[0].count == 4


@pytest.mark.parametrize(
    ("backend", "kind"),
    [
        (
            {"kind": "kubernetes", "namespace": "fedbroker-workloads", "kubeconfig": "~/.kube/config"},
            KubernetesBackendConfig,
        ),
        ({"kind": "kubernetes"}, KubernetesBackendConfig),  # in-cluster, default namespace
        ({"kind": "ray", "address": "http://127.0.0.1:8265"}, RayBackendConfig),
    ],
)
def test_kubernetes_and_ray_configs_validate(backend: dict[str, Any], kind: type) -> None:
    assert isinstance(parse_agent_config(with_("backend", backend)).backend, kind)


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("backend.node_groups.0.gpus", 0, "backend.node_groups[0].gpus: must be > 0"),
        ("backend.node_groups.0.count", -1, "backend.node_groups[0].count: must be > 0"),
        (
            "backend.node_groups.0.gpu",
            8,
            "backend.node_groups[0].gpu: is not a known field (did you mean 'gpus'?)",
        ),
        ("backend.node_groups.0.gpu_model", DELETE, "backend.node_groups[0].gpu_model: is required"),
        (
            "backend.node_groups",
            [],
            "backend.node_groups: needs at least 1 item",
        ),
        ("backend.time_scale", 0, "backend.time_scale: must be > 0"),
        ("backend.kind", "slurm", "backend.kind: must be one of 'simulated', 'kubernetes' or 'ray'"),
        ("backend.kind", DELETE, "backend.kind: is required"),
        ("backend", {"kind": "ray"}, "backend.address: is required"),
        (
            "backend",
            {"kind": "kubernetes", "contxt": "x"},
            "backend.contxt: is not a known field (did you mean 'context'?)",
        ),
        (
            "backend",
            {"kind": "ray", "address": "h:1"},
            "backend.address: must be an http:// or https:// URL",
        ),
        ("backend.node_groups", None, "backend.node_groups: must be a list (got nothing)"),
        ("site", DELETE, "site: is required"),
        (
            "site",
            "Cyber Port",
            "site: must be lowercase letters, digits, '-' and '.',"
            " starting and ending with a letter or digit",
        ),
        ("heartbeat_s", 0, "heartbeat_s: must be > 0"),
        ("broker", "localhost", "broker: must be host:port, e.g. 127.0.0.1:50051 (got 'localhost')"),
        ("tokenfile", "x", "tokenfile: is not a known field (did you mean 'token_file'?)"),
    ],
)
def test_errors_name_the_field_path(path: str, value: Any, problem: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_agent_config(with_(path, value), "agent.yaml")
    assert error.value.problems == [problem]
    assert str(error.value) == f"agent.yaml: {problem}"


def test_node_name_prefixes_must_differ() -> None:
    groups = VALID["backend"]["node_groups"] * 2
    with pytest.raises(InvalidInput) as error:
        parse_agent_config(with_("backend.node_groups", groups))
    assert error.value.problems == [
        "backend.node_groups: name_prefix 'cp-h800' is used twice: node names would repeat"
    ]


def test_every_problem_is_reported_at_once() -> None:
    data = with_("backend.node_groups.0.gpus", 0)
    data["heartbeat_s"] = -1
    with pytest.raises(InvalidInput) as error:
        parse_agent_config(data)
    assert error.value.problems == ["heartbeat_s: must be > 0", "backend.node_groups[0].gpus: must be > 0"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "cannot read: No such file or directory"),
        ("site: [unclosed", "not valid YAML"),
        ("", "(root): is empty; expected the agent settings (site, broker, backend)"),
        ("- a list", "(root): expected the agent settings (site, broker, backend) as 'key: value' lines"),
    ],
)
def test_a_file_that_is_not_a_config_is_named(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "agent.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InvalidInput) as error:
        load_agent_config(path)
    assert error.value.source == str(path)
    assert error.value.problems[0].startswith(problem)


def config_with_token_file(tmp_path: Path, token_file: str | None) -> Path:
    path = tmp_path / "conf" / "agent.yaml"
    path.parent.mkdir()
    text = EXAMPLE.replace(
        "token_file: null", f"token_file: {token_file}" if token_file else "token_file: null"
    )
    path.write_text(text)
    return path


def test_token_comes_from_the_flag_then_the_env_then_the_file(tmp_path: Path) -> None:
    path = config_with_token_file(tmp_path, "secrets/token")  # relative to the config's folder
    (path.parent / "secrets").mkdir()
    (path.parent / "secrets" / "token").write_text("from-file\n")
    config = load_agent_config(path)
    env = {"FEDBROKER_AGENT_TOKEN": "from-env"}
    assert resolve_token(config, "from-flag", env) == "from-flag"
    assert resolve_token(config, None, env) == "from-env"
    assert resolve_token(config, None, {}) == "from-file"


@pytest.mark.parametrize(
    ("token_file", "contents", "problem"),
    [
        (None, None, "none given: pass --token, set FEDBROKER_AGENT_TOKEN, or set token_file in the config"),
        ("missing", None, "missing: cannot read: No such file or directory"),
        ("empty", "  \n", "empty: is empty"),
    ],
)
def test_no_usable_token_is_a_clear_error(
    tmp_path: Path, token_file: str | None, contents: str | None, problem: str
) -> None:
    path = config_with_token_file(tmp_path, token_file)
    if token_file and contents is not None:
        (path.parent / token_file).write_text(contents)
    with pytest.raises(InvalidInput) as error:
        resolve_token(load_agent_config(path), None, {})
    assert error.value.problems[0].endswith(problem)
