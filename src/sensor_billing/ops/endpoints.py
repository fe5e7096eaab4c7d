"""The /ops pages: thin handlers that read through `ops.service` and render a template.

Every page but sign-in needs an operator (`current_operator`): a refused request raises
`OpsNotSignedInError`, which `http_errors` answers with 401 and the sign-in page (or a short
JSON for a script). Each page reads in one unit of work. Two forms act, each with the
session's CSRF token: Retry (a failed job back to waiting, Redis only) and Re-send (ledger rows
Stripe did not bill back to pending, `sensor-billing usage resend`'s service).
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sensor_billing.db import unit_of_work
from sensor_billing.errors import InvalidInputError
from sensor_billing.jobs.admin import RetryOutcome
from sensor_billing.metering.resend import ResendSelection
from sensor_billing.ops import service
from sensor_billing.ops.auth import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SESSION_MAX_AGE_SECONDS,
    Operator,
    current_operator,
    ops_auth,
    safe_next,
)
from sensor_billing.ops.pages import login_page, render
from sensor_billing.settings import Settings

router = APIRouter(prefix="/ops", include_in_schema=False)
logger = logging.getLogger("sensor_billing.ops")

OperatorDep = Annotated[Operator, Depends(current_operator)]


def _settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def _context(operator: Operator, **values: object) -> dict[str, object]:
    return {"csrf_token": operator.csrf_token, "signed_in": True, **values}


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return login_page(request, next_path=safe_next(next), message=None, status_code=200)


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ops",
) -> Response:
    auth = ops_auth(request)
    if not auth.token_matches(token):
        # Sign-in is not rate-limited: a run of these lines is what shows someone guessing.
        logger.warning(
            "ops sign-in refused: wrong token (client %s)",
            request.client.host if request.client else "-",
        )
        return login_page(
            request, next_path=safe_next(next), message="That is not the token.", status_code=401
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(),
        max_age=SESSION_MAX_AGE_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, operator: OperatorDep, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    ops_auth(request).check_csrf(operator, csrf_token)
    response = RedirectResponse("/ops/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, operator: OperatorDep) -> HTMLResponse:
    async with unit_of_work(request.app.state.sessions) as session:
        page = await service.overview(session, request.app.state.redis, _settings(request))
    return render(request, "overview.html", _context(operator, page=page, nav="overview"))


@router.get("/organizations", response_class=HTMLResponse)
async def organizations(
    request: Request,
    operator: OperatorDep,
    q: str | None = None,
    after: str | None = None,
) -> Response:
    async with unit_of_work(request.app.state.sessions) as session:
        if q and q.strip():
            found = await service.find_organization_id(session, q)
            return RedirectResponse(f"/ops/organizations/{found}", status_code=303)
        page = await service.organization_list(
            session, _settings(request), after, now=request.app.state.clock()
        )
    return render(request, "organizations.html", _context(operator, page=page, nav="organizations"))


@router.get("/organizations/{organization_id}", response_class=HTMLResponse)
async def organization(
    request: Request,
    operator: OperatorDep,
    organization_id: str,
    status: str | None = None,
    before: str | None = None,
) -> HTMLResponse:
    org_id = service.parse_organization_id(organization_id)
    async with unit_of_work(request.app.state.sessions) as session:
        page = await service.organization_page(
            session,
            _settings(request),
            org_id,
            status=status,
            before=before,
            now=request.app.state.clock(),
        )
    return render(request, "organization.html", _context(operator, page=page, nav="organizations"))


RETRY_MESSAGES = {
    RetryOutcome.RETRIED: "Job {job} ({queue}) moved back to waiting with a fresh set of attempts.",
    RetryOutcome.NOT_FOUND: "No job {job} in any queue: it was removed, or never existed.",
    RetryOutcome.NOT_FAILED: "Job {job} ({queue}) is {state}, not failed: nothing to retry.",
}


@router.get("/failures", response_class=HTMLResponse)
async def failures(
    request: Request,
    operator: OperatorDep,
    before: str | None = None,
    job: str | None = None,
    outcome: str | None = None,
    queue: str | None = None,
    state: str | None = None,
    resend: str | None = None,
    what: Annotated[str | None, Query(max_length=300)] = None,
    count: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    why: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    async with unit_of_work(request.app.state.sessions) as session:
        page = await service.failures_page(session, _settings(request), before)
    notice = None
    known = {member.value for member in RetryOutcome}
    if job and outcome is not None and outcome in known:
        notice = RETRY_MESSAGES[RetryOutcome(outcome)].format(
            job=job, queue=queue or "?", state=state or "?"
        )
    if resend in {member.value for member in service.ResendOutcome}:
        outcome = "retried" if resend == service.ResendOutcome.RESENT else resend
        notice = RESEND_MESSAGES[service.ResendOutcome(resend)].format(
            count=count, what=what or "?", why=why or "?"
        )
    return render(
        request,
        "failures.html",
        _context(operator, page=page, nav="failures", notice=notice, notice_outcome=outcome),
    )


@router.post("/failures/retry")
async def retry(
    request: Request,
    operator: OperatorDep,
    job_id: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    ops_auth(request).check_csrf(operator, csrf_token)
    result = await service.retry_failed_job(_settings(request), job_id)
    if operator.is_script:
        return JSONResponse(
            {
                "jobId": result.job_id,
                "outcome": result.outcome.value,
                "queue": result.queue,
                "state": result.state,
            },
            status_code=200 if result.outcome is RetryOutcome.RETRIED else 409,
        )
    params = {"job": job_id, "outcome": result.outcome.value}
    if result.queue:
        params["queue"] = result.queue
    if result.state:
        params["state"] = result.state
    return RedirectResponse(f"/ops/failures?{urlencode(params)}", status_code=303)


RESEND_MESSAGES = {
    service.ResendOutcome.RESENT: "{count} row(s) pending again for {what}; the worker sends them.",
    service.ResendOutcome.NOTHING: "Nothing to re-send for {what}: no failed row, and no row "
    "Stripe reported invalid, matches (a second press changes nothing).",
    service.ResendOutcome.REFUSED: "Not re-sent ({what}): {why}",
}


@router.post("/failures/resend")
async def resend(
    request: Request,
    operator: OperatorDep,
    report_id: Annotated[str | None, Form(max_length=200)] = None,
    code: Annotated[str | None, Form(max_length=64)] = None,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Re-send one ledger row (`report_id`) or every row with an error `code`."""
    ops_auth(request).check_csrf(operator, csrf_token)
    report_id = (report_id or "").strip() or None
    code = (code or "").strip() or None
    if (report_id is None) == (code is None):
        raise InvalidInputError("give either report_id or code")
    result = await service.resend_rows(
        request.app.state.sessions, _settings(request), ResendSelection(row=report_id, code=code)
    )
    what = f"row {report_id}" if report_id else f"code {code}"
    if operator.is_script:
        return JSONResponse(
            {
                "outcome": result.outcome.value,
                "resent": result.resent,
                "refused": result.refused,
                "message": result.message,
            },
            status_code=200 if result.outcome is service.ResendOutcome.RESENT else 409,
        )
    why = result.message or "; ".join(f"{key}: {reason}" for key, reason in result.refused.items())
    params = {
        "resend": result.outcome.value,
        "what": what,
        "count": str(len(result.resent)),
        "why": why[:500],
    }
    return RedirectResponse(f"/ops/failures?{urlencode(params)}", status_code=303)


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks(
    request: Request,
    operator: OperatorDep,
    event_type: Annotated[str | None, Query(alias="type", max_length=256)] = None,
    before: str | None = None,
) -> HTMLResponse:
    async with unit_of_work(request.app.state.sessions) as session:
        page = await service.webhook_log(session, event_type, before)
    return render(request, "webhooks.html", _context(operator, page=page, nav="webhooks"))
