"""What the pods run is what fedbroker accepts: every command line parses with the real CLI (its
flags exist, its values are in range, its files are where the volumes put them), every FEDBROKER_*
variable is one the CLI reads, the probes name the right things, and every container is locked
down (non-root, read-only root filesystem, no privilege escalation, no capabilities, resources)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
from chart_render import VALUE_SETS, by_kind, containers, objects, one

from broker import k8s_role_label, probe
from broker.cli import cli

ACTIVE_SERVICE = "fedbroker.v1.WorkloadService"
# Variables the chart sets that no CLI option reads: the downward API, $(...) substitutions, HOME.
PLUMBING = {"POD_IP", "POD_NAME", "POD_NAMESPACE", "FEDBROKER_ADVERTISE", "HOME"}


def _command(name: str) -> click.Command:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None, name
    return command


def _envvars(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        if isinstance(param.envvar, str):
            names.add(param.envvar)
        elif param.envvar:
            names.update(param.envvar)
    return names


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "<from>")) for e in container.get("env", [])}


def _files(obj: dict[str, Any], tmp: Path) -> dict[str, str]:
    """Write the ConfigMaps' files where a test can read them: mount path -> local path."""
    objs = objects_cache[id(obj)]
    mapping: dict[str, str] = {}
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    for container in containers(obj):
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "configMap" not in volume:
                continue
            data = one(objs, "ConfigMap", volume["configMap"]["name"])["data"]
            if "subPath" in mount:  # one file
                local = tmp / mount["subPath"]
                local.write_text(data[mount["subPath"]])
            else:  # the whole ConfigMap as a folder
                local = tmp / mount["name"]
                local.mkdir(exist_ok=True)
                for key, text in data.items():
                    (local / key).write_text(text)
            mapping[mount["mountPath"]] = str(local)
    return mapping


objects_cache: dict[int, list[dict[str, Any]]] = {}


def _workloads(name: str) -> list[dict[str, Any]]:
    objs = objects(VALUE_SETS[name])
    found = by_kind(objs, "Deployment") + by_kind(objs, "Job")
    for obj in found:
        objects_cache[id(obj)] = objs
    return found


def _substitute(arg: str, env: dict[str, str], files: dict[str, str]) -> str:
    arg = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), "10.1.2.3"), arg)
    for mount, local in files.items():
        arg = arg.replace(mount, local)
    return arg


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_command_line_is_accepted_by_the_cli(name: str, tmp_path: Path) -> None:
    for obj in _workloads(name):
        files = _files(obj, tmp_path)
        for container in containers(obj):
            if "command" in container:  # python -m broker.k8s_role_label: tested below
                continue
            env = _env(container)
            args = [_substitute(a, env, files) for a in container["args"]]
            subcommand = _command(args[0])
            if isinstance(subcommand, click.Group):  # db upgrade
                subcommand = subcommand.get_command(click.Context(subcommand), args[1])
                args = args[1:]
            assert subcommand is not None
            # Parses and checks every option (choices, ranges, existing files) without running.
            subcommand.make_context(args[0], args[1:])
            unknown = {n for n in env if n.startswith("FEDBROKER_")} - _envvars(subcommand) - PLUMBING
            assert not unknown, f"{obj['metadata']['name']}/{container['name']}: {unknown} read by nothing"


@pytest.mark.parametrize("name", ["broker-only", "production"])
def test_the_broker_probes_and_the_role_label(name: str) -> None:
    broker = one(objects(VALUE_SETS[name]), "Deployment", "fb-fedbroker-broker")
    main, label = containers(broker)
    assert (main["name"], label["name"]) == ("broker", "role-label")
    readiness = main["readinessProbe"]
    tls = name == "production"
    if not tls:
        # Kubernetes' own gRPC probe on the server's health ("": active and standby alike).
        assert readiness["grpc"] == {"port": 50051}
    else:
        command = readiness["exec"]["command"]
        assert command[:3] == ["python", "-m", "broker.probe"]
        args = probe.parser().parse_args(command[3:])
        assert args.service == "" and args.address == "127.0.0.1:50051"
        assert args.ca_file == "/etc/fedbroker/tls/ca.crt"
        assert args.server_name == "fb-fedbroker-broker.fedbroker.svc"
        assert (args.cert_file, args.key_file) == (
            "/etc/fedbroker/probe-tls/tls.crt",
            "/etc/fedbroker/probe-tls/tls.key",
        )
        env = _env(main)
        assert env["FEDBROKER_TLS_CERT"] == "/etc/fedbroker/tls/tls.crt"
        assert env["FEDBROKER_TLS_CLIENT_CA"] == "/etc/fedbroker/tls/ca.crt"
    assert main["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert label["command"] == ["python", "-m", "broker.k8s_role_label"]
    label_args = k8s_role_label.parser().parse_args(label["args"])
    assert label_args.address == "127.0.0.1:50051"
    assert bool(label_args.ca_file) is tls
    assert {"POD_NAME", "POD_NAMESPACE"} <= set(_env(label))
    if tls:  # the label container gets the CA, never the broker's private key
        volumes = {v["name"]: v for v in broker["spec"]["template"]["spec"]["volumes"]}
        secrets = [
            volumes[m["name"]]["secret"] for m in label["volumeMounts"] if "secret" in volumes[m["name"]]
        ]
        broker_tls = [s for s in secrets if s["secretName"] == "broker-tls"]
        assert broker_tls == [
            {"secretName": "broker-tls", "defaultMode": 0o440, "items": [{"key": "ca.crt", "path": "ca.crt"}]}
        ]


def test_the_service_selects_the_active_broker_and_scraping_sees_both() -> None:
    objs = objects(VALUE_SETS["production"])
    broker = one(objs, "Deployment", "fb-fedbroker-broker")
    pod_labels = broker["spec"]["template"]["metadata"]["labels"]
    service = one(objs, "Service", "fb-fedbroker-broker")
    selector = dict(service["spec"]["selector"])
    assert selector.pop(k8s_role_label.LABEL) == "active"
    assert selector.items() <= pod_labels.items()
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    pods = one(objs, "Service", "fb-fedbroker-broker-pods")
    assert pods["spec"]["selector"].items() <= pod_labels.items()
    for monitor in by_kind(objs, "ServiceMonitor"):
        targets = [
            s
            for s in by_kind(objs, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert [t["metadata"]["name"] for t in targets] in (
            ["fb-fedbroker-broker-pods"],
            ["fb-fedbroker-agent"],
        )
        assert any(p["name"] == "metrics" for p in targets[0]["spec"]["ports"])
    pdb = one(objs, "PodDisruptionBudget", "fb-fedbroker-broker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert broker["spec"]["replicas"] == 2
    assert broker["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_container_is_locked_down(name: str) -> None:
    for obj in _workloads(name):
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for container in containers(obj):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
            # The one writable place is an emptyDir at /tmp.
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
            assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] != "/tmp")
