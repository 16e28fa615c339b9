"""Token rotation without a lockout (issue 15): a token field may hold a list of digests, so an
operator adds the new digest, rotates the secret at its holder, then removes the old one, each
step a live config reload. Real broker and agent processes."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from fedbroker.v1 import agent_service_pb2 as a
from fedbroker.v1 import agent_service_pb2_grpc as ag

from broker.auth import sha256_hex
from broker.client import Client, ClientError
from broker.localfed import DEV_TOKENS, LocalFederation
from broker.spec import WorkloadSpec, parse_spec
from tests.security.harness import bounded_federation

NEW_AGENT = "rotated-agent-cyberport"
NEW_TENANT = "rotated-tenant-lion-rock-ai"


def spec() -> WorkloadSpec:
    return parse_spec(
        {
            "name": "rotation",
            "backend": "ray",
            "ray": {"entrypoint": "python x.py"},
            "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
        }
    )


def write_tokens(config: Path, site: list[str], tenant: list[str]) -> None:
    """cyberport's agent digests and lion-rock-ai's tenant digests, by token."""
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    for entry in data["sites"]:
        if entry["name"] == "cyberport":
            entry["agent_token_sha256"] = [sha256_hex(t) for t in site]
    for entry in data["tenants"]:
        if entry["name"] == "lion-rock-ai":
            entry["token_sha256"] = [sha256_hex(t) for t in tenant]
    config.write_text(yaml.safe_dump(data))


def tenant_code(fed: LocalFederation, token: str) -> grpc.StatusCode:
    try:
        with Client(fed.endpoint, token) as client:
            client.list(limit=1)
    except ClientError as error:
        return error.code
    return grpc.StatusCode.OK


def agent_code(fed: LocalFederation, token: str) -> grpc.StatusCode:
    """What Connect answers a Hello for cyberport with this token (a probe, agent id of its own)."""
    hello = a.AgentMessage(hello=a.Hello(site="cyberport", agent_id="rotation-probe"))
    with grpc.insecure_channel(fed.endpoint) as channel:
        stream = ag.AgentServiceStub(channel).Connect(
            iter([hello]), metadata=(("authorization", f"Bearer {token}"),), timeout=5
        )
        try:
            next(iter(stream))
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def healthy(fed: LocalFederation, site: str) -> bool:
    with fed.client() as client:
        return any(s.name == site and s.healthy for s in client.sites())


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def test_rotation_overlap_then_old_refused(tmp_path: Path) -> None:
    config = bounded_federation(tmp_path)
    old_agent, old_tenant = DEV_TOKENS["cyberport"], DEV_TOKENS["lion-rock-ai"]
    write_tokens(config, [old_agent], [old_tenant])  # a one-item list reads as the plain string did
    fed = LocalFederation(tmp_path, config=config, agent_overrides={"heartbeat_s": 0.5})
    with fed:
        fed.start_broker()
        fed.start_agent("cyberport", token=old_agent)
        fed.start_agent("sandy-ridge")
        fed.wait_healthy()

        # 1. Add the new digests beside the old: both tokens work.
        write_tokens(config, [old_agent, NEW_AGENT], [old_tenant, NEW_TENANT])
        with fed.client() as operator:
            result = operator.reload_config()
        assert result.reloaded, result.problems
        assert any("cyberport" in line and "agent_token_sha256" in line for line in result.changes)
        assert tenant_code(fed, old_tenant) == grpc.StatusCode.OK
        assert tenant_code(fed, NEW_TENANT) == grpc.StatusCode.OK
        assert healthy(fed, "cyberport")  # the agent on the old token was never cut off

        # 2. Rotate the secret at the agent: it reconnects with the new token.
        fed.start_agent("cyberport", token=NEW_AGENT)
        wait_for(lambda: healthy(fed, "cyberport"), "cyberport healthy on its new token")

        # 3. Remove the old digests (SIGHUP this time): the old tokens are refused, the new work.
        write_tokens(config, [NEW_AGENT], [NEW_TENANT])
        fed.processes["broker"].send_signal(signal.SIGHUP)
        wait_for(lambda: tenant_code(fed, old_tenant) == grpc.StatusCode.UNAUTHENTICATED, "old token refused")
        assert tenant_code(fed, NEW_TENANT) == grpc.StatusCode.OK
        assert agent_code(fed, old_agent) == grpc.StatusCode.UNAUTHENTICATED
        time.sleep(1.5)  # three heartbeats on the new token, after the reload
        assert healthy(fed, "cyberport")


def test_reload_that_removes_a_token_ends_its_open_streams(tmp_path: Path) -> None:
    """An agent still on a removed token does not keep speaking for its site until it reconnects:
    its stream ends at the reload, and its reconnection is refused (the agent stops: exit 1). A
    tenant's watch opened with a removed token gets no more events (UNAUTHENTICATED)."""
    config = bounded_federation(tmp_path)
    fed = LocalFederation(tmp_path, config=config, agent_overrides={"heartbeat_s": 0.5})
    with fed:
        fed.start_broker()
        fed.start_agent("cyberport")
        fed.wait_healthy(["cyberport"])
        old_tenant = Client(fed.endpoint, DEV_TOKENS["lion-rock-ai"])
        old_tenant.submit(spec())
        watch = old_tenant.watch_all(after_seq=0, timeout=30)
        next(watch)  # open, on the old token
        write_tokens(config, [NEW_AGENT], [NEW_TENANT])
        with fed.client() as operator:
            assert operator.reload_config().reloaded
        with Client(fed.endpoint, NEW_TENANT) as tenant:
            after = tenant.submit(spec()).workload.id  # events the old token's watch would be sent
        seen = []
        with pytest.raises(ClientError) as error:
            for event in watch:  # what was sent before the reload, then the refusal
                seen.append(event.workload_id)
        assert after not in seen
        assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "removed from the config" in error.value.message
        old_tenant.close()
        agent = fed.processes["agent-cyberport"]
        try:
            agent.wait(20)
        except Exception:
            pytest.fail(f"the agent on a removed token kept running\n{fed.log_tail('broker')}")
        assert agent.returncode == 1
        assert "its token was removed from the config" in fed.log_tail("broker", 200)
        assert "UNAUTHENTICATED" in fed.log_tail("agent-cyberport", 50)


