"""What routes need, handed out per request: the one seam between FastAPI and the
system (the process's services are built once, by the app's lifespan)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from fastapi import Request
from sqlalchemy import Connection

from api.errors import ApiError
from api.reading import Answers
from bootstrap import Services, Settings
from commands.client import CommandClient


async def settings(request: Request) -> Settings:
    found: Settings = request.app.state.settings
    return found


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def command_client(request: Request) -> CommandClient:
    client: CommandClient | None = request.app.state.client
    if client is None:
        raise ApiError(
            503,
            "NoBroker",
            "this server has no broker to send commands to: set ORDERS_BROKER_URL "
            "to the Redis the workers read",
        )
    return client


async def answers(request: Request) -> Answers:
    """The process's read answers (``api.reading``)."""
    found: Answers = request.app.state.answers
    return found


def read_connection(request: Request) -> Iterator[Connection]:
    """A connection to the read models' database (``ORDERS_READ_DATABASE_URL``)."""
    found: Services = request.app.state.services
    with found.read_engine.connect() as conn:
        yield conn


LOGIN_COOKIE = "orders_login"


async def holds_token(request: Request) -> bool:
    """Whether the request may see what the server holds: no ``ORDERS_API_TOKEN`` is
    set, or it carries it, as a bearer token (programs) or in the cookie the login page
    sets (a browser on the dashboard)."""
    token = (await settings(request)).api_token
    if token is None:
        return True
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        credential = request.cookies.get(LOGIN_COOKIE, "")
    return hmac.compare_digest(credential.encode(), token.encode())


async def authorized(request: Request) -> None:
    """With ``ORDERS_API_TOKEN`` set, every request carries it (``holds_token``)."""
    if not await holds_token(request):
        if request.url.path.startswith("/api") is False:
            raise ApiError(303, "LoginFirst", "log in first", {"Location": "/login"})
        raise ApiError(
            401,
            "Unauthorized",
            "this API needs 'Authorization: Bearer <ORDERS_API_TOKEN>'",
            {"WWW-Authenticate": "Bearer"},
        )
