"""Count Vault calls from OpenBao's own file audit log: one "type":"request" line per call."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize_path(operation: str, path: str) -> str:
    """`update vault-service-kv/data/<id>/<id>`: the call's shape without its opaque ids."""
    return f"{operation} {_UUID.sub('<id>', path)}"


class AuditLog:
    """Reads the audit log incrementally; `take()` returns the calls made since the last take."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offset = 0
        self.skip()

    def skip(self) -> None:
        """Forget everything logged so far."""
        self.take()

    def take(self) -> list[str]:
        """The calls (normalized operation and path) logged since the previous call."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        # Only whole lines: OpenBao may be half-way through writing the last one.
        end = data.rfind(b"\n") + 1
        self._offset += end
        calls = []
        for line in data[:end].splitlines():
            if b'"type":"request"' not in line:
                continue
            request = json.loads(line).get("request", {})
            calls.append(normalize_path(request.get("operation", "?"), request.get("path", "?")))
        return calls


def shape(calls: list[str]) -> dict[str, int]:
    """How many calls of each shape, for the JSON report."""
    return dict(sorted(Counter(calls).items()))
