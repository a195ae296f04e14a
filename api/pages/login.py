"""``/login``: a browser gives the API token once, and keeps it in an HttpOnly cookie
(only when ``ORDERS_API_TOKEN`` is set; programs send it as a bearer token instead)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import LOGIN_COOKIE, settings
from api.pages.dashboard import TEMPLATES
from bootstrap import Settings

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return TEMPLATES.TemplateResponse(request, "login.html", {"wrong": False})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=512)],
    config: Annotated[Settings, Depends(settings)],
) -> Response:
    expected = config.api_token or ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return TEMPLATES.TemplateResponse(request, "login.html", {"wrong": True}, status_code=401)
    page = RedirectResponse("/", status_code=303)
    page.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict")
    return page
