"""Readiness: can this instance serve? The database and its schema, Vault, and the app's identity,
checked, each with a label that names the real fault."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select, text

from .. import schema
from ..models import Job, JsonObject
from ..transactions import read_only
from ..vault import Vault, VaultError, VaultUnavailable
from . import jobs


@dataclass(frozen=True)
class Readiness:
    """Each check's outcome ("ok" or why not), and failing jobs by kind (None: not known)."""

    checks: dict[str, str]
    failing_jobs: dict[str, int] | None

    @property
    def ready(self) -> bool:
        return all(value == "ok" for value in self.checks.values())

    def as_json(self) -> JsonObject:
        """The /readyz body: status, checks, and `<kind>_jobs` per job kind ("purge_jobs")."""
        body: JsonObject = {"status": "ready" if self.ready else "not_ready", "checks": self.checks}
        for kind, failing in (self.failing_jobs or {}).items():
            body[f"{kind}_jobs"] = f"failing: {failing}" if failing else "ok"
        return body


def _check_database() -> dict[str, str]:
    try:
        with read_only() as session:
            session.execute(text("SELECT 1"))
            # A database left at an older revision answers, but the code's queries would fail
            # (or, worse, write what the old schema cannot constrain): not ready.
            state = schema.schema_state(session.connection())
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return {"database": "unavailable"}
    return {"database": "ok", "schema": "ok" if state == "ok" else "outdated"}


def vault_state(vault: Vault) -> dict[str, str]:
    """`vault`: ok | unavailable | sealed | no_leader; `vault_auth`: ok | refused, only when
    Vault itself answered (a refusal during a leader election is not the app's identity's
    fault, and must not send an operator to the AppRole settings)."""
    try:
        health = vault.health()
    except VaultError:
        return {"vault": "unavailable"}
    if health.get("sealed"):
        return {"vault": "sealed"}
    # Reachable is not enough: an expired or revoked app token would fail every real call.
    try:
        vault.lookup_self()
    except VaultUnavailable:
        # A standby answers its health check itself but forwards every other request to the
        # active node: failing here, it has none it can reach (an election, a lost quorum; its
        # sys/leader still names the dead leader, so that is no help).
        return {"vault": "no_leader" if health.get("standby") else "unavailable"}
    except VaultError:
        return {"vault": "ok", "vault_auth": "refused"}
    return {"vault": "ok", "vault_auth": "ok"}


def job_queue_counts() -> dict[str, tuple[int, int]]:
    """Unfinished and failing jobs of each registered kind (zeros included), in one read."""
    failing = case((Job.attempts >= jobs.FAILING_AFTER_ATTEMPTS, 1), else_=0)
    with read_only() as session:
        rows = session.execute(
            select(Job.kind, func.count(Job.id), func.coalesce(func.sum(failing), 0))
            .where(Job.completed_at.is_(None))
            .group_by(Job.kind)
        ).all()
    counts = dict.fromkeys(jobs.registered_kinds(), (0, 0))
    counts.update({kind: (int(total), int(bad)) for kind, total, bad in rows})
    return counts


def check_readiness(vault: Vault) -> Readiness:
    """The database answers at the code's schema revision, Vault is reachable, unsealed and led,
    and it accepts the app's identity.

    Failing jobs are reported, not a readiness failure: this instance serves fine, but an
    operator must look (a purge that keeps failing is a promise not yet kept).
    """
    checks = {**_check_database(), **vault_state(vault)}
    # An outdated schema may not even have the jobs table.
    failing = jobs.failing_counts() if checks.get("schema") == "ok" else None
    return Readiness(checks, failing)
