"""What the pods read: federation.yaml and agent.yaml pass fedbroker's own validation, and every
secret travels in a Secret, never in a ConfigMap or an environment literal."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from chart_render import (
    AGENT_TOKEN,
    DB_URL,
    SECRETS,
    VALUE_SETS,
    by_kind,
    containers,
    federation,
    objects,
    one,
)

from broker.config import parse_federation
from site_agents.config import parse_agent_config


def _config_file(objs: list[dict[str, Any]], name: str, key: str) -> Any:
    return yaml.safe_load(one(objs, "ConfigMap", name)["data"][key])


@pytest.mark.parametrize("name", [n for n, v in VALUE_SETS.items() if "broker" in v])
def test_federation_passes_the_brokers_validation(name: str) -> None:
    data = _config_file(objects(VALUE_SETS[name]), "fb-fedbroker-broker", "federation.yaml")
    assert data == federation()  # exactly what the values held
    config = parse_federation(data, "federation.yaml")
    assert [s.name for s in config.sites] == ["cyberport", "sandy-ridge"]


@pytest.mark.parametrize("name", [n for n, v in VALUE_SETS.items() if "agent" in v])
def test_agent_config_passes_the_agents_validation(name: str) -> None:
    data = _config_file(objects(VALUE_SETS[name]), "fb-fedbroker-agent", "agent.yaml")
    config = parse_agent_config(data, "agent.yaml")
    assert config.token_file is None and config.tls is None  # both come from Secrets, by env
    assert config.backend.kind == VALUE_SETS[name]["agent"]["config"]["backend"]["kind"]


def test_agent_beside_the_broker_dials_its_service() -> None:
    data = _config_file(objects(VALUE_SETS["both"]), "fb-fedbroker-agent", "agent.yaml")
    assert parse_agent_config(data).brokers == ("fb-fedbroker-broker.fedbroker.svc:50051",)
    data = _config_file(objects(VALUE_SETS["agent-only"]), "fb-fedbroker-agent", "agent.yaml")
    assert parse_agent_config(data).brokers == ("broker.cyberport.example.hk:443",)


def _env_literals(obj: dict[str, Any]) -> list[str]:
    return [str(e["value"]) for c in containers(obj) for e in c.get("env", []) if "value" in e]


def _everything_but_secrets(objs: list[dict[str, Any]]) -> str:
    return json.dumps([o for o in objs if o["kind"] != "Secret"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_secret_outside_a_secret(name: str) -> None:
    objs = objects(VALUE_SETS[name])
    text = _everything_but_secrets(objs)
    for secret in SECRETS:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text
    for obj in by_kind(objs, "Deployment") + by_kind(objs, "Job"):
        for literal in _env_literals(obj):
            assert not any(secret in literal for secret in SECRETS), (obj["metadata"]["name"], literal)


def test_secrets_reach_the_pods_by_reference() -> None:
    objs = objects(VALUE_SETS["both"])
    db = one(objs, "Secret", "fb-fedbroker-broker-db")
    assert base64.b64decode(db["data"]["url"]).decode() == DB_URL
    token = one(objs, "Secret", "fb-fedbroker-agent-token")
    assert base64.b64decode(token["data"]["token"]).decode() == AGENT_TOKEN

    def env(obj: dict[str, Any], name: str) -> dict[str, Any]:
        (entry,) = [e for e in containers(obj)[0]["env"] if e["name"] == name]
        return dict(entry)

    broker = one(objs, "Deployment", "fb-fedbroker-broker")
    job = one(objs, "Job", "fb-fedbroker-broker-db-upgrade")
    for obj in (broker, job):
        assert env(obj, "FEDBROKER_DB_URL")["valueFrom"] == {
            "secretKeyRef": {"name": "fb-fedbroker-broker-db", "key": "url"}
        }
    agent = one(objs, "Deployment", "fb-fedbroker-agent")
    assert env(agent, "FEDBROKER_AGENT_TOKEN")["valueFrom"] == {
        "secretKeyRef": {"name": "fb-fedbroker-agent-token", "key": "token"}
    }


def test_existing_secrets_are_used_and_none_is_made() -> None:
    objs = objects(VALUE_SETS["existing-secrets"])
    assert by_kind(objs, "Secret") == []
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for obj in by_kind(objs, "Deployment")
        for c in containers(obj)
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs["FEDBROKER_DB_URL"] == {"name": "fedbroker-db", "key": "dsn"}
    assert refs["FEDBROKER_AGENT_TOKEN"] == {"name": "cyberport-agent-token", "key": "token"}


def test_the_database_secret_exists_before_the_migration_job() -> None:
    """Hooks run before ordinary objects: the Secret the pre-install Job reads is an earlier hook."""
    objs = objects(VALUE_SETS["broker-only"])
    secret = one(objs, "Secret", "fb-fedbroker-broker-db")["metadata"]["annotations"]
    job = one(objs, "Job", "fb-fedbroker-broker-db-upgrade")["metadata"]["annotations"]
    assert secret["helm.sh/hook"] == job["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret["helm.sh/hook-weight"]) < int(job["helm.sh/hook-weight"])
    assert "hook-succeeded" not in secret["helm.sh/hook-delete-policy"]  # the brokers need it after


def test_a_config_change_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        return {
            o["metadata"]["name"]: json.dumps(
                o["spec"]["template"]["metadata"]["annotations"], sort_keys=True
            )
            for o in by_kind(objects(values), "Deployment")
        }

    before = checksums(VALUE_SETS["both"])
    changed = json.loads(json.dumps(VALUE_SETS["both"]))
    changed["broker"]["federation"]["heartbeat_ttl_s"] = 30
    changed["agent"]["config"]["heartbeat_s"] = 5
    after = checksums(changed)
    assert before["fb-fedbroker-broker"] != after["fb-fedbroker-broker"]
    assert before["fb-fedbroker-agent"] != after["fb-fedbroker-agent"]
