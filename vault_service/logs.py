"""Structured log lines: an event name plus fields. Never values, tokens or Vault bodies."""

from __future__ import annotations

import json
import logging
import sys

from .clock import utcnow
from .request_context import current_request_id


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the `fields` passed through `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": utcnow().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages and tracebacks can hold the values being handled.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Send our loggers' JSON lines to stderr at the configured level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("vault_service")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # urllib3 at DEBUG logs every request line; Vault paths hold only opaque UUIDs, but there
    # is no reason to make that the line of defence.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
