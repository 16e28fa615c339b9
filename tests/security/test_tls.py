"""TLS and mutual TLS end to end, with real `fedbroker serve` and `fedbroker agent` processes
and a throwaway CA (tests/security/pki.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fedbroker.v1 import agent_service_pb2 as a
from fedbroker.v1 import agent_service_pb2_grpc as ag

from broker.client import Client, ClientError
from broker.listen import free_port
from broker.localfed import DEV_TOKENS, LocalFederation
from broker.relay.protocol import PEER_SAN_KEY
from broker.spec import parse_spec
from broker.tls import channel_credentials
from tests.security.pki import SANS, Pki

FAST = {"heartbeat_s": 0.5, "backend": {"time_scale": 0.0001}}
SPEC = {
    "name": "over-tls",
    "backend": "kubernetes",
    "kubernetes": {"image": "registry.example.hk/e2e:1"},
    "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
    "env": {"FEDBROKER_SIM_SECONDS": "0.2"},
}


def run_cli(
    endpoint: str, *args: str, token: str = DEV_TOKENS["lion-rock-ai"]
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDBROKER_ENDPOINT": endpoint, "FEDBROKER_TOKEN": token}
    env.pop("FEDBROKER_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env, timeout=60
    )


def start_agents(fed: LocalFederation, tls: dict[str, dict[str, str]]) -> None:
    for site, section in tls.items():
        fed.agent_overrides = {**FAST, "tls": section}
        fed.start_agent(site)


def wait_succeeded(client: Client, workload_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if client.get(workload_id).state == 4:  # SUCCEEDED
            return
        time.sleep(0.2)
    raise AssertionError(f"{workload_id} did not succeed: {client.get(workload_id)}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_fed(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """Server-authenticated TLS: agents and clients verify the broker against the test CA."""
    fed = LocalFederation(
        tmp_path_factory.mktemp("tls"), broker_args=pki.server_args(), client_tls=pki.client()
    )
    with fed:
        fed.start_broker()
        start_agents(fed, {site: {"ca_file": pki.path("ca.pem")} for site in ("cyberport", "sandy-ridge")})
        fed.wait_healthy()
        yield fed


def test_workload_runs_end_to_end_over_tls(tls_fed: LocalFederation) -> None:
    with tls_fed.client("lion-rock-ai") as client:
        submitted = client.submit(parse_spec(SPEC)).workload
        wait_succeeded(client, submitted.id)


def test_cli_verifies_the_broker_with_its_ca_file(tls_fed: LocalFederation, pki: Pki) -> None:
    ok = run_cli(tls_fed.endpoint, "list", "-o", "json", "--ca-file", pki.path("ca.pem"))
    assert ok.returncode == 0, ok.stderr

    wrong = run_cli(tls_fed.endpoint, "list", "--ca-file", pki.path("other-ca.pem"))
    assert wrong.returncode == 3
    assert "not signed by a CA this client trusts" in wrong.stderr and "Traceback" not in wrong.stderr

    # Plaintext to a TLS broker (loopback: plaintext is the default without a CA).
    plain = run_cli(tls_fed.endpoint, "list")
    assert plain.returncode == 3 and "Traceback" not in plain.stderr


def test_tls_file_problems_are_bad_input_before_any_call(tls_fed: LocalFederation, pki: Pki) -> None:
    missing = run_cli(tls_fed.endpoint, "list", "--ca-file", pki.path("nope.pem"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    env_expired = {
        "FEDBROKER_CERT_FILE": pki.path("expired.pem"),
        "FEDBROKER_KEY_FILE": pki.path("expired.key"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env_expired.items():
            mp.setenv(key, value)
        expired = run_cli(tls_fed.endpoint, "list", "--ca-file", pki.path("ca.pem"))
    assert expired.returncode == 2 and "expired on 2021-01-01" in expired.stderr


def test_endpoint_list_dials_each_broker_with_tls_and_the_certificates_name(
    tls_fed: LocalFederation, pki: Pki
) -> None:
    # Names, not addresses: the list is resolved to addresses, and each is still checked
    # against the name the certificate carries ("localhost").
    dead = f"localhost:{free_port()}"
    endpoints = f"{dead},localhost:{tls_fed.port}"
    with Client(endpoints, DEV_TOKENS["lion-rock-ai"], tls=pki.client()) as client:
        assert client.list() is not None
    with (
        Client(endpoints, DEV_TOKENS["lion-rock-ai"], tls=pki.client(ca="other-ca.pem"), timeout=3) as client,
        pytest.raises(ClientError) as refused,
    ):
        client.list()
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("fronts", [0, 1], ids=["one-process", "behind-a-front"])
def test_certificate_is_reloaded_when_its_files_change(pki: Pki, tmp_path: Path, fronts: int) -> None:
    """A renewed certificate, signed by another CA, is served from the next handshake: on a
    file change, and on SIGHUP (which the broker passes on to its fronts, where TLS ends); a
    broken file keeps the last good one."""
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki.path("broker.pem"), live / "broker.pem")
    shutil.copy(pki.path("broker.key"), live / "broker.key")
    renewed = Pki.make(tmp_path / "renewed")
    fed = LocalFederation(
        tmp_path / "fed",
        broker_args=[
            *("--tls-cert", str(live / "broker.pem"), "--tls-key", str(live / "broker.key")),
            *("--fronts", str(fronts)),
        ],
        client_tls=pki.client(),
    )
    with fed:
        fed.start_broker()
        old, new = pki.client(), renewed.client()
        assert Client(fed.endpoint, "", tls=old).serving()
        shutil.copy(renewed.root / "broker.key", live / "broker.key")
        shutil.copy(renewed.root / "broker.pem", live / "broker.pem")
        assert Client(fed.endpoint, "", tls=new).serving(timeout=3)
        assert not Client(fed.endpoint, "", tls=old).serving(timeout=3)

        (live / "broker.pem").write_text("not a certificate")  # a botched renewal
        fed.processes["broker"].send_signal(signal.SIGHUP)
        assert Client(fed.endpoint, "", tls=new).serving(timeout=3)
        assert "cannot be used; keeping the current certificate" in fed.log_tail("broker", 50)

        # Mended; then SIGHUP with no file changed: only the signal (passed on to the fronts,
        # behind them) makes the next handshake read the files again.
        shutil.copy(renewed.root / "broker.pem", live / "broker.pem")
        assert Client(fed.endpoint, "", tls=new).serving(timeout=3)
        reloads = fed.log_tail("broker", 10_000).count("TLS certificate reloaded")
        fed.processes["broker"].send_signal(signal.SIGHUP)

        def reloaded_again() -> bool:
            served = Client(fed.endpoint, "", tls=new).serving(timeout=3)
            return served and fed.log_tail("broker", 10_000).count("TLS certificate reloaded") > reloads

        fed.wait(reloaded_again, 10, "a reload on SIGHUP")


@pytest.fixture(scope="module", params=[0, 1], ids=["one-process", "behind-a-front"])
def mtls_fed(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalFederation]:
    """Mutual TLS: every caller presents a certificate; each site's agent one naming its SAN.
    Behind a front (serve --fronts) TLS ends in the front, which passes the names along."""
    fed = LocalFederation(
        tmp_path_factory.mktemp("mtls"),
        config=pki.federation(),
        broker_args=[*pki.server_args(mutual=True), "--fronts", str(request.param)],
        client_tls=pki.client("tenant"),
    )
    with fed:
        fed.start_broker()
        start_agents(fed, {site: pki.agent_tls(site) for site in ("cyberport", "sandy-ridge")})
        fed.wait_healthy()
        yield fed


def test_workload_runs_end_to_end_over_mutual_tls(mtls_fed: LocalFederation) -> None:
    with mtls_fed.client("lion-rock-ai") as client:
        submitted = client.submit(parse_spec(SPEC)).workload
        wait_succeeded(client, submitted.id)


def test_no_client_certificate_is_refused_with_a_clear_message(mtls_fed: LocalFederation, pki: Pki) -> None:
    refused = run_cli(mtls_fed.endpoint, "list", "--ca-file", pki.path("ca.pem"))
    assert refused.returncode == 3
    assert "may require a client certificate" in refused.stderr


def _connect(
    endpoint: str, tls: object, token: str, site: str, extra: tuple[tuple[str, str], ...] = ()
) -> grpc.RpcError:
    credentials = channel_credentials(tls)  # type: ignore[arg-type]
    with grpc.secure_channel(endpoint, credentials) as channel:
        stream = ag.AgentServiceStub(channel).Connect(
            iter([a.AgentMessage(hello=a.Hello(site=site, agent_id="intruder"))]),
            metadata=(("authorization", f"Bearer {token}"), *extra),
            timeout=5,
        )
        with pytest.raises(grpc.RpcError) as refused:
            next(stream)
    return refused.value


def test_an_agent_certificate_for_one_site_cannot_speak_for_another(
    mtls_fed: LocalFederation, pki: Pki
) -> None:
    # sandy-ridge's certificate with cyberport's token: refused, whatever the token says.
    error = _connect(mtls_fed.endpoint, pki.client("agent-sandy-ridge"), DEV_TOKENS["cyberport"], "cyberport")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "site cyberport requires a client certificate naming 'cyberport.agents" in error.details()
    # A tenant's certificate (verified, but no site's) with an agent token: refused too.
    error = _connect(mtls_fed.endpoint, pki.client("tenant"), DEV_TOKENS["sandy-ridge"], "sandy-ridge")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_caller_cannot_claim_certificate_names_in_metadata(mtls_fed: LocalFederation, pki: Pki) -> None:
    """A front passes the verified names on in PEER_SAN_KEY; a caller's own value for that key is
    dropped (behind a front) or never read (one process): the tenant's certificate stays a tenant's."""
    claim = ((PEER_SAN_KEY, SANS["cyberport"]),)
    error = _connect(mtls_fed.endpoint, pki.client("tenant"), DEV_TOKENS["cyberport"], "cyberport", claim)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "site cyberport requires a client certificate naming 'cyberport.agents" in error.details()


def test_wrong_ca_and_expired_agent_certificates_are_refused(mtls_fed: LocalFederation, pki: Pki) -> None:
    # The server refuses both in the handshake (the client-side check is bypassed here).
    for name in ("stranger", "expired"):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(pki.path("ca.pem")).read_bytes(),
            private_key=Path(pki.path(f"{name}.key")).read_bytes(),
            certificate_chain=Path(pki.path(f"{name}.pem")).read_bytes(),
        )
        with grpc.secure_channel(mtls_fed.endpoint, credentials) as channel:
            stub = ag.AgentServiceStub(channel)
            stream = stub.Connect(
                iter([a.AgentMessage(hello=a.Hello(site="cyberport", agent_id="x"))]),
                metadata=(("authorization", f"Bearer {DEV_TOKENS['cyberport']}"),),
                timeout=5,
            )
            with pytest.raises(grpc.RpcError) as refused:
                next(stream)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_agent_with_another_sites_certificate_exits_refused(mtls_fed: LocalFederation, pki: Pki) -> None:
    """The real agent process: sandy-ridge's certificate for cyberport exits 1 with the reason."""
    config = mtls_fed.workdir / "agent-cyberport.yaml"
    env = {**os.environ, "FEDBROKER_AGENT_TOKEN": DEV_TOKENS["cyberport"]}
    args = [
        sys.executable, "-m", "broker", "agent", "--config", str(config),
        "--cert-file", pki.path("agent-sandy-ridge.pem"), "--key-file", pki.path("agent-sandy-ridge.key"),
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "requires a client certificate naming" in result.stderr

    expired = [*args[:-4], "--cert-file", pki.path("expired.pem"), "--key-file", pki.path("expired.key")]
    result = subprocess.run(expired, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "expired on 2021-01-01" in result.stderr


def test_plaintext_on_a_non_loopback_address_is_warned(tmp_path: Path) -> None:
    fed = LocalFederation(tmp_path)
    fed.broker_endpoints["broker"] = f"0.0.0.0:{fed.port}"
    with fed:
        fed._spawn(
            "broker",
            ["serve", "--config", str(fed.config), "--db", fed.db_url, "--listen", f"0.0.0.0:{fed.port}"],
        )
        fed.wait(lambda: Client(fed.endpoint, "").serving(), 30, "the broker to serve")
        assert "listening in PLAINTEXT on 0.0.0.0" in fed.log_tail("broker", 40)
