"""`vault-service doctor`: each check of a running deployment, reported one by one."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from .. import schema
from ..config import Settings
from ..transactions import read_only
from ..vault import (
    APP_POLICY,
    APPROLE_ROLE,
    LEASE_POLICY,
    POLICY_FILES,
    RECEIPT_KEY,
    RECEIPT_KEY_TYPE,
    REVEAL_POLICY,
    TRANSIT_KEY_TYPE,
    AdminPosture,
    TLSOptions,
    Vault,
    VaultError,
    read_admin_posture,
    read_posture,
)
from .deployment import check_deployment
from .jobs import FAILING_AFTER_ATTEMPTS, failing_jobs, registered_kinds

# An AppRole login's token lives at most this long: a stolen token soon needs the secret id again.
APPROLE_MAX_TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Finding:
    """One check's verdict."""

    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings, vault: Vault, admin_token: str | None = None) -> list[Finding]:
    """Database, Vault health, and the least-privilege posture of the app's own identity; with an
    operator's token also what only it can see (audit devices, policies, roles)."""
    database = _check_database()
    findings = [database]
    if database.ok:  # without a database there are no jobs to judge (and no traceback)
        findings.append(_check_schema())
        if findings[-1].ok:  # an older schema may have no jobs table to read
            findings += _check_jobs()
    try:
        health = vault.health()
        findings.append(
            Finding("vault reachable", not health.get("sealed"), f"version {health.get('version')}")
        )
        posture = read_posture(vault)
    except VaultError as error:
        findings.append(Finding("vault", False, str(error)))
        return findings
    if database.ok:
        findings.append(_check_deployment(vault))
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
        check_receipt_key(posture["receipt_key"]),
    ]
    if admin_token is None:
        findings.append(check_lease_keys(posture["lease_keys"], "as seen by the app token"))
        return findings
    try:
        admin = read_admin_posture(
            settings.vault_addresses,
            admin_token,
            settings.vault_timeout_seconds,
            TLSOptions.from_settings(settings),
        )
    except VaultError as error:
        findings.append(Finding("vault admin checks", False, str(error)))
        return findings
    findings.append(check_lease_keys(admin["lease_keys"], "as seen by the admin token"))
    findings += admin_findings(admin)
    return findings


def _check_deployment(vault: Vault) -> Finding:
    """This database owns its deployment id in Vault (claiming it when unclaimed): a second
    database on the same id would have its sweep take the first one's tickets for orphans."""
    name = f"deployment {vault.deployment}"
    try:
        check = check_deployment(vault)
    except VaultError as error:
        return Finding(name, False, str(error))
    except Exception as error:  # noqa: BLE001 - e.g. a schema without the identity table
        return Finding(name, False, type(error).__name__)
    if check.ours:
        return Finding(name, True, f"owned by this database ({check.database_id})")
    return Finding(
        name,
        False,
        f"owned by another database ({check.owner}; this one is {check.database_id}): "
        "two deployments share these names in Vault, so the orphan sweep and new links are "
        "refused; give this one its own VAULT_SERVICE_DEPLOYMENT_ID",
    )


def _check_database() -> Finding:
    try:
        with read_only() as session:
            session.execute(text("SELECT 1"))
            dialect = session.get_bind().dialect.name
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return Finding("database", False, type(error).__name__)
    return Finding("database", True, dialect)


def _check_schema() -> Finding:
    """The database at the code's migration head: older, the code's queries would fail."""
    with read_only() as session:
        state = schema.schema_state(session.connection())
    return Finding(
        "schema revision", state == "ok", state if state != "ok" else schema.head_revision()
    )


def _check_jobs() -> list[Finding]:
    """One finding per job kind: a job failing again and again is a promise not yet kept."""
    with read_only():
        failing = failing_jobs()
    findings = []
    for kind in registered_kinds():
        mine = [job for job in failing if job.kind == kind]
        detail = (
            f"{len(mine)} job(s) failed {FAILING_AFTER_ATTEMPTS}+ times: "
            + ", ".join(f"{job.id} ({job.last_error})" for job in mine)
            if mine
            else "none failing"
        )
        findings.append(Finding(f"{kind} jobs", not mine, detail))
    return findings


def check_lease_keys(keys: dict[str, dict[str, Any]], seen_by: str) -> Finding:
    """Every lease key stays inside Vault: not exportable, no plaintext backup.
    (`deletion_allowed` is true on purpose: the purge deletes the key.)"""
    problems = []
    for name, props in keys.items():
        wrong = [
            label
            for label, bad in (
                ("exportable", props.get("exportable") is not False),
                ("plaintext backup allowed", props.get("allow_plaintext_backup") is not False),
                (f"type {props.get('type')}", props.get("type") != TRANSIT_KEY_TYPE),
            )
            if bad
        ]
        if wrong:
            problems.append(f"{name} ({', '.join(wrong)})")
    if problems:
        return Finding("ticket keys stay in vault", False, "; ".join(problems))
    return Finding("ticket keys stay in vault", True, f"{len(keys)} key(s) checked, {seen_by}")


