"""Crash points for fault tests: the process kills itself (SIGKILL) at a named step.

`VAULT_SERVICE_FAILPOINTS=purge.after_revoke` makes a worker die right after revoking a lease's
tokens, so a test can prove the purge resumes correctly; `submission.after_vault_writes` makes an
app process die between a submission's Vault writes and the transaction that consumes its link.
Ignored in production, so a stray variable can never take a production process down.
"""

from __future__ import annotations

import os
import signal


def hit(name: str) -> None:
    """Die here if this failpoint is armed (never in production)."""
    if os.environ.get("VAULT_SERVICE_ENV", "production") == "production":
        return
    armed = os.environ.get("VAULT_SERVICE_FAILPOINTS", "").split(",")
    if name in armed:
        os.kill(os.getpid(), signal.SIGKILL)
