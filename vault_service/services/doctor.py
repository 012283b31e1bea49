"""`vault-service doctor`: each check of a running deployment, reported one by one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from ..config import Settings
from ..extensions import db
from ..vault import APP_POLICY, Vault, VaultError, read_posture
from .purge import FAILING_AFTER_ATTEMPTS, failing_jobs


@dataclass(frozen=True)
class Finding:
    """One check's verdict."""

    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings, vault: Vault) -> list[Finding]:
    """Database, Vault health, and the least-privilege posture of the app's own identity."""
    findings = []
    try:
        db.session.execute(text("SELECT 1"))
        findings.append(Finding("database", True, db.engine.dialect.name))
    except Exception as error:  # noqa: BLE001 - reported, not raised
        findings.append(Finding("database", False, type(error).__name__))
    finally:
        db.session.rollback()
    failing = failing_jobs()
    db.session.rollback()
    findings.append(
        Finding(
            "purge jobs",
            not failing,
            f"{len(failing)} job(s) failed {FAILING_AFTER_ATTEMPTS}+ times: "
            + ", ".join(f"{job.id} ({job.last_error})" for job in failing)
            if failing
            else "none failing",
        )
    )
    try:
        health = vault.health()
        findings.append(
            Finding("vault reachable", not health.get("sealed"), f"version {health.get('version')}")
        )
        posture = read_posture(vault)
    except VaultError as error:
        findings.append(Finding("vault", False, str(error)))
        return findings
    findings += [
        Finding(
            "app token policy",
            posture["token_policies"] == [APP_POLICY],
            ", ".join(posture["token_policies"]),
        ),
        Finding(
            "kv max_versions=1", posture["kv_max_versions"] == 1, str(posture["kv_max_versions"])
        ),
        Finding(
            "kv cas_required", posture["kv_cas_required"] is True, str(posture["kv_cas_required"])
        ),
        Finding("app key not exportable", posture["app_key_exportable"] is False, ""),
        Finding("app key no plaintext backup", posture["app_key_plaintext_backup"] is False, ""),
        Finding(
            "app token cannot read credentials",
            posture["direct_kv_read"] == "denied",
            posture["direct_kv_read"],
        ),
    ]
    return findings
