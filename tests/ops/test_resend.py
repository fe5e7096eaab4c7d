"""The /ops failures page re-sends ledger rows Stripe did not bill, per row and per error
code, with the session's CSRF token like the Retry button; over HTTP, no browser."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from tests.ops.conftest import BEARER, HTML, job_state
from tests.ops.test_access import sign_in

CODE = "parameter_missing"


async def failed_rows(
    sessions: SessionFactory, codes: list[str | None], *, customer: str | None = "cus_resend"
) -> list[dict[str, Any]]:
    """A metered organization with one failed `temperature_readings` row per code, of the
    last hours (Stripe still takes their timestamps)."""
    org = uuid.uuid4()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    async with unit_of_work(sessions) as session:
        await session.execute(
            text("INSERT INTO organizations (id, name, stripe_customer_id) VALUES (:o, 'R', :c)"),
            {"o": org, "c": customer},
        )
        for number, code in enumerate(codes):
            window = start - timedelta(hours=number + 1)
            row = (
                await session.execute(
                    text(
                        "INSERT INTO meter_reports (organization_id, event_name, window_start,"
                        " window_end, value, stripe_customer_id, identifier, status, attempts,"
                        " last_error, last_error_code)"
                        " VALUES (:o, 'temperature_readings', :s, :e, 5, 'cus_old', :i, 'failed',"
                        " 1, 'InvalidRequestError: Missing required param', :code)"
                        " RETURNING id, identifier"
                    ),
                    {
                        "o": org,
                        "s": window,
                        "e": window + timedelta(hours=1),
                        "i": f"sb.{org}.temperature_readings.{int(window.timestamp())}",
                        "code": code,
                    },
                )
            ).one()
            rows.append(dict(row._mapping))
    return rows


async def statuses(sessions: SessionFactory) -> dict[str, tuple[str, str | None]]:
    async with sessions() as session:
        result = await session.execute(
            text("SELECT identifier, status, stripe_customer_id FROM meter_reports")
        )
        return {identifier: (status, customer) for identifier, status, customer in result}


async def test_the_failures_page_offers_a_re_send_per_failed_row_and_per_code(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    rows = await failed_rows(sessions, [CODE, CODE, None])
    await sign_in(client)

    page = (await client.get("/ops/failures", headers=HTML)).text

    for row in rows:
        assert f'data-resend="{row["id"]}"' in page
    assert f'data-resend-code="{CODE}"' in page
    assert f'data-metric="resend-code-{CODE}">2<' in page


async def test_re_send_without_the_csrf_token_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    [row] = await failed_rows(sessions, [CODE])
    await sign_in(client)
    before = await statuses(sessions)

    answer = await client.post(
        "/ops/failures/resend", data={"report_id": str(row["id"])}, headers=HTML
    )

    assert answer.status_code == 403
    assert await statuses(sessions) == before


async def test_re_send_of_a_row_makes_it_pending_with_a_job_and_a_second_press_changes_nothing(
    client: httpx.AsyncClient, sessions: SessionFactory, redis_url: str
) -> None:
    [row, other] = await failed_rows(sessions, [CODE, CODE])
    csrf = await sign_in(client)
    form = {"report_id": str(row["id"]), "csrf_token": csrf}

    first = await client.post("/ops/failures/resend", data=form)
    second = await client.post("/ops/failures/resend", data=form)

    assert first.status_code == second.status_code == 303
    after = await statuses(sessions)
    # The organization's customer now, not the one the row was closed with.
    assert after[row["identifier"]] == ("pending", "cus_resend")
    assert after[other["identifier"]][0] == "failed"
    assert await job_state(redis_url, row["identifier"]) == "waiting"
    page = await client.get(first.headers["location"], headers=HTML)
    assert f"1 row(s) pending again for row {row['id']}" in page.text
    again = await client.get(second.headers["location"], headers=HTML)
    assert "Not re-sent" in again.text
    assert "is pending: the worker is sending it" in again.text


async def test_re_send_by_code_takes_every_row_with_the_code(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    rows = await failed_rows(sessions, [CODE, CODE, "resource_missing"])
    csrf = await sign_in(client)

    answer = await client.post("/ops/failures/resend", data={"code": CODE, "csrf_token": csrf})
    nothing = await client.post("/ops/failures/resend", data={"code": CODE, "csrf_token": csrf})

    after = await statuses(sessions)
    assert [after[row["identifier"]][0] for row in rows] == ["pending", "pending", "failed"]
    assert "2 row(s) pending again" in (await client.get(answer.headers["location"])).text
    assert "Nothing to re-send for code" in (await client.get(nothing.headers["location"])).text


async def test_a_row_whose_organization_has_no_customer_is_not_re_sent(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    [row] = await failed_rows(sessions, [CODE], customer=None)

    answer = await client.post(
        "/ops/failures/resend", data={"report_id": row["identifier"]}, headers=BEARER
    )

    assert answer.status_code == 409
    assert answer.json()["outcome"] == "refused"
    assert "no live Stripe customer" in answer.json()["refused"][row["identifier"]]
    assert (await statuses(sessions))[row["identifier"]][0] == "failed"


async def test_a_script_re_sends_with_the_bearer_token_alone(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    [row] = await failed_rows(sessions, [CODE])

    answer = await client.post("/ops/failures/resend", data={"code": CODE}, headers=BEARER)

    assert answer.status_code == 200
    assert answer.json()["resent"] == [row["identifier"]]
