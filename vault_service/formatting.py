"""Human wording for the limits shown to customers and agents."""

from __future__ import annotations


def format_duration(seconds: int) -> str:
    """'30 days', '4 hours', '90 minutes', '1 hour': the largest unit that divides evenly."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
