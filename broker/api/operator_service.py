"""OperatorService: switches for the whole federation, for operators only."""

from __future__ import annotations

import grpc
from fedbroker.v1 import operator_service_pb2, operator_service_pb2_grpc

from broker.api.status import unary
from broker.auth import Authenticator
from broker.engine import commands as c
from broker.engine.engine import Engine
from broker.errors import PermissionDenied


class OperatorService(operator_service_pb2_grpc.OperatorServiceServicer):
    def __init__(self, engine: Engine, auth: Authenticator) -> None:
        self.engine = engine
        self.auth = auth

    @unary
    async def SetPlacementPaused(
        self, request: operator_service_pb2.SetPlacementPausedRequest, context: grpc.aio.ServicerContext
    ) -> operator_service_pb2.PlacementStatus:
        who = self.auth.identify(context.invocation_metadata())
        if who.role != "operator":
            raise PermissionDenied(f"{who} cannot pause or resume placement; use an operator token")
        paused = await self.engine.call(c.SetPaused(request.paused, str(who)))
        return operator_service_pb2.PlacementStatus(paused=paused)

    @unary
    async def ReloadConfig(
        self, request: operator_service_pb2.ReloadConfigRequest, context: grpc.aio.ServicerContext
    ) -> operator_service_pb2.ReloadConfigResponse:
        who = self.auth.identify(context.invocation_metadata())
        if who.role != "operator":
            raise PermissionDenied(f"{who} cannot reload the config; use an operator token")
        result = await self.engine.reload_config(str(who))
        return operator_service_pb2.ReloadConfigResponse(
            reloaded=result.reloaded, path=result.path, problems=result.problems, changes=result.changes
        )
