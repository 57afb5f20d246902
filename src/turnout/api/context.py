"""What every API handler reaches: the manager service the application was made for."""

from __future__ import annotations

from aiohttp import web

from turnout.manager.service import ManagerService

SERVICE: web.AppKey[ManagerService] = web.AppKey("service", ManagerService)


def service_of(request: web.Request) -> ManagerService:
    return request.app[SERVICE]
