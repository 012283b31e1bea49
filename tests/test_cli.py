"""The operator commands, against the real OpenBao."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from vault_service.cli import main
from vault_service.extensions import db
from vault_service.models import Agent

from .conftest import SAMPLE_ITEMS


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
