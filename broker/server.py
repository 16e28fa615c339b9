"""`fedbroker serve`: wire the broker together and run it on a grpc.aio server."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from fedbroker.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    operator_service_pb2,
    operator_service_pb2_grpc,
    relay_service_pb2_grpc,
    site_service_pb2,
    site_service_pb2_grpc,
    usage_service_pb2,
    usage_service_pb2_grpc,
    workload_service_pb2,
    workload_service_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import metrics
from sqlalchemy.exc import SQLAlchemyError

from broker.api import limits
from broker.api.agent_service import AgentService
from broker.api.malformed import MalformedRequests
from broker.api.operator_service import OperatorService
from broker.api.site_service import SiteService
from broker.api.usage_service import UsageService
from broker.api.workload_service import WorkloadService
from broker.auth import Authenticator
from broker.config import FederationConfig
from broker.engine.engine import Engine
from broker.engine.observer import CycleObserver, Observers
from broker.gc_tuning import tune_gc
from broker.health import HealthMonitor
from broker.listen import why_not_listen
from broker.observability.broker_metrics import BrokerMetrics
from broker.observability.state_log import StateChangeLog
from broker.relay import protocol
from broker.relay.fronts import Fronts, FrontsError
from broker.relay.service import HandlerRecorder, RelayService
from broker.role import STANDBY, BrokerRole
from broker.store import Store
from broker.store.lease import Lease
from broker.store.schema import SchemaError
from broker.store.urls import redact, scrub
from broker.tls import CertificateReloader, ServerTls, is_loopback

log = logging.getLogger("fedbroker.server")

SERVICE_NAMES = (
    workload_service_pb2.DESCRIPTOR.services_by_name["WorkloadService"].full_name,
    site_service_pb2.DESCRIPTOR.services_by_name["SiteService"].full_name,
    agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    usage_service_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
    operator_service_pb2.DESCRIPTOR.services_by_name["OperatorService"].full_name,
)


# What only the active broker serves; a standby answers the others' reads from the database.
WRITER_SERVICES = (SERVICE_NAMES[0], SERVICE_NAMES[2], SERVICE_NAMES[4])  # workloads, agents, operator


class ServeError(Exception):
    """The broker cannot start: a taken port, an unreachable database."""


async def serve(
    config: FederationConfig,
    db_url: str,
    listen: str,
    *,
    metrics_enabled: bool = False,
    lease_ttl_s: float = 3.0,
    advertise: str | None = None,
    tls: ServerTls | None = None,
    config_path: Path | None = None,
    fronts: int = 0,
    log_level: str = "INFO",
    log_format: str = "text",
) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully. `metrics_enabled`: a MeterProvider is
    installed. The broker schedules while it holds the database's lease (`lease_ttl_s`), else
    waits on standby; `advertise`: the address standbys name as the active one's. `tls`: the
    certificate (re-read when its files change, or on SIGHUP); None: plaintext. `fronts`: that
    many front processes serve `listen` and relay to this one (broker/relay); 0: this one does."""
    try:
        # SQLite serves one host: its broker upgrades it. On PostgreSQL an operator runs
        # `fedbroker db upgrade` once, not each of several brokers racing at startup.
        store = Store(db_url, auto_upgrade=db_url.startswith("sqlite"))
    except SchemaError as error:
        raise ServeError(str(error)) from None
    except (SQLAlchemyError, ValueError, ImportError) as error:
        why = scrub(str(error), db_url)  # SQLAlchemy may quote the URL, password and all
        raise ServeError(f"cannot open the database {redact(db_url)!r}: {why}") from None
    broker_id = f"broker-{uuid.uuid4().hex[:8]}"
    # Always a lease, SQLite included: a second broker on the same database waits on standby.
    lease = Lease(store, broker_id, address=advertise or listen, ttl_s=lease_ttl_s)
    engine = Engine(config, store, broker_id=broker_id, lease=lease, role=BrokerRole(STANDBY))
    try:
        await engine.start()
    except SQLAlchemyError as error:
        why = scrub(str(error), db_url)
        raise ServeError(f"cannot read the database {store.engine.url!r}: {why}") from None
    tune_gc()
    auth = Authenticator(config)
    engine.config_path = config_path  # SIGHUP and `fedbroker config reload` read it again
    engine.config_listeners.append(auth.reload)
    # gRPC sets SO_REUSEPORT by default, which lets a second broker bind the same port
    # and split the clients between the two; a taken port must be an error instead.
    # Behind fronts the public limits are theirs to keep; a relay message carries many calls.
    sizes = protocol.RELAY_OPTIONS if fronts else limits.SERVER_OPTIONS
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *sizes], interceptors=[MalformedRequests()])
    # Behind fronts the services are also recorded, for the relay to call their handlers.
    services = HandlerRecorder(server) if fronts else server
    workload_service_pb2_grpc.add_WorkloadServiceServicer_to_server(WorkloadService(engine, auth), services)
    site_service_pb2_grpc.add_SiteServiceServicer_to_server(SiteService(engine, auth), services)
    agents = AgentService(engine, auth, behind_fronts=bool(fronts))
    engine.config_listeners.append(agents.end_revoked)  # after auth.reload: a removed token's stream ends
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(agents, services)
    usage_service_pb2_grpc.add_UsageServiceServicer_to_server(UsageService(engine, auth), services)
    operator_service_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorService(engine, auth), services)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, services)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    problem = why_not_listen(listen)  # before gRPC tries: its error says less, after a core log line
    if problem is not None:
        await engine.stop()
        raise ServeError(problem)
    front_processes: Fronts | None = None
    reloader = CertificateReloader(tls) if tls is not None and not fronts else None
    address = listen
    if isinstance(services, HandlerRecorder):  # the fronts take `listen`; this process, their socket
        relay_service_pb2_grpc.add_RelayServiceServicer_to_server(RelayService(services.handlers), server)
        front_processes = Fronts(fronts, listen, tls, log_level=log_level, log_format=log_format)
        address = front_processes.upstream
    try:
        if reloader is not None:
            port = server.add_secure_port(address, reloader.credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        if front_processes is not None:
            await front_processes.stop()  # removes the socket's folder
        await engine.stop()
        raise ServeError(f"cannot listen on {address}: address in use or not valid") from None
    await server.start()
    if front_processes is not None:
        port = front_processes.port
        try:
            await front_processes.start()
        except FrontsError as error:
            await server.stop(grace=None)
            await engine.stop()
            raise ServeError(f"front process: {error}") from None
    role = engine.role  # the lease drives it; health and the role gauge follow
    monitor = HealthMonitor(health_servicer, store, role, SERVICE_NAMES, writers=WRITER_SERVICES)
    await monitor.check()
    health_task = asyncio.create_task(monitor.run(), name="fedbroker health")
    engine.observer = observers(engine, role, monitor, metrics_enabled)
    host = listen.rsplit(":", 1)[0]
    mode = "plaintext" if tls is None else ("mutual TLS" if tls.client_ca_file else "TLS")
    through = f", through {fronts} front processes" if fronts else ""
    log.info(
        "broker %s listening on %s:%d (%s%s; store %s)",
        engine.broker_id,
        host,
        port,
        mode,
        through,
        store.engine.url,
    )
    if tls is None and not is_loopback(host):
        log.warning(
            "listening in PLAINTEXT on %s, a non-loopback address: tokens cross the network readable; "
            "serve with --tls-cert and --tls-key",
            host,
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    also = front_processes.hangup if front_processes is not None else None
    reload_on_hangup(loop, engine, reloader.request_reload if reloader is not None else also)
    await stop.wait()
    log.info("stopping")
    health_task.cancel()
    await health_servicer.enter_graceful_shutdown()
    engine.hub.close()  # ends the watch streams (UNAVAILABLE: clients reconnect), not cancelled in stop
    await engine.stop()  # ends the agent streams, so the grace period is not waited out
    if front_processes is not None:
        await front_processes.stop()  # their streams have ended; their unary calls get answers
    await server.stop(grace=2)
    store.close()


def reload_on_hangup(
    loop: asyncio.AbstractEventLoop, engine: Engine, also: Callable[[], None] | None
) -> None:
    """SIGHUP: the federation file is read again (broker/engine/reload.py), and `also` runs
    (the TLS certificate's re-read)."""
    pending: set[asyncio.Task[object]] = set()

    def hangup() -> None:
        if also is not None:
            also()
        task = asyncio.ensure_future(engine.reload_config("SIGHUP"))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)


def observers(
    engine: Engine, role: BrokerRole, monitor: HealthMonitor, metrics_enabled: bool
) -> CycleObserver:
    """State-change logs always; metrics only when a MeterProvider is installed (else they cost nothing)."""
    if not metrics_enabled:
        return StateChangeLog()
    meter = metrics.get_meter("fedbroker.broker")
    broker_metrics = BrokerMetrics.for_engine(meter, engine, role, lambda: monitor.db_reachable)
    return Observers(StateChangeLog(), broker_metrics)
