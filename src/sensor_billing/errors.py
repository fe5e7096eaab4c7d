"""The service's errors.

    SensorBillingError                 base; everything the service raises on purpose
    ├── ConfigurationError             a setting is missing or malformed (start-up stops)
    ├── DatabaseUnavailableError       PostgreSQL does not answer
    ├── QueueUnavailableError          Redis does not answer or is too old for bullmq
    └── InvalidJobDataError            job data that a queue must not carry

HTTP and the CLI each map these to a status or exit code in one place.
"""

from __future__ import annotations


class SensorBillingError(Exception):
    """Base class: an error the service raises on purpose, with a message a person can act on."""


class ConfigurationError(SensorBillingError):
    """A setting is missing or malformed. The message names the environment variable."""


class DatabaseUnavailableError(SensorBillingError):
    """PostgreSQL could not be reached or refused the connection."""


class QueueUnavailableError(SensorBillingError):
    """Redis could not be reached or is older than bullmq needs."""


class InvalidJobDataError(SensorBillingError):
    """Job data failed validation; nothing was enqueued."""
