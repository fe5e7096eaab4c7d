"""`sensor-billing dev`: the whole service in one process, with nothing installed.

What the environment (or `.env`) configures is used; what it leaves out is supplied locally:
DATABASE_URL unset -> embedded PostgreSQL, REDIS_URL unset -> embedded Redis, STRIPE_API_KEY
unset -> the Stripe stand-in with the two meters, STRIPE_WEBHOOK_SECRET unset -> a dev secret
kept in the data folder. `Settings` defaults are not "configured": they name servers a
newcomer does not have.

One asyncio loop runs the API (uvicorn), the metering worker and the demo readings; the
embedded servers are child processes (PostgreSQL through pg_ctl) and the stand-in a thread.
SIGINT/SIGTERM stop them in reverse order of start.

Dev holds a lock on its data folder while it runs. Once up it prints where everything listens
and writes the same to `dev-services.json` there (`dev_services.py`), which the CLI reads for
what its environment leaves unset; the file goes when dev stops. Redis and the stand-in take
the last run's ports again when they are free (`dev_ports.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from sensor_billing.app import create_app
from sensor_billing.db import create_engine, create_session_factory, migrate
from sensor_billing.devtools.demo import (
    demo_customer_ids,
    insert_readings_forever,
    seed_demo_organizations,
)
from sensor_billing.devtools.demo_api import DemoApi, add_demo_api_lines, open_demo_api
from sensor_billing.devtools.dev_banner import Banner
from sensor_billing.devtools.dev_ports import (
    PortChoice,
    choose_port,
    remember_ports,
    remembered_ports,
)
from sensor_billing.devtools.dev_services import (
    LOCK_FILE_NAME,
    remove_services,
    services_now,
    write_services,
)
from sensor_billing.devtools.embedded import (
    DataDirLock,
    EmbeddedPostgres,
    EmbeddedRedis,
    check_data_dir,
    read_or_create_secret,
)
from sensor_billing.devtools.stripe_standin import (
    DEFAULT_API_KEY,
    EventDestination,
    RunningStandin,
    run_in_thread,
)
from sensor_billing.devtools.stripe_standin.catalog import create_meter
from sensor_billing.devtools.stripe_standin.records import Customer
from sensor_billing.devtools.stripe_standin.webhook_endpoints import register_endpoint
from sensor_billing.jobs.worker import MeteringWorker
from sensor_billing.listen import bind_api_socket
from sensor_billing.logs import configure_logging
from sensor_billing.settings import Settings, configured_variables, load_settings

logger = logging.getLogger("sensor_billing.dev")

# Short windows so a newcomer sees usage reach the stand-in within about a minute
# (production: one hour, closed every five minutes).
DEV_METER_DEFAULTS: dict[str, int] = {
    "meter_window_seconds": 60,
    "meter_grace_seconds": 5,
    "meter_close_interval_seconds": 10,
}
METERS = (("active_sensors", "last"), ("temperature_readings", "sum"))
_UVICORN_GRACEFUL_SECONDS = 5


@dataclass(frozen=True)
class DevOptions:
    host: str
    port: int
    demo: bool
    data_dir: Path


def start_standin(demo_customers: list[str], port: int = 0) -> RunningStandin:
    """The stand-in with this service's two meters and, for the demo, its customers."""
    standin = run_in_thread(port=port, api_keys=[DEFAULT_API_KEY])
    state = standin.state
    for event_name, formula in METERS:
        create_meter(
            state,
            {
                "display_name": event_name,
                "event_name": event_name,
                "default_aggregation": {"formula": formula},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            },
        )
    with state.lock:
        # Fixed ids (the stand-in's own are random): the organizations in a reused data folder
        # name them, and the stand-in forgets everything at each start.
        for number, customer_id in enumerate(demo_customers, start=1):
            state.customers[customer_id] = Customer(
                id=customer_id, created=int(state.clock.now()), name=f"Demo customer {number}"
            )
    return standin


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: dev stops everything, in order, itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


Cleanup = Callable[[], Awaitable[None]]


