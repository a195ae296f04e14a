"""Errors as JSON: ``{"error": {"code": ..., "message": ...}}``, with the HTTP status
that says whose move it is (4xx: the caller's, 503: come back later)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from store.errors import is_unreachable


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def body(code: str, message: str, **more: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **more}}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            body(error.code, error.message), status_code=error.status, headers=error.headers
        )

    @app.exception_handler(Exception)
    async def _database_away(_request: Request, error: Exception) -> JSONResponse:
        if is_unreachable(error):
            message = "the database cannot be reached now; try again"
            return JSONResponse(
                body("DatabaseUnavailable", message), status_code=503, headers={"Retry-After": "1"}
            )
        return JSONResponse(body("InternalError", "the server failed; see its log"), 500)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return JSONResponse(body("BadParameter", message), status_code=400)
