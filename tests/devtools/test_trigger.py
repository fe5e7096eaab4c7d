"""`stripe trigger` events: every supported type is accepted and processed by the real app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from typer.testing import CliRunner

from sensor_billing.cli.main import app
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization
from sensor_billing.devtools.trigger import (
    SUPPORTED_TYPES,
    build_event,
    deliver_event,
    new_context,
)
from sensor_billing.errors import ApiUnreachableError, UnknownEventTypeError
from sensor_billing.settings import load_settings
from tests.support.app import running_app, serving_app
from tests.support.stripe_events import encode

SECRET = "whsec_trigger_secret"
API_URL = "http://testserver"


@pytest.fixture
async def api(
    database_url: str, redis_url: str, sessions: SessionFactory
) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=SECRET
    )
    async with running_app(settings) as (_, client):
        yield client


async def add_organization(sessions: SessionFactory) -> str:
    async with unit_of_work(sessions) as session:
        organization = Organization(name="Cold Chain Ltd")
        session.add(organization)
        await session.flush()
        return str(organization.id)


@pytest.mark.parametrize("event_type", SUPPORTED_TYPES)
async def test_every_supported_type_is_processed_by_the_app(
    api: httpx.AsyncClient, event_type: str
) -> None:
    event = build_event(event_type, new_context())

    delivery = await deliver_event(event, api_url=API_URL, secrets_=[SECRET], http=api)

    assert delivery.status == 200, delivery.answer
    assert json.loads(delivery.answer)["outcome"] == "processed"


async def test_triggered_events_change_the_named_organizations_billing_state(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    organization = await add_organization(sessions)
    ctx = new_context(organization_id=organization)
    effects = []
    for event_type in ("checkout.session.completed", "customer.subscription.created"):
        delivery = await deliver_event(
            build_event(event_type, ctx), api_url=API_URL, secrets_=[SECRET], http=api
        )
        effects.append(json.loads(delivery.answer)["effect"])

    assert effects == ["applied", "applied"]


def test_events_carry_fresh_ids_and_the_current_time() -> None:
    first = build_event("invoice.paid", new_context(now=1_800_000_000))
    second = build_event("invoice.paid", new_context(now=1_800_000_000))

    assert first["id"] != second["id"]
    assert first["data"]["object"]["id"] != second["data"]["object"]["id"]
    assert first["created"] == 1_800_000_000
    assert first["api_version"] == "2025-03-31.basil"
    assert json.loads(encode(first)) == first


def test_an_unknown_type_is_refused_naming_the_supported_ones() -> None:
    with pytest.raises(UnknownEventTypeError) as refused:
        build_event("invoice.created", new_context())

    assert all(event_type in str(refused.value) for event_type in SUPPORTED_TYPES)


async def test_an_unreachable_api_is_reported() -> None:
    event = build_event("invoice.paid", new_context())

    with pytest.raises(ApiUnreachableError, match="did not answer"):
        await deliver_event(event, api_url="http://127.0.0.1:9", secrets_=[SECRET])


def test_the_command_exits_2_for_an_unknown_type() -> None:
    result = CliRunner().invoke(app, ["stripe", "trigger", "invoice.created"])

    assert result.exit_code == 2
    assert "supported: checkout.session.completed" in result.output


@pytest.mark.parametrize(
    "url", ["notaurl", "ftp://127.0.0.1:8000", "http://", "http://[::1", "http://127.0.0.1:99999"]
)
def test_the_command_exits_2_for_a_url_that_is_not_an_api_address(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)

    result = CliRunner().invoke(app, ["stripe", "trigger", "invoice.paid", "--url", url])

    assert result.exit_code == 2, result.output
    assert "--url" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_command_exits_3_when_the_api_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)

    result = CliRunner().invoke(
        app, ["stripe", "trigger", "invoice.paid", "--url", "http://127.0.0.1:9"]
    )

    assert result.exit_code == 3
    assert "did not answer" in result.output


@pytest.mark.usefixtures("sessions")
def test_without_url_the_command_posts_to_api_url(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=SECRET
    )
    with serving_app(settings) as url:
        monkeypatch.setenv("API_URL", url)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)

        result = CliRunner().invoke(app, ["stripe", "trigger", "invoice.paid"])

    assert result.exit_code == 0, result.output
    assert "HTTP 200" in result.output
    assert '"outcome":"processed"' in result.output
