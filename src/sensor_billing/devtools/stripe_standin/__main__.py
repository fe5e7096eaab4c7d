"""`python -m sensor_billing.devtools.stripe_standin --port 12111 --api-key sk_test_...`."""

from __future__ import annotations

import argparse
import os

import uvicorn

from .server import DEFAULT_API_KEY, uvicorn_config
from .state import StandinState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sensor_billing.devtools.stripe_standin",
        description="A local stand-in for Stripe Billing Meters (v1 meter events, v2 stream).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="a secret key the stand-in accepts (repeatable); "
        f"default $STRIPE_STANDIN_API_KEY or {DEFAULT_API_KEY}",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    api_keys = args.api_keys or [os.environ.get("STRIPE_STANDIN_API_KEY", DEFAULT_API_KEY)]
    state = StandinState(api_keys)
    config = uvicorn_config(state, log_level=args.log_level)
    config.host = args.host
    config.port = args.port
    print(f"Stripe stand-in on http://{args.host}:{args.port} (control API under /_standin/)")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
