"""Job kinds: one module per kind, each defining `KIND = JobKind(...)` (see services/jobs.py)."""
