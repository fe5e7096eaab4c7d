"""/ops/organizations and each organization's page show its subscription status and its
entitlement as the policy decides it (billing/entitlement.py), at the app's clock."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from sensor_billing.db import SessionFactory
from sensor_billing.settings import Settings
from tests.ops.conftest import BEARER, WEBHOOK_SECRET
from tests.support.app import running_app
from tests.support.billing_state import T0, at, invoice, new_organization, send, subscription

DAY = 86_400


@pytest.fixture
async def app(ops_settings: Settings, sessions: SessionFactory) -> AsyncIterator[FastAPI]:
    async with running_app(ops_settings) as (app, client):
        app.state.client = client
        yield app


def client_of(app: FastAPI) -> httpx.AsyncClient:
    client: httpx.AsyncClient = app.state.client
    return client


def fields(html: str) -> dict[str, str]:
    """The text of each `data-field` element of a piece of page."""
    return {
        name: re.sub(r"\s+", " ", value).strip()
        for name, value in re.findall(r'data-field="([^"]+)"[^>]*>([^<]*)<', html)
    }


def listed(html: str, organization_id: uuid.UUID) -> dict[str, str]:
    row = re.search(rf'<tr data-organization="{organization_id}">(.*?)</tr>', html, re.DOTALL)
    assert row, f"organization {organization_id} is not listed"
    return fields(row.group(1))


async def organizations(app: FastAPI) -> dict[str, uuid.UUID]:
    """Three organizations: one active, one past due since T0 (its payment failed then), and
    one that never subscribed."""
    client = client_of(app)
    active = await new_organization(app.state.sessions, "cus_active", "Aurora Dairy")
    past_due = await new_organization(app.state.sessions, "cus_late", "Boreal Foods")
    never = await new_organization(app.state.sessions, None, "Cirrus Labs")
    sub = subscription("sub_active", "active", customer="cus_active")
    await send(client, "customer.subscription.created", sub, T0, secret=WEBHOOK_SECRET)
    late = subscription("sub_late", "past_due", customer="cus_late")
    await send(client, "customer.subscription.updated", late, T0 + 60, secret=WEBHOOK_SECRET)
    failed = invoice("in_late", "sub_late", customer="cus_late")
    await send(client, "invoice.payment_failed", failed, T0, secret=WEBHOOK_SECRET)
    return {"active": active, "past_due": past_due, "never": never}


async def test_the_list_shows_each_organizations_subscription_status_and_entitlement(
    app: FastAPI,
) -> None:
    orgs = await organizations(app)
    app.state.clock = lambda: at(T0 + 3 * DAY)

    page = await client_of(app).get("/ops/organizations", headers=BEARER)

    assert page.status_code == 200
    grace_end = (at(T0) + timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert listed(page.text, orgs["active"]) == {
        "subscription-status": "active",
        "entitlement": "entitled",
        "entitlement-reason": "(active)",
    }
    assert listed(page.text, orgs["past_due"]) == {
        "subscription-status": "past_due",
        "entitlement": "entitled",
        "entitlement-reason": f"(past_due_grace, until {grace_end})",
    }
    assert listed(page.text, orgs["never"]) == {
        "subscription-status": "none",
        "entitlement": "not entitled",
        "entitlement-reason": "(no_subscription)",
    }


async def test_a_past_due_organization_is_listed_not_entitled_once_the_grace_period_ends(
    app: FastAPI,
) -> None:
    orgs = await organizations(app)
    app.state.clock = lambda: at(T0 + 7 * DAY)

    page = await client_of(app).get("/ops/organizations", headers=BEARER)

    assert listed(page.text, orgs["past_due"])["entitlement-reason"] == "(past_due_grace_ended)"
    assert listed(page.text, orgs["past_due"])["entitlement"] == "not entitled"


async def test_the_organization_page_names_the_entitlement_and_the_subscription_deciding_it(
    app: FastAPI,
) -> None:
    orgs = await organizations(app)
    app.state.clock = lambda: at(T0 + 8 * DAY)

    page = await client_of(app).get(f"/ops/organizations/{orgs['past_due']}", headers=BEARER)

    assert page.status_code == 200
    card = re.search(r'id="entitlement">(.*?)</section>', page.text, re.DOTALL)
    assert card
    assert fields(card.group(1)) == {
        "entitlement": "not entitled",
        "entitlement-reason": "(past_due_grace_ended)",
    }
    assert "subscription <code>sub_late</code> (past_due)" in card.group(1)
    assert '<section class="card alert" id="entitlement">' in page.text
