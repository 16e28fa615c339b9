"""SiteService: the federation's sites, their health and load."""

from __future__ import annotations

import grpc
from fedbroker.v1 import site_service_pb2, site_service_pb2_grpc

from broker.api import convert
from broker.api.status import unary
from broker.auth import Authenticator
from broker.engine import Broker
from broker.errors import PermissionDenied


class SiteService(site_service_pb2_grpc.SiteServiceServicer):
    def __init__(self, broker: Broker, auth: Authenticator) -> None:
        self.broker = broker
        self.auth = auth

    @unary
    async def ListSites(
        self, request: site_service_pb2.ListSitesRequest, context: grpc.aio.ServicerContext
    ) -> site_service_pb2.ListSitesResponse:
        who = self.auth.identify(context.invocation_metadata())
        if who.role == "agent":
            raise PermissionDenied(f"{who} cannot list sites")
        now = self.broker.clock()
        return site_service_pb2.ListSitesResponse(
            sites=[
                convert.site(state, self.broker.site_usage(name), now)
                for name, state in sorted(self.broker.sites.items())
            ]
        )
