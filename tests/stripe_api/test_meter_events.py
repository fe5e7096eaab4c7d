"""Idempotency keys of meter event calls: one per key generation, identifier readable back."""

from __future__ import annotations

from sensor_billing.stripe_api.meter_events import (
    idempotency_key,
    identifier_of_idempotency_key,
)


def test_each_key_generation_has_its_own_key_and_the_first_is_the_plain_one() -> None:
    identifier = "sb.7f0c.temperature_readings.1795813200"
    keys = [idempotency_key(identifier, generation) for generation in range(4)]

    assert keys[0] == idempotency_key(identifier) == f"meter-event-{identifier}"
    assert len(set(keys)) == 4
    assert all(len(key) <= 255 for key in keys)


def test_the_identifier_reads_back_from_every_generation_s_key() -> None:
    # Identifiers end in digits after a dot, or in hex (a hashed foreign job id), or in a
    # replacement's `.r<n>`: none is mistaken for a retry mark.
    for identifier in (
        "sb.7f0c.active_sensors.1795813200",
        "sb.fix.ab12.r3",
        "job.17.1795814254249",
        "job." + "a" * 64,
    ):
        for generation in range(3):
            key = idempotency_key(identifier, generation)
            assert identifier_of_idempotency_key(key) == identifier
    assert identifier_of_idempotency_key("sb.c.d.2") == "sb.c.d.2"
