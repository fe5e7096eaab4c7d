"""`sensor-billing openapi` prints the document committed in docs/openapi.json."""

from __future__ import annotations

from tests.api.test_openapi import COMMITTED, REGENERATE
from tests.cli.conftest import run_cli


def test_the_openapi_command_prints_the_committed_document() -> None:
    outcome = run_cli("openapi")

    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout == COMMITTED.read_text(), REGENERATE
