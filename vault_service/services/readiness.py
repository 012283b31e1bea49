"""Readiness: can this instance serve? The database, Vault and the app's identity, checked."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from ..transactions import read_only
from ..vault import Vault, VaultError
from . import jobs


@dataclass(frozen=True)
class Readiness:
    """Each check's outcome ("ok" or why not), and failing jobs by kind (None: not known)."""

    checks: dict[str, str]
    failing_jobs: dict[str, int] | None

    @property
    def ready(self) -> bool:
        return all(value == "ok" for value in self.checks.values())

    def as_json(self) -> dict:
        """The /readyz body: status, checks, and `<kind>_jobs` per job kind ("purge_jobs")."""
        body: dict = {"status": "ready" if self.ready else "not_ready", "checks": self.checks}
        for kind, failing in (self.failing_jobs or {}).items():
            body[f"{kind}_jobs"] = f"failing: {failing}" if failing else "ok"
        return body


def _check_database() -> str:
    try:
        with read_only() as session:
            session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return "unavailable"
    return "ok"


def _check_vault(vault: Vault) -> dict[str, str]:
    try:
        health = vault.health()
    except VaultError:
        return {"vault": "unavailable"}
    if health.get("sealed"):
        return {"vault": "sealed"}
    # Reachable is not enough: an expired or revoked app token would fail every real call.
    try:
        vault.lookup_self()
    except VaultError:
        return {"vault": "ok", "vault_auth": "refused"}
    return {"vault": "ok", "vault_auth": "ok"}


def check_readiness(vault: Vault) -> Readiness:
    """The database answers, Vault is reachable and unsealed, and it accepts the app's identity.

    Failing jobs are reported, not a readiness failure: this instance serves fine, but an
    operator must look (a purge that keeps failing is a promise not yet kept).
    """
    checks = {"database": _check_database(), **_check_vault(vault)}
    failing = jobs.failing_counts() if checks["database"] == "ok" else None
    return Readiness(checks, failing)