async def run_dev(options: DevOptions, console: Console) -> None:
    api_socket = bind_api_socket(options.host, options.port)  # before anything starts
    cleanups: list[tuple[str, Cleanup]] = []
    lock: DataDirLock | None = None
    try:
        configured = configured_variables()
        embedded_postgres = "DATABASE_URL" not in configured
        if embedded_postgres:
            check_data_dir(options.data_dir)
        options.data_dir.mkdir(parents=True, exist_ok=True)
        if embedded_postgres:
            options.data_dir.chmod(0o755)  # the embedded PostgreSQL's user must enter it
        # Taken even when everything is configured: the lock is what tells the CLI whether
        # the services file in the folder belongs to a dev that still runs.
        lock = DataDirLock(options.data_dir / LOCK_FILE_NAME)
        lock.acquire()
        remove_services(options.data_dir)  # a killed dev's; ours is written once we are up
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await _start_and_serve(options, configured, api_socket, stop, cleanups, console)
    finally:
        if lock is not None:
            # First: from now on the CLI must not be sent to services that are going away.
            remove_services(options.data_dir)
        for name, cleanup in reversed(cleanups):
            try:
                await cleanup()
            except Exception as error:  # stop the rest whatever one of them did
                logger.warning("stopping %s failed: %s", name, error)
        api_socket.close()
        if lock is not None:
            lock.release()


async def _start_and_serve(
    options: DevOptions,
    configured: set[str],
    api_socket: socket.socket,
    stop: asyncio.Event,
    cleanups: list[tuple[str, Cleanup]],
    console: Console,
) -> None:
    overrides: dict[str, Any] = {}
    started = time.monotonic()
    last_ports = remembered_ports(options.data_dir)
    ports: dict[str, PortChoice] = {}
    if "DATABASE_URL" not in configured:
        postgres = EmbeddedPostgres(options.data_dir)
        cleanups.append(("PostgreSQL", lambda: asyncio.to_thread(postgres.stop)))
        overrides["database_url"] = await asyncio.to_thread(postgres.start)
    if "REDIS_URL" not in configured:
        ports["redis"] = choose_port(last_ports.get("redis"))
        redis = EmbeddedRedis(options.data_dir, ports["redis"].port)
        cleanups.append(("Redis", lambda: asyncio.to_thread(redis.stop)))
        overrides["redis_url"] = await asyncio.to_thread(redis.start)
    standin: RunningStandin | None = None
    demo_customers = demo_customer_ids() if options.demo else []
    if "STRIPE_API_KEY" not in configured:
        ports["standin"] = choose_port(last_ports.get("standin"))
        standin = await asyncio.to_thread(start_standin, demo_customers, ports["standin"].port)
        cleanups.append(("the Stripe stand-in", lambda: asyncio.to_thread(standin.stop)))
        overrides |= {
            "stripe_api_key": DEFAULT_API_KEY,
            "stripe_api_base": standin.url,
            "stripe_meter_events_base": standin.url,
        }
    if "STRIPE_WEBHOOK_SECRET" not in configured:
        overrides["stripe_webhook_secret"] = read_or_create_secret(
            options.data_dir / "webhook-secret.json", "whsec_"
        )
    for name, value in DEV_METER_DEFAULTS.items():
        if name.upper() not in configured:
            overrides[name] = value
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    if stop.is_set():
        return

    await asyncio.to_thread(migrate.upgrade, settings.database_url)

    if options.demo:
        engine = create_engine(settings.database_url, pool_size=2)
        cleanups.append(("the demo database pool", engine.dispose))
        sessions = create_session_factory(engine)
        # With real Stripe the demo customers do not exist: the organizations stay unbilled.
        customers: list[str | None] = (
            list(demo_customers) if standin else [None] * len(demo_customers)
        )
        sensors = await seed_demo_organizations(sessions, customers)
        demo_task = asyncio.create_task(insert_readings_forever(sessions, sensors, stop))
        cleanups.append(("the demo readings", lambda: _finish(demo_task)))

    worker = MeteringWorker(settings)
    cleanups.append(("the worker", worker.stop))
    await worker.start()

    server = _Server(
        uvicorn.Config(
            create_app(settings),
            log_config=None,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=_UVICORN_GRACEFUL_SECONDS,
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[api_socket]))

    async def stop_api() -> None:
        server.should_exit = True
        await serving

    cleanups.append(("the API", stop_api))
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.02)
    if serving.done():
        return  # its error is raised by stop_api
    if standin is not None and settings.webhook_secrets:
        # Meter errors come back as signed thin events, as from a Stripe event destination;
        # checkout and subscription changes as signed snapshot events, as from an endpoint.
        webhooks_url = (
            f"http://{_loopback(options.host)}:{api_socket.getsockname()[1]}/webhooks/stripe"
        )
        with standin.state.lock:
            standin.state.destination = EventDestination(
                url=webhooks_url, secret=settings.webhook_secrets[0]
            )
        register_endpoint(
            standin.state,
            url=webhooks_url,
            secret=settings.webhook_secrets[0],
            enabled_events=["*"],
        )
    demo_api = None
    if options.demo:
        demo_organizations = list(dict.fromkeys(sensor.organization_id for sensor in sensors))
        demo_api = await open_demo_api(
            sessions,
            settings,
            api_url=f"http://{_loopback(options.host)}:{api_socket.getsockname()[1]}",
            standin=standin,
            organization_ids=demo_organizations,
        )
    remember_ports(
        options.data_dir, last_ports | {name: choice.port for name, choice in ports.items()}
    )
    banner = dev_banner(options, settings, standin, ports, time.monotonic() - started, demo_api)
    console.print("\n".join(banner.rendered()), highlight=False, soft_wrap=True)
    console.file.flush()  # a pipe or log file would otherwise hold the addresses back
    write_services(options.data_dir, services_now(banner.settings(), banner.rendered()))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    console.print("stopping…")


