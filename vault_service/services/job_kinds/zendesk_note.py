"""Replies and internal notes posted to Zendesk tickets (services/connectors/zendesk.py)."""

from ..connectors.notes import note_job_kind

KIND = note_job_kind("zendesk")
