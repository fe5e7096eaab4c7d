"""The billing operations pages (/ops): usage, ledger, deliveries and failures at a glance.

Served by the API only when OPS_TOKEN is set; without it /ops does not exist (404).
"""

from __future__ import annotations

from fastapi import FastAPI

from sensor_billing.ops.auth import OpsAuth
from sensor_billing.ops.endpoints import router
from sensor_billing.settings import Settings

__all__ = ["install_ops"]


def install_ops(app: FastAPI, settings: Settings) -> bool:
    """Add the /ops pages to the app when OPS_TOKEN is set; whether they were added."""
    key = settings.ops_session_key
    if settings.ops_token is None or key is None:
        return False
    app.state.ops_auth = OpsAuth(settings.ops_token.get_secret_value(), key)
    app.include_router(router)
    return True
