"""Customer-visible and internal articles posted to Zammad tickets (connectors/zammad.py)."""

from ..connectors.notes import note_job_kind

KIND = note_job_kind("zammad")
