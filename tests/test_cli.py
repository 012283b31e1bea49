"""The operator commands, against the real OpenBao."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from vault_service.cli import main
from vault_service.extensions import db
from vault_service.models import Agent, Lease, Ticket
from vault_service.services.doctor import admin_findings
from vault_service.vault import (
    APP_POLICY,
    LEASE_POLICY,
    LEASE_TOKEN_ROLE,
    REVEAL_POLICY,
    TRANSIT_MOUNT,
    bootstrap_vault,
    policy_dir,
    read_admin_posture,
)

from .conftest import SAMPLE_ITEMS
from .helpers import key_of


def test_create_agent_hashes_the_password_and_refuses_duplicates(app, runner):
    result = runner.invoke(
        args=["create-agent", "Bob", "--role", "admin", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin bob" in result.output
    with app.app_context():
        bob = db.session.scalar(select(Agent).where(Agent.username == "bob"))
        assert bob.password_hash.startswith("scrypt:")
        assert "a long enough password" not in bob.password_hash
    again = runner.invoke(
        args=["create-agent", "bob", "--password-stdin"], input="another long password\n"
    )
    assert again.exit_code == 1
    assert "exists" in again.output


def test_create_agent_rejects_a_short_password(runner):
    result = runner.invoke(args=["create-agent", "carol", "--password-stdin"], input="short\n")
    assert result.exit_code == 1
    assert "at least 12" in result.output


def test_doctor_finds_the_bootstrapped_posture_healthy(runner):
    result = runner.invoke(args=["doctor"])
    assert result.exit_code == 0, result.output
    assert "[ok] app token cannot read credentials: denied" in result.output
    assert "[ok] kv max_versions=1" in result.output
    assert "FAIL" not in result.output


def test_sweep_runs_due_purges_and_reports_them(runner, ticket_system, client):
    path = ticket_system.link_path("T-cli")
    client.post(path, json={"items": SAMPLE_ITEMS})
    ticket_system.close("T-cli")
    result = runner.invoke(args=["sweep"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["purges_completed"] == 1
    assert ticket_system.status("T-cli").get_json()["status"] == "purged"


def test_bootstrap_is_idempotent_and_needs_an_admin_token(openbao, tmp_path, monkeypatch):
    token_file = tmp_path / "admin-token"
    token_file.write_text(openbao.root_token)
    monkeypatch.setenv("VAULT_ADDR", openbao.addr)
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["bootstrap-vault", "--admin-token-file", str(token_file)])
        assert result.exit_code == 0, result.output
        assert "audit devices present: file/" in result.output
    monkeypatch.delenv("VAULT_SERVICE_BOOTSTRAP_TOKEN", raising=False)
    result = runner.invoke(main, ["bootstrap-vault"])
    assert result.exit_code == 1
    assert "admin token is needed" in result.output


# -- doctor: the posture, with and without an operator's token ---------------------------------


@pytest.fixture
def admin_token_file(openbao, tmp_path) -> Path:
    """The session OpenBao's root token in a file, as an operator would pass an admin token."""
    path = tmp_path / "admin-token"
    path.write_text(openbao.root_token + "\n")
    path.chmod(0o600)
    return path


def doctor_lines(runner, *args: str) -> tuple[int, list[str]]:
    result = runner.invoke(args=["doctor", *args])
    return result.exit_code, result.output.splitlines()


def line_for(lines: list[str], name: str) -> str:
    matches = [line for line in lines if line.split("] ", 1)[-1].startswith(f"{name}:")]
    assert len(matches) == 1, (name, lines)
    return matches[0]


def test_doctor_checks_every_ticket_key_with_the_app_token(runner, ticket_system):
    ticket_system.link_path("T-doctor-keys")  # at least one per-ticket key exists
    code, lines = doctor_lines(runner)
    assert code == 0, lines
    assert line_for(lines, "ticket keys stay in vault").startswith("[ok]")
    assert "as seen by the app token" in line_for(lines, "ticket keys stay in vault")
    assert not [line for line in lines if "admin" in line.split(":", 1)[0]]


def test_doctor_with_an_admin_token_finds_the_bootstrapped_posture_healthy(
    runner, openbao, ticket_system, admin_token_file
):
    # The AppRole role exists in production; the check must then judge it (idempotent).
    bootstrap_vault(openbao.addr, openbao.root_token, enable_approle=True)
    ticket_system.link_path("T-doctor-admin")
    code, lines = doctor_lines(runner, "--admin-token-file", str(admin_token_file))
    assert code == 0, "\n".join(lines)
    assert not [line for line in lines if line.startswith("[FAIL]")]
    for name in (
        "audit device enabled",
        "kv mount config",
        "policy vault-service matches policies/vault-service.hcl",
        "policy vault-service-ticket-reveal matches policies/vault-service-ticket-reveal.hcl.tmpl",
        "policy vault-service-ticket-lease matches policies/vault-service-ticket-lease.hcl.tmpl",
        "lease token role",
        "approle role vault-service",
    ):
        assert line_for(lines, name).startswith("[ok]"), name
    assert "as seen by the admin token" in line_for(lines, "ticket keys stay in vault")
    assert "secret id never expires" in line_for(lines, "approle role vault-service")
    assert openbao.root_token not in "\n".join(lines)


