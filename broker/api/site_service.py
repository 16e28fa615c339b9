"""SiteService: the federation's sites, their health and load (tenants and operators)."""

from __future__ import annotations

import grpc
from fedbroker.v1 import site_service_pb2, site_service_pb2_grpc

from broker.api import convert
from broker.api.status import unary
from broker.auth import Authenticator
from broker.engine.engine import Engine, SiteStatus
from broker.errors import PermissionDenied
from broker.placement import SiteUsage


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
        return site_service_pb2.ListSitesResponse(sites=[self._site(s) for s in self.engine.sites()])

    def _site(self, status: SiteStatus) -> site_service_pb2.Site:
        """The site, broken down by GPU model with its price (a model it prices but has none of: 0 GPUs)."""
        message = convert.site(status)
        config = self.engine.config.site(status.name)
        prices = dict(config.gpu_prices_hkd_per_hour) if config is not None else {}
        by_model = self.engine.state.core.site_usage_by_model(status.name)
        for model in sorted(set(by_model) | set(prices)):
            usage = by_model.get(model, SiteUsage(0, 0, 0, 0))
            message.gpu_models.add(
                gpu_model=model,
                gpus_total=usage.gpus_total,
                gpus_allocated=usage.gpus_allocated,
                gpus_reserved=usage.gpus_reserved,
                gpus_free=usage.gpus_free,
                price_hkd_per_gpu_hour=prices.get(model, 0.0),
            )
        return message
