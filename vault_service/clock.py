"""The one clock: every 'now' in the service comes from here, so tests pin it with freezegun."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware current time in UTC."""
    return datetime.now(UTC)