def _loopback(host: str) -> str:
    """The address the stand-in reaches the API at: an all-interfaces bind is on loopback too."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    return f"[{host}]" if ":" in host else host


async def _finish(task: asyncio.Task[None]) -> None:
    # The task watches the stop event; wait_for cancels it if a database call hangs.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, 5)


def dev_banner(
    options: DevOptions,
    settings: Settings,
    standin: RunningStandin | None,
    ports: dict[str, PortChoice],
    seconds: float,
    demo_api: DemoApi | None = None,
) -> Banner:
    """What dev prints once up; each line's settings are what the CLI reads from its file."""
    api = f"http://{options.host}:{options.port}"
    banner = Banner(f"sensor-billing dev is up ({seconds:.1f} s); Ctrl-C stops everything")
    banner.add(
        "API",
        f"{api}  (POST {api}/webhooks/stripe, GET {api}/readyz)",
        {"API_URL": f"http://{_loopback(options.host)}:{options.port}"},
    )
    if standin is not None:
        banner.add(
            "Stripe stand-in",
            f"{standin.url}  (state: {standin.url}/_standin/state){ports['standin'].note()}",
            {
                "STRIPE_API_KEY": DEFAULT_API_KEY,
                "STRIPE_API_BASE": standin.url,
                "STRIPE_METER_EVENTS_BASE": standin.url,
            },
        )
    else:
        banner.add("Stripe", "STRIPE_API_KEY from the environment")
    banner.add("PostgreSQL", settings.database_url, {"DATABASE_URL": settings.database_url})
    redis_note = ports["redis"].note() if "redis" in ports else ""
    banner.add("Redis", settings.redis_url + redis_note, {"REDIS_URL": settings.redis_url})
    banner.add(
        "STRIPE_WEBHOOK_SECRET",
        ", ".join(settings.webhook_secrets),
        {"STRIPE_WEBHOOK_SECRET": ",".join(settings.webhook_secrets)},
    )
    banner.add(
        "usage windows",
        f"{settings.meter_window_seconds} s, closed {settings.meter_grace_seconds} s after "
        f"they end, checked every {settings.meter_close_interval_seconds} s",
        {
            "METER_WINDOW_SECONDS": str(settings.meter_window_seconds),
            "METER_GRACE_SECONDS": str(settings.meter_grace_seconds),
            "METER_CLOSE_INTERVAL_SECONDS": str(settings.meter_close_interval_seconds),
        },
    )
    banner.add("data folder", str(options.data_dir.resolve()))
    if options.demo:
        banner.add("demo", "3 organizations, a reading per second each")
    if demo_api is not None:
        add_demo_api_lines(banner, api, demo_api)
    banner.add(
        "sensor-billing ...",
        "other commands run here (or with --data-dir) use these services",
    )
    return banner
