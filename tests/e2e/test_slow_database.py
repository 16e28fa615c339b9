"""A commit stuck in the database (a trigger that sleeps) stops neither heartbeats nor health.

Real processes on PostgreSQL: a broker with a 3 s heartbeat TTL and two agents reporting
every 0.5 s. One submit's INSERT sleeps 5 s, longer than the TTL. Meanwhile the gRPC health
service and SiteService must keep answering at once, and afterwards every site must still
be healthy: heartbeats were read (and stamped) while the commit waited.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import yaml
from fedbroker.v1 import types_pb2

from broker.client import Client
from broker.localfed import EXAMPLES, LocalFederation
from broker.spec import parse_spec

SLEEP_S = 5.0


def test_a_slow_commit_stops_neither_heartbeats_nor_health(tmp_path: Path, postgres_url: str) -> None:
    config = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    config["heartbeat_ttl_s"] = 3
    config_path = tmp_path / "federation.yaml"
    config_path.write_text(yaml.safe_dump(config))
    with LocalFederation(
        tmp_path, config=config_path, db_url=postgres_url, agent_overrides={"heartbeat_s": 0.5}
    ) as fed:
        fed.start_broker()
        for site in ("cyberport", "sandy-ridge"):
            fed.start_agent(site)
        fed.wait_healthy()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN "
                f"PERFORM pg_sleep({SLEEP_S}); RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.execute(
                "CREATE TRIGGER slow BEFORE INSERT ON workloads FOR EACH ROW "
                "WHEN (NEW.name = 'slow-commit') EXECUTE FUNCTION slow()"
            )
        spec = parse_spec(
            {
                "name": "slow-commit",
                "backend": "ray",
                "ray": {"entrypoint": "python -c pass"},
                "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
            }
        )
        answer: dict[str, object] = {}

        def submit() -> None:
            with Client(fed.endpoint, fed.tokens["lion-rock-ai"]) as tenant:
                answer["workload"] = tenant.submit(spec).workload

        submitter = threading.Thread(target=submit)
        started = time.monotonic()
        submitter.start()
        slowest, unhealthy = 0.0, set()
        with fed.client() as sre:
            while submitter.is_alive():
                t0 = time.monotonic()
                assert sre.serving(timeout=2.0)
                unhealthy |= {s.name for s in sre.sites() if not s.healthy}
                slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.2)
            submitter.join()
            elapsed = time.monotonic() - started
            assert elapsed >= SLEEP_S  # the commit really waited
            assert slowest < 1.0, f"health and ListSites took {slowest:.2f}s during the slow commit"
            assert unhealthy == set()
            time.sleep(1.0)  # the sweeps that queued behind the commit have run now
            assert all(s.healthy for s in sre.sites())
        assert getattr(answer["workload"], "state", None) == types_pb2.WORKLOAD_STATE_PLACED
