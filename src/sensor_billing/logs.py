"""Log set-up: one line per event, never a secret or a raw payload.

`LOG_FORMAT=text` (the default) writes `time level logger message`; `json` writes one JSON
object per line with `time`, `level`, `logger`, `message`, `pid` and the record's `extra`
fields, for a log pipeline to index. Both formats blank out anything shaped like a Stripe
secret key, webhook secret or service key, and `extra` fields whose name says they hold a
secret or a raw body.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Final, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED: Final = "[redacted]"

# Stripe secret and restricted keys (sk_/rk_ live or test), webhook endpoint secrets, and
# this service's own keys (sbk_, URL-safe base64).
SECRET_PATTERN: Final = re.compile(
    r"\b(?:whsec_[A-Za-z0-9_]+|[sr]k_(?:live|test)_[A-Za-z0-9]+|sbk_[A-Za-z0-9_-]+)"
)
# `extra` fields with one of these in their name are never written, whatever their value.
SECRET_FIELD_WORDS: Final = (
    "secret",
    "password",
    "token",
    "api_key",
    "authorization",
    "signature",
    "payload",
    "body",
)
# Attributes every LogRecord has; whatever else a record carries came from `extra`.
RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    # uvicorn's copy of the message with terminal colour codes: noise in a JSON line.
    "color_message",
}


def redact(text: str) -> str:
    return SECRET_PATTERN.sub(REDACTED, text)


def _field_value(name: str, value: Any) -> Any:
    if any(word in name.lower() for word in SECRET_FIELD_WORDS):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,  # `serve --workers N` interleaves N processes' lines
        }
        for name, value in vars(record).items():
            if name not in RECORD_ATTRIBUTES and not name.startswith("_") and name not in entry:
                entry[name] = _field_value(name, value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("sensor_billing").setLevel(level)
    # The stripe SDK logs every request at INFO: one line per meter event. Our own lines say
    # what happened; its lines stay for DEBUG.
    if level != "DEBUG":
        logging.getLogger("stripe").setLevel(logging.WARNING)
