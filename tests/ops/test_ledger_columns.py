"""The organization page's ledger shows what the other billing-assurance features record:
Stripe's later verdict on a sent row, and a correction's link to the row it fixes."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from tests.ops.conftest import BEARER
from tests.ops.seed import seed_billing


def ledger_row(page: str, identifier_id: int) -> str:
    match = re.search(rf'<tr data-report-id="{identifier_id}">(.*?)</tr>', page, re.S)
    assert match, f"row {identifier_id} not on the page"
    return match.group(1)


async def test_a_row_stripe_refused_later_and_its_correction_are_shown(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    seeded = await seed_billing(sessions)
    async with unit_of_work(sessions) as session:
        refused = (
            await session.execute(
                text(
                    "UPDATE meter_reports SET stripe_error_code = 'meter_event_customer_not_found',"
                    " stripe_error_message = 'No customer cus_gone'"
                    " WHERE id = (SELECT max(id) FROM meter_reports WHERE organization_id = :org"
                    " AND status = 'sent') RETURNING id, identifier, event_name, window_start,"
                    " window_end"
                ),
                {"org": seeded.organization_id},
            )
        ).one()
        correction = await session.scalar(
            text(
                "INSERT INTO meter_reports (organization_id, event_name, window_start, window_end,"
                " value, identifier, source, corrects_id, correction_reason)"
                " VALUES (:org, :event, :start, :end, 7, :identifier, 'correction', :fixes,"
                " 'customer id fixed') RETURNING id"
            ),
            {
                "org": seeded.organization_id,
                "event": refused.event_name,
                "start": refused.window_start,
                "end": refused.window_end,
                "identifier": f"{refused.identifier}.r1",
                "fixes": refused.id,
            },
        )

    page = await client.get(f"/ops/organizations/{seeded.organization_id}", headers=BEARER)

    assert page.status_code == 200
    verdict = ledger_row(page.text, refused.id)
    assert "meter_event_customer_not_found" in verdict
    assert 'title="No customer cus_gone"' in verdict
    assert f"(corrects #{refused.id})" in ledger_row(page.text, int(correction))
