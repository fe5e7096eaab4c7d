"""Rendering /ops pages: the templates, their filters, the headers every page carries, and the
page a refused request gets (401 sign-in, 403, 404)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from sensor_billing.errors import (
    OpsCsrfError,
    OpsNotSignedInError,
    OpsRequestError,
    OrganizationNotFoundError,
)
from sensor_billing.formatting import format_age

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

# No scripts at all; styles only from the page itself; forms only to this site; never framed.
# Pages hold billing data: no caching, no referrer to elsewhere.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float | timedelta | None) -> str:
    if seconds is None:
        return "-"
    return format_age(seconds.total_seconds() if isinstance(seconds, timedelta) else seconds)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


TEMPLATES.env.filters["time"] = _time
TEMPLATES.env.filters["age"] = _age
TEMPLATES.env.filters["percent"] = _percent


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def wants_page(request: Request) -> bool:
    """A browser (HTML) rather than a script (bearer token, or not asking for HTML)."""
    if "authorization" in request.headers:
        return False
    return "text/html" in request.headers.get("accept", "")


def login_page(
    request: Request, *, next_path: str, message: str | None, status_code: int
) -> HTMLResponse:
    return render(
        request,
        "login.html",
        {"next_path": next_path, "message": message, "signed_in": False},
        status_code,
    )


def error_response(request: Request, error: OpsRequestError) -> Response:
    """The answer to a refused /ops request: a page for a browser, a short JSON for a script;
    never any data beyond the refusal."""
    if isinstance(error, OpsNotSignedInError):
        status = 401
    elif isinstance(error, OpsCsrfError):
        status = 403
    elif isinstance(error, OrganizationNotFoundError):
        status = 404
    else:
        status = 400
    headers = {"WWW-Authenticate": 'Bearer realm="ops"'} if status == 401 else {}
    if not wants_page(request):
        return JSONResponse(
            {"error": {"code": error.code, "message": str(error)}},
            status_code=status,
            headers={**headers, **SECURITY_HEADERS},
        )
    if status == 401:
        path = request.url.path
        response = login_page(
            request,
            next_path=path if request.method == "GET" else "/ops",
            message=None,
            status_code=401,
        )
    else:
        response = render(
            request,
            "error.html",
            {"status": status, "message": str(error), "signed_in": status != 401},
            status,
        )
    response.headers.update(headers)
    return response
