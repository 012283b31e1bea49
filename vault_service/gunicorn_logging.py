"""gunicorn's own log lines in the app's JSON shape, with every capability token redacted.

gunicorn logs the raw request line in places the app never sees: "Invalid request from ip=...:
Invalid HTTP Version: 'GET /s/<token>\\xff HTTP/1.1'" for a malformed line, and "Error handling
request GET /s/<token>" when a worker fails. A link token (`/s/...`) or status token (`/r/...`)
is a credential: whoever holds it can submit or delete. Every record of gunicorn's loggers passes
through `redact_capabilities` before it is formatted, so no handler (stream, file or syslog)
ever receives one. Used through `logger_class` in vault_service/gunicorn_conf.py.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger

from .logs import JsonFormatter

REDACTED = "<redacted>"
# The path segment after /s/, /r/ or /setup/, whatever bytes it holds (a malformed line may carry a
# non-ASCII byte inside the token), up to the next separator.
_CAPABILITY_IN_PATH = re.compile(r"(/(?:[sr]|setup)/)[^\s/?#'\"]+")
# Any long unbroken run of URL-safe base64 (a token quoted on its own, in a query string, a
# header): 40 characters and more, so ids such as UUIDs (36) stay readable.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{40,}")


def redact(text: str) -> str:
    """The text with every capability token replaced by a marker."""
    return _TOKEN_LIKE.sub(REDACTED, _CAPABILITY_IN_PATH.sub(rf"\1{REDACTED}", text))


def redact_capabilities(record: logging.LogRecord) -> bool:
    """A logging filter: render the message once, redacted, and drop the arguments."""
    record.msg = redact(record.getMessage())
    record.args = None
    return True


class JsonLogger(Logger):
    """gunicorn's logger with the app's JSON formatter and the redacting filter on every handler."""

    def setup(self, cfg) -> None:  # type: ignore[no-untyped-def]
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
                if redact_capabilities not in handler.filters:
                    handler.addFilter(redact_capabilities)