def check_receipt_key(props: dict[str, Any] | None) -> Finding:
    """The key that signs deletion receipts exists, is ed25519, and can never leave Vault."""
    name = f"receipt signing key {RECEIPT_KEY}"
    if props is None:
        return Finding(name, False, "missing: run bootstrap-vault")
    wrong = [
        label
        for label, bad in (
            (f"type {props.get('type')}", props.get("type") != RECEIPT_KEY_TYPE),
            ("exportable", props.get("exportable") is not False),
            ("plaintext backup allowed", props.get("allow_plaintext_backup") is not False),
        )
        if bad
    ]
    if wrong:
        return Finding(name, False, ", ".join(wrong))
    return Finding(name, True, f"{RECEIPT_KEY_TYPE}, not exportable, no plaintext backup")


def _policy_finding(name: str, stored: str | None, expected: str, source: str) -> Finding:
    label = f"policy {name} matches {source}"
    if stored is None:
        return Finding(label, False, "missing in Vault")
    if stored == expected:
        return Finding(label, True, "identical")
    changed = [
        line[1:].strip()
        for line in difflib.unified_diff(expected.splitlines(), stored.splitlines(), lineterm="")
        if line[:1] in "+-" and line[:3] not in ("+++", "---") and line[1:].strip()
    ]
    shown = "; ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
    return Finding(label, False, f"differs: {shown}" if shown else "differs in whitespace")


def admin_findings(admin: AdminPosture) -> list[Finding]:
    """Verdicts on what the operator's token reads (see vault.read_admin_posture)."""
    findings = [
        Finding(
            "audit device enabled",
            bool(admin["audit_devices"]),
            ", ".join(admin["audit_devices"]) or "none: Vault keeps no record of reveals",
        )
    ]
    kv_ok = (
        admin["kv_mount_type"] == "kv"
        and admin["kv_mount_version"] == "2"
        and admin["kv_max_versions"] == 1
        and admin["kv_cas_required"] is True
    )
    findings.append(
        Finding(
            "kv mount config",
            kv_ok,
            f"type {admin['kv_mount_type']} v{admin['kv_mount_version']}, "
            f"max_versions={admin['kv_max_versions']}, cas_required={admin['kv_cas_required']}",
        )
    )
    expected = admin["expected_policies"]
    for name, file_name in POLICY_FILES.items():
        findings.append(
            _policy_finding(
                name, admin["policies"].get(name), expected[name], f"policies/{file_name}"
            )
        )
    findings.append(check_lease_role(admin["lease_role"]))
    findings.append(check_approle(admin["approle"]))
    return findings


def check_lease_role(role: dict[str, Any] | None) -> Finding:
    """The token role the app mints lease tokens through: exactly the two ticket policies, no
    glob that could widen them, orphan, not renewable."""
    name = "lease token role"
    if role is None:
        return Finding(name, False, "missing: run bootstrap-vault")
    problems = []
    if sorted(role.get("allowed_policies") or []) != sorted([REVEAL_POLICY, LEASE_POLICY]):
        problems.append(f"allowed_policies {role.get('allowed_policies')}")
    if role.get("allowed_policies_glob"):
        problems.append(f"allowed_policies_glob {role.get('allowed_policies_glob')}")
    if "default" not in (role.get("disallowed_policies") or []):
        problems.append("default policy not disallowed")
    if role.get("orphan") is not True:
        problems.append("not orphan")
    if role.get("renewable") is not False:
        problems.append("renewable")
    if problems:
        return Finding(name, False, "; ".join(problems))
    return Finding(name, True, "the two ticket policies only, orphan, not renewable")


def check_approle(role: dict[str, Any] | None) -> Finding:
    """The app's AppRole role, when it exists: the app policy alone, no default policy, short
    tokens, a secret id required. The secret id's lifetime and CIDR bindings are reported."""
    name = f"approle role {APPROLE_ROLE}"
    if role is None:
        return Finding(name, True, "not configured (the app uses a token)")
    problems = []
    if (role.get("token_policies") or []) != [APP_POLICY]:
        problems.append(f"token_policies {role.get('token_policies')}")
    if role.get("token_no_default_policy") is not True:
        problems.append("tokens get the default policy")
    ttl = role.get("token_ttl") or 0
    if not 0 < ttl <= APPROLE_MAX_TOKEN_TTL_SECONDS:
        # 0 means the mount's default (32 days unless tuned): not short.
        problems.append(f"token_ttl {ttl}s (want 1..{APPROLE_MAX_TOKEN_TTL_SECONDS}s)")
    if role.get("bind_secret_id") is not True:
        problems.append("no secret id required")
    secret_ttl = role.get("secret_id_ttl") or 0
    report = (
        f"token_ttl {ttl}s, secret id "
        + (f"expires after {secret_ttl}s" if secret_ttl else "never expires")
        + f", secret_id_bound_cidrs {role.get('secret_id_bound_cidrs') or 'none'}"
        + f", token_bound_cidrs {role.get('token_bound_cidrs') or 'none'}"
    )
    if problems:
        return Finding(name, False, "; ".join(problems) + f" ({report})")
    return Finding(name, True, report)
