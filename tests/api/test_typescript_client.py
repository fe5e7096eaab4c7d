"""The TypeScript backend's view of the API: types generated from the committed spec
(openapi-typescript) and a client calling every /v1 operation type-check with `tsc --noEmit`
(clients/typescript, installed by scripts/ensure-typescript-client; skipped without Node.js
except in CI, where it fails)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "typescript"
TIMEOUT_SECONDS = 180


def require_toolchain() -> None:
    if shutil.which("npm") and (CLIENT / "node_modules" / ".bin" / "tsc").exists():
        return
    message = f"npm or {CLIENT}/node_modules is missing: run scripts/ensure-typescript-client"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=CLIENT, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
    )


def test_the_client_of_every_v1_operation_type_checks_against_the_committed_spec() -> None:
    require_toolchain()

    checked = run("npm", "run", "--silent", "check")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    generated = (CLIENT / "src" / "generated" / "sensor-billing.ts").read_text()
    assert '"/v1/organizations/{organization_id}/checkout-sessions"' in generated


def test_the_check_fails_while_a_v1_operation_is_not_called() -> None:
    require_toolchain()
    assert run("npm", "run", "--silent", "generate").returncode == 0
    source = (CLIENT / "src" / "client.ts").read_text()
    dropped = '  "POST /v1/organizations/{organization_id}/portal-sessions": openBillingPortal,\n'
    assert dropped in source
    name = f"client-check-{secrets.token_hex(4)}"
    copy = CLIENT / "src" / f"{name}.ts"
    config = CLIENT / f"tsconfig.{name}.json"
    copy.write_text(source.replace(dropped, ""))
    config.write_text(
        f'{{"extends": "./tsconfig.json", "include": ["src/generated", "src/{name}.ts"]}}'
    )
    try:
        checked = run("node_modules/.bin/tsc", "--noEmit", "--project", config.name)
    finally:
        copy.unlink()
        config.unlink()

    assert checked.returncode != 0
    assert "portal-sessions\"' is missing" in checked.stdout, checked.stdout
