"""`sensor-billing openapi`: print the API's OpenAPI document."""

from __future__ import annotations

import sys

from sensor_billing.api.openapi import openapi_text
from sensor_billing.app import create_app
from sensor_billing.cli.errors import reports_errors
from sensor_billing.settings import get_settings


@reports_errors
def openapi() -> None:
    """Print the OpenAPI document the API serves at /openapi.json (what docs/openapi.json
    holds: `sensor-billing openapi > docs/openapi.json` after changing an endpoint)."""
    sys.stdout.write(openapi_text(create_app(get_settings())))
