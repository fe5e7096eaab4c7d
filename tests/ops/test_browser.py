"""The /ops pages in headless Chromium against the real app (uvicorn) on seeded data: what a
person sees must be what the database and Redis hold. Screenshots: test-artifacts/ops/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.settings import load_settings
from sensor_billing.webhooks.handlers import HANDLERS
from tests.conftest import TEST_REDIS_URL
from tests.ops.browser import chromium, screenshot, served, wait_for_heading
from tests.ops.conftest import OPS_TOKEN, fail_job, job_state
from tests.ops.seed import CUSTOMER, FAILED_REASON, Seeded, seed_billing


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    settings = load_settings(
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        ops_token=OPS_TOKEN,
        meter_window_seconds=3600,
    )
    with served(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def signed_in(browser: webdriver.Chrome, base_url: str) -> webdriver.Chrome:
    browser.delete_all_cookies()
    browser.get(f"{base_url}/ops/login")
    browser.find_element(By.ID, "token").send_keys(OPS_TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    wait_for_heading(browser, "Overview")
    return browser


@pytest.fixture
async def seeded(sessions: SessionFactory, redis_url: str) -> Seeded:
    return await seed_billing(sessions)


def shown(driver: webdriver.Chrome, name: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'[data-metric="{name}"]').text)


async def scalar(sessions: SessionFactory, sql: str, **params: object) -> object:
    async with sessions() as session:
        return (await session.execute(text(sql), params)).scalar()


async def counts(sessions: SessionFactory, sql: str, **params: object) -> dict[str, int]:
    """A query of (key, count) rows as a dict."""
    async with sessions() as session:
        return {str(key): int(count) for key, count in await session.execute(text(sql), params)}


async def test_signing_in_with_the_token_shows_the_overview_of_the_database(
    browser: webdriver.Chrome, base_url: str, seeded: Seeded, sessions: SessionFactory
) -> None:
    await fail_job(TEST_REDIS_URL, "sb.overview")
    browser.delete_all_cookies()
    browser.get(f"{base_url}/ops")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    browser.find_element(By.ID, "token").send_keys(OPS_TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    wait_for_heading(browser, "Overview")
    screenshot(browser, "overview")

    recent = await counts(
        sessions,
        "SELECT status, count(*) FROM meter_reports"
        " WHERE created_at >= now() - interval '24 hours' GROUP BY 1",
    )
    async with sessions() as session:
        attempts, accepted = (
            await session.execute(
                text(
                    "SELECT sum(attempts), count(*) FILTER (WHERE status = 'sent')"
                    " FROM meter_reports WHERE created_at >= now() - interval '24 hours'"
                )
            )
        ).one()
    outcomes = await counts(
        sessions,
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM billing_state_changes c"
        "   WHERE c.event_id = e.event_id) THEN 'changed-state'"
        " WHEN e.event_type = ANY(:handled) THEN 'no-change'"
        " ELSE 'no-handler' END, count(*) FROM stripe_events e"
        " WHERE processed_at >= now() - interval '24 hours' GROUP BY 1",
        handled=list(HANDLERS),
    )
    for status in ("sent", "pending", "failed", "skipped", "cancelled"):
        assert shown(browser, f"reports-{status}") == str(recent.get(status, 0)), status
    assert shown(browser, "stripe-error-rate") == f"{(attempts - accepted) / attempts * 100:.1f}%"
    for outcome in ("changed-state", "no-change", "no-handler"):
        assert shown(browser, f"webhooks-{outcome}") == str(outcomes.get(outcome, 0)), outcome
    assert shown(browser, "ledger-pending") == str(
        await scalar(sessions, "SELECT count(*) FROM meter_reports WHERE status = 'pending'")
    )
    assert shown(browser, "ledger-failed") == str(
        await scalar(sessions, "SELECT count(*) FROM meter_reports WHERE status = 'failed'")
    )
    closed = await scalar(sessions, "SELECT max(closed_through) FROM metering_cursors")
    assert shown(browser, "ledger-closed-through") == closed.astimezone(UTC).strftime(  # type: ignore[attr-defined]
        "%Y-%m-%d %H:%M:%S UTC"
    )
    assert shown(browser, "queue-meter-reporting-failed") == "1"
    meter_errors = await counts(
        sessions,
        "SELECT code, sum(error_count) FROM meter_error_reports"
        " WHERE event_created_at >= now() - interval '24 hours' GROUP BY 1",
    )
    assert meter_errors  # the seed has some: the figures below are not all zero
    assert shown(browser, "meter-errors") == str(sum(meter_errors.values()))
    for code, count in meter_errors.items():
        assert shown(browser, f"meter-errors-{code}") == str(count), code
    # Usage Stripe reported invalid is on no invoice: a person must look.
    errors_cell = browser.find_element(By.CSS_SELECTOR, '[data-metric="meter-errors"]')
    assert "alert" in str(errors_cell.get_attribute("class"))
    # Failed rows and the failed job need a person: their figures are red.
    failed_cell = browser.find_element(By.CSS_SELECTOR, '[data-metric="ledger-failed"]')
    assert "alert" in str(failed_cell.get_attribute("class"))


async def test_the_organization_page_shows_the_usage_and_ledger_of_the_database(
    signed_in: webdriver.Chrome, base_url: str, seeded: Seeded, sessions: SessionFactory
) -> None:
    browser = signed_in
    browser.get(f"{base_url}/ops/organizations?q={CUSTOMER}")
    assert browser.find_element(By.ID, "organization-name").text == "Acme Cold Storage"
    screenshot(browser, "organization")

    period = {
        "org": seeded.organization_id,
        "start": seeded.period_start,
        "end": seeded.period_end,
    }
    in_period = (
        "organization_id = :org AND window_start >= :start AND window_start < :end"
        " AND status = 'sent'"
    )
    readings = await scalar(
        sessions,
        f"SELECT sum(value) FROM meter_reports WHERE {in_period}"
        " AND event_name = 'temperature_readings'",
        **period,
    )
    sensors = await scalar(
        sessions,
        f"SELECT value FROM meter_reports WHERE {in_period} AND event_name = 'active_sensors'"
        " ORDER BY window_start DESC LIMIT 1",
        **period,
    )
    assert shown(browser, "reported-temperature_readings") == str(readings)
    assert shown(browser, "reported-active_sensors") == str(sensors)
    bars = browser.find_elements(By.CSS_SELECTOR, '[data-chart="temperature_readings"] rect.bar')
    assert sum(int(str(bar.get_attribute("data-value"))) for bar in bars) == readings
    for status in ("sent", "pending", "failed", "skipped"):
        expected = await scalar(
            sessions,
            "SELECT count(*) FROM meter_reports WHERE organization_id = :org"
            " AND event_name = 'temperature_readings' AND status = :status",
            org=seeded.organization_id,
            status=status,
        )
        assert shown(browser, f"rows-temperature_readings-{status}") == str(expected), status

    rows = browser.find_elements(By.CSS_SELECTOR, "#ledger tr[data-report-id]")
    total = await scalar(
        sessions,
        "SELECT count(*) FROM meter_reports WHERE organization_id = :org",
        org=seeded.organization_id,
    )
    assert len(rows) == min(int(total), 50)  # type: ignore[call-overload]
    browser.find_element(By.ID, "ledger-next").click()
    WebDriverWait(browser, 15).until(lambda driver: "before=" in driver.current_url)
    older = browser.find_elements(By.CSS_SELECTOR, "#ledger tr[data-report-id]")
    assert len(rows) + len(older) == total
    browser.get(f"{base_url}/ops/organizations/{seeded.organization_id}?status=failed")
    [failed] = browser.find_elements(By.CSS_SELECTOR, "#ledger tr[data-report-id]")
    assert failed.find_element(By.CSS_SELECTOR, '[data-field="reason"]').text == FAILED_REASON
    assert browser.find_element(By.CSS_SELECTOR, '[data-field="subscription-status"]').text == (
        "active"
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#changes tr")) == 1 + 2


async def test_the_organizations_list_shows_each_subscription_status_and_entitlement(
    signed_in: webdriver.Chrome, base_url: str, seeded: Seeded
) -> None:
    browser = signed_in
    browser.get(f"{base_url}/ops/organizations")
    screenshot(browser, "organizations")

    def row(organization_id: object) -> dict[str, str]:
        cells = browser.find_elements(
            By.CSS_SELECTOR, f'tr[data-organization="{organization_id}"] [data-field]'
        )
        return {str(cell.get_attribute("data-field")): str(cell.text) for cell in cells}

    # The seed's organization has an active subscription; the other never subscribed.
    assert row(seeded.organization_id) == {
        "subscription-status": "active",
        "entitlement": "entitled",
        "entitlement-reason": "(active)",
    }
    assert row(seeded.other_organization_id) == {
        "subscription-status": "none",
        "entitlement": "not entitled",
        "entitlement-reason": "(no_subscription)",
    }
    refused = browser.find_element(
        By.CSS_SELECTOR,
        f'tr[data-organization="{seeded.other_organization_id}"] [data-field="entitlement"]',
    )
    assert "alert" in str(refused.get_attribute("class"))


async def test_the_webhook_log_lists_recorded_events_and_filters_by_type(
    signed_in: webdriver.Chrome, base_url: str, seeded: Seeded, sessions: SessionFactory
) -> None:
    browser = signed_in
    browser.get(f"{base_url}/ops/webhooks")
    rows = browser.find_elements(By.CSS_SELECTOR, "#events tr[data-event-id]")
    assert len(rows) == await scalar(sessions, "SELECT count(*) FROM stripe_events")
    screenshot(browser, "webhooks")
    changed = browser.find_element(By.CSS_SELECTOR, 'tr[data-event-id="evt_ops_sub_2"]')
    assert changed.find_element(By.CSS_SELECTOR, '[data-field="outcome"]').text.startswith(
        "changed state: subscription sub_ops_1 status incomplete -> active"
    )

    field = browser.find_element(By.NAME, "type")
    field.send_keys("invoice.paid")
    field.submit()
    WebDriverWait(browser, 15).until(lambda driver: "type=invoice.paid" in driver.current_url)

    filtered = browser.find_elements(By.CSS_SELECTOR, "#events tr[data-event-id]")
    expected = await scalar(
        sessions, "SELECT count(*) FROM stripe_events WHERE event_type = 'invoice.paid'"
    )
    assert len(filtered) == expected == 2
    assert "type=invoice.paid" in browser.current_url


async def test_pressing_retry_on_a_failed_job_moves_it_back_to_waiting(
    signed_in: webdriver.Chrome, base_url: str, seeded: Seeded, sessions: SessionFactory
) -> None:
    await fail_job(TEST_REDIS_URL, "sb.press-retry")
    browser = signed_in
    browser.get(f"{base_url}/ops/failures")
    failed_rows = browser.find_elements(By.CSS_SELECTOR, "#failed-reports tr[data-report-id]")
    assert len(failed_rows) == await scalar(
        sessions, "SELECT count(*) FROM meter_reports WHERE status = 'failed'"
    )
    job = browser.find_element(By.CSS_SELECTOR, 'tr[data-job-id="sb.press-retry"]')
    assert "Stripe refused sb.press-retry" in job.text
    screenshot(browser, "failures")

    browser.find_element(By.CSS_SELECTOR, 'button[data-retry="sb.press-retry"]').click()
    WebDriverWait(browser, 15).until(lambda driver: "outcome=" in driver.current_url)

    assert browser.find_element(By.ID, "notice").text == (
        "Job sb.press-retry (meter-reporting) moved back to waiting with a fresh set of attempts."
    )
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-job-id="sb.press-retry"]') == []
    assert browser.find_element(By.ID, "no-failed-jobs").text == "No failed jobs."
    assert await job_state(TEST_REDIS_URL, "sb.press-retry") == "waiting"
    screenshot(browser, "failures-after-retry")


async def test_an_unknown_organization_shows_a_404_page(
    signed_in: webdriver.Chrome, base_url: str, seeded: Seeded
) -> None:
    browser = signed_in
    browser.get(f"{base_url}/ops/organizations/00000000-0000-0000-0000-000000000000")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    screenshot(browser, "organization-not-found")
