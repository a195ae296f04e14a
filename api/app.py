"""The one app factory: ``uvicorn --factory api.app:create_app`` (``orders serve``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path

from anyio import to_thread
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from api import errors, metrics
from api.deps import authorized
from api.metrics import RequestMetrics
from api.pages import dashboard, login
from api.reading import Answers
from api.routes import commands, health, orders, stats
from bootstrap import Settings, bootstrap
from bootstrap.metrics import exported
from commands.client import CommandClient


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built once per server process, when it starts, not at import.
        app.state.metrics, app.state.registry = exported(lambda: app.state.services)
        app.state.services = bootstrap(settings, app.state.metrics)
        # Queries run in threads; more threads than database connections would only
        # queue for the pool, and more than a few fight over the interpreter.
        to_thread.current_default_thread_limiter().total_tokens = settings.db_pool_size
        app.state.answers = Answers(app.state.services)
        app.state.client = (
            None
            if settings.embedded
            else CommandClient(
                settings.broker_url,
                settings.result_backend,
                publish_timeout=settings.publish_timeout,
            )
        )
        try:
            yield
        finally:
            if app.state.client is not None:
                app.state.client.close()
            app.state.services.close()

    app = FastAPI(
        title="orders",
        version=version("celery-orders"),
        description="Send commands and read what became of them (docs/wire-protocol.md).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    for router in (commands.router, orders.router, stats.router, dashboard.router):
        app.include_router(router, dependencies=[Depends(authorized)])
    app.include_router(login.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.add_middleware(RequestMetrics)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
