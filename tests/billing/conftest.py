from __future__ import annotations

from tests.webhooks.conftest import (  # noqa: F401 - fixtures, found by name
    client,
    settings,
)