def test_a_token_field_takes_a_digest_or_a_list_of_them(tmp_path: Path) -> None:
    from broker.auth import Authenticator
    from broker.config import load_federation
    from broker.validation import InvalidInput

    config = bounded_federation(tmp_path)
    write_tokens(config, ["one", "two"], ["three"])
    auth = Authenticator(load_federation(config))
    for token, who in (
        ("one", "agent cyberport"),
        ("two", "agent cyberport"),
        ("three", "tenant lion-rock-ai"),
    ):
        assert str(auth.identify([("authorization", f"Bearer {token}")])) == who

    data = yaml.safe_load(config.read_text())
    cases = [
        ([], "sites[0].agent_token_sha256: must be a SHA-256 digest or a list of 1 to 8 of them"),
        ([sha256_hex("x")] * 9, "sites[0].agent_token_sha256: must be a SHA-256 digest or a list of 1 to 8"),
        ([sha256_hex("x"), "abc"], "sites[0].agent_token_sha256: item 1: must be a SHA-256 digest"),
        # the same token for a site and a tenant would let one act as the other
        ([sha256_hex("x"), sha256_hex("three")], "same token digest as"),
    ]
    for value, expected in cases:
        data["sites"][0]["agent_token_sha256"] = value
        config.write_text(yaml.safe_dump(data))
        with pytest.raises(InvalidInput) as error:
            load_federation(config)
        assert any(expected in problem for problem in error.value.problems), error.value.problems
