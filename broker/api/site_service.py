"""SiteService: the federation's sites, their health and load (tenants and operators)."""

from __future__ import annotations

import grpc
from fedbroker.v1 import site_service_pb2, site_service_pb2_grpc

from broker.api import convert
from broker.api.status import unary
from broker.auth import Authenticator
from broker.engine.engine import Engine
from broker.errors import PermissionDenied


class SiteService(site_service_pb2_grpc.SiteServiceServicer):
    def __init__(self, engine: Engine, auth: Authenticator) -> None:
        self.engine = engine
        self.auth = auth

    @unary
    async def ListSites(
        self, request: site_service_pb2.ListSitesRequest, context: grpc.aio.ServicerContext
    ) -> site_service_pb2.ListSitesResponse:
        who = self.auth.identify(context.invocation_metadata())
        if who.role == "agent":
            raise PermissionDenied(f"{who} cannot list sites")
        return site_service_pb2.ListSitesResponse(sites=[convert.site(s) for s in self.engine.sites()])
