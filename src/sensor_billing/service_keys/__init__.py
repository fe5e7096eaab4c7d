"""Service keys: the credentials the SaaS backend calls /v1 with (made with `keys create`)."""

from sensor_billing.service_keys.service import (
    SERVICE_KEY_PREFIX,
    IssuedServiceKey,
    Revocation,
    ServiceKeyInfo,
    create_service_key,
    issue_service_key,
    list_service_keys,
    revoke_service_key,
)
from sensor_billing.service_keys.verifier import Caller, Refusal, ServiceKeyVerifier

__all__ = [
    "SERVICE_KEY_PREFIX",
    "Caller",
    "IssuedServiceKey",
    "Refusal",
    "Revocation",
    "ServiceKeyInfo",
    "ServiceKeyVerifier",
    "create_service_key",
    "issue_service_key",
    "list_service_keys",
    "revoke_service_key",
]