def test_doctor_fails_naming_a_ticket_key_made_exportable(
    runner, openbao, app, ticket_system, admin_token_file
):
    ticket_system.link_path("T-doctor-export")
    with app.app_context():
        lease_id = db.session.scalar(
            select(Lease.id).join(Ticket).where(Ticket.ref == "T-doctor-export")
        )
        db.session.rollback()
    key = key_of(lease_id)
    admin = openbao.admin()
    try:
        # Exportable is a one-way switch in transit: this key can only be deleted afterwards.
        admin.secrets.transit.update_key_configuration(
            name=key, exportable=True, mount_point=TRANSIT_MOUNT
        )
        for args in ((), ("--admin-token-file", str(admin_token_file))):
            code, lines = doctor_lines(runner, *args)
            assert code == 1, lines
            failed = line_for(lines, "ticket keys stay in vault")
            assert failed.startswith("[FAIL]")
            assert f"{key} (exportable)" in failed
    finally:
        admin.secrets.transit.update_key_configuration(
            name=key, deletion_allowed=True, mount_point=TRANSIT_MOUNT
        )
        admin.secrets.transit.delete_key(name=key, mount_point=TRANSIT_MOUNT)
    code, lines = doctor_lines(runner)
    assert code == 0, lines


def test_doctor_fails_when_the_app_policy_was_widened(runner, openbao, admin_token_file):
    admin = openbao.admin()
    shipped = (policy_dir() / "vault-service.hcl").read_text()
    widened = shipped + '\npath "vault-service-kv/data/*" {\n  capabilities = ["read"]\n}\n'
    try:
        admin.sys.create_or_update_acl_policy(name=APP_POLICY, policy=widened)
        code, lines = doctor_lines(runner, "--admin-token-file", str(admin_token_file))
        assert code == 1, lines
        failed = line_for(lines, "policy vault-service matches policies/vault-service.hcl")
        assert failed.startswith("[FAIL]")
        assert 'capabilities = ["read"]' in failed
        # Without the admin token the policy text is out of sight, but its effect is not.
        code, lines = doctor_lines(runner)
        assert code == 1
        assert line_for(lines, "app token cannot read credentials").startswith("[FAIL]")
    finally:
        bootstrap_vault(openbao.addr, openbao.root_token)
    code, lines = doctor_lines(runner, "--admin-token-file", str(admin_token_file))
    assert code == 0, lines


def test_doctor_fails_when_a_ticket_policy_no_longer_matches_its_template(
    runner, openbao, admin_token_file
):
    admin = openbao.admin()
    try:
        admin.sys.create_or_update_acl_policy(
            name=REVEAL_POLICY, policy='path "vault-service-kv/data/*" { capabilities = ["read"] }'
        )
        code, lines = doctor_lines(runner, "--admin-token-file", str(admin_token_file))
        assert code == 1, lines
        name = f"policy {REVEAL_POLICY} matches policies/{REVEAL_POLICY}.hcl.tmpl"
        assert line_for(lines, name).startswith("[FAIL]")
    finally:
        bootstrap_vault(openbao.addr, openbao.root_token)


def test_doctor_fails_when_the_lease_role_allows_more(runner, openbao, admin_token_file):
    admin = openbao.admin()
    path = f"auth/token/roles/{LEASE_TOKEN_ROLE}"
    try:
        admin.write_data(
            path,
            data={
                "allowed_policies": [REVEAL_POLICY, LEASE_POLICY, APP_POLICY],
                "allowed_policies_glob": ["vault-service-*"],
                "renewable": True,
            },
        )
        code, lines = doctor_lines(runner, "--admin-token-file", str(admin_token_file))
        assert code == 1, lines
        failed = line_for(lines, "lease token role")
        assert failed.startswith("[FAIL]")
        assert "allowed_policies" in failed and "glob" in failed and "renewable" in failed
    finally:
        bootstrap_vault(openbao.addr, openbao.root_token)
    # bootstrap-vault repairs the role completely.
    code, lines = doctor_lines(runner, "--admin-token-file", str(admin_token_file))
    assert line_for(lines, "lease token role").startswith("[ok]"), lines


def test_doctor_fails_on_a_lax_approle_role_and_reports_its_secret_id(
    runner, openbao, admin_token_file
):
    admin = openbao.admin()
    bootstrap_vault(openbao.addr, openbao.root_token, enable_approle=True)
    try:
        admin.auth.approle.create_or_update_approle(
            "vault-service",
            token_policies=[APP_POLICY, "default"],
            token_no_default_policy=False,
            token_ttl="24h",
            token_max_ttl="48h",
            secret_id_ttl="720h",
            bind_secret_id=True,
        )
        code, lines = doctor_lines(runner, "--admin-token-file", str(admin_token_file))
        assert code == 1, lines
        failed = line_for(lines, "approle role vault-service")
        assert failed.startswith("[FAIL]")
        assert "tokens get the default policy" in failed
        assert "token_ttl 86400s" in failed
        assert "secret id expires after 2592000s" in failed
    finally:
        bootstrap_vault(openbao.addr, openbao.root_token, enable_approle=True)


def test_doctor_reports_a_refused_admin_token_as_a_failure(runner, tmp_path):
    token_file = tmp_path / "bad-token"
    token_file.write_text("s.not-a-token-vault-knows")
    code, lines = doctor_lines(runner, "--admin-token-file", str(token_file))
    assert code == 1
    assert line_for(lines, "vault admin checks").startswith("[FAIL]")
    assert "not-a-token" not in "\n".join(lines)


def test_doctor_judges_a_missing_audit_device_and_a_wrong_kv_mount(openbao):
    posture = read_admin_posture(openbao.addr, openbao.root_token)
    assert posture["audit_devices"]  # OpenBao 2.7 takes devices only from its config file
    findings = {
        finding.name: finding
        for finding in admin_findings({**posture, "audit_devices": [], "kv_max_versions": 3})
    }
    assert not findings["audit device enabled"].ok
    assert not findings["kv mount config"].ok
    assert "max_versions=3" in findings["kv mount config"].detail
