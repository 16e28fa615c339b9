"""The gRPC health service tells the truth: the database probe and the broker's role decide it.

A real grpc.aio server and client; real databases (a PostgreSQL database dropped under the
broker is one it cannot reach).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc
import psycopg
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from broker.health import HealthMonitor
from broker.role import ACTIVE, STANDBY, BrokerRole
from broker.server import SERVICE_NAMES, WRITER_SERVICES
from broker.store import Store

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
Scenario = Callable[[Callable[[str], Awaitable[int]], HealthMonitor, BrokerRole], Awaitable[None]]


def run(db_url: str, scenario: Scenario) -> None:
    async def main() -> None:
        store = Store(db_url)
        servicer = health.aio.HealthServicer()
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        role = BrokerRole()
        monitor = HealthMonitor(
            servicer, store, role, SERVICE_NAMES, writers=WRITER_SERVICES, interval_s=0.1, timeout_s=2
        )
        await monitor.check()  # as `fedbroker serve` does before it answers anyone
        task = asyncio.create_task(monitor.run())
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = health_pb2_grpc.HealthStub(channel)

        async def check(service: str = "") -> int:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            return int(response.status)

        try:
            await scenario(check, monitor, role)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await channel.close()
            await server.stop(None)
            store.close()

    asyncio.run(main())


async def eventually(check: Callable[[str], Awaitable[int]], status: int, service: str = "") -> None:
    for _ in range(100):
        if await check(service) == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{service or 'the server'} never became {status}")


def test_a_standby_broker_serves_reads_but_not_the_writers_services(tmp_path: object) -> None:
    async def scenario(
        check: Callable[[str], Awaitable[int]], monitor: HealthMonitor, role: BrokerRole
    ) -> None:
        await eventually(check, SERVING)
        await eventually(check, SERVING, SERVICE_NAMES[0])
        role.set(STANDBY)
        for writer in WRITER_SERVICES:  # a readiness probe on these sends writes to the active one
            await eventually(check, NOT_SERVING, writer)
        await eventually(check, SERVING)  # alive, and it answers reads from the database
        await eventually(check, SERVING, SERVICE_NAMES[1])  # SiteService
        role.set(ACTIVE)
        await eventually(check, SERVING, SERVICE_NAMES[0])

    run(f"sqlite:///{tmp_path}/broker.db", scenario)


def test_a_database_that_goes_away_makes_the_broker_not_serving(
    postgres_server: str, postgres_url: str
) -> None:
    async def scenario(
        check: Callable[[str], Awaitable[int]], monitor: HealthMonitor, role: BrokerRole
    ) -> None:
        await eventually(check, SERVING)
        assert monitor.db_reachable is True
        name = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await eventually(check, NOT_SERVING)
        assert monitor.db_reachable is False

    run(postgres_url, scenario)
