"""TLS to Vault: an OpenBao listener with a certificate from a CA the tests make. The app, the
worker pass, bootstrap-vault and doctor trust it through VAULT_SERVICE_VAULT_CA_CERT only, and a
certificate that is not trusted is reported as a TLS failure, never as "unreachable"."""

from __future__ import annotations

import hvac
import pytest
from click.testing import CliRunner

from vault_service import create_app
from vault_service.cli import main
from vault_service.devtools.embedded_openbao import EmbeddedOpenBao
from vault_service.devtools.processes import free_port
from vault_service.devtools.tls import make_ca
from vault_service.extensions import db
from vault_service.models import CredentialItem
from vault_service.vault import (
    TLSOptions,
    VaultTLSError,
    bootstrap_vault,
    issue_app_token,
)

from .helpers import run_worker_pass


class TLSOpenBao:
    def __init__(self, server: EmbeddedOpenBao, ca_file, root_token: str, app_token: str):
        self.server, self.addr, self.ca_file = server, server.addr, ca_file
        self.root_token, self.app_token = root_token, app_token


@pytest.fixture(scope="module")
def tls_openbao(tmp_path_factory) -> TLSOpenBao:
    """OpenBao over HTTPS only, its certificate signed by a CA made for this module."""
    ca = make_ca(tmp_path_factory.mktemp("ca"))
    server = EmbeddedOpenBao(tmp_path_factory.mktemp("openbao-tls"), free_port(), tls=ca.server)
    server.start()
    try:
        init = server.ensure_initialized_and_unsealed()
        tls = TLSOptions(ca_cert=str(ca.ca_file))
        bootstrap_vault(server.addr, init.root_token, tls=tls)
        token = issue_app_token(server.addr, init.root_token, 3600, tls=tls).token
        yield TLSOpenBao(server, ca.ca_file, init.root_token, token)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that signed nothing OpenBao presents."""
    return make_ca(tmp_path_factory.mktemp("other-ca"), name="someone else's CA").ca_file


def test_the_lifecycle_runs_over_tls_with_the_ca_from_the_settings(
    tls_openbao, make_settings, ticket_system_factory
):
    assert tls_openbao.addr.startswith("https://")
    app = create_app(
        make_settings(
            vault_addr=tls_openbao.addr,
            vault_token=tls_openbao.app_token,
            vault_ca_cert=str(tls_openbao.ca_file),
        )
    )
    ticket_system, agent, client = ticket_system_factory(app)
    assert client.get("/readyz").status_code == 200
    path = ticket_system.link_path("T-tls")
    item = {"kind": "other", "label": "over TLS", "secret": "tls ✓ secret"}
    assert client.post(path, json={"items": [item]}).status_code == 201
    assert agent.login().status_code == 302
    assert agent.request_access("T-tls").status_code == 302
    assert "tls ✓ secret" in agent.reveal("T-tls").get_data(as_text=True)
    assert ticket_system.close("T-tls").status_code == 202
    assert run_worker_pass(app).as_json()["purges_completed"] == 1
    assert ticket_system.status("T-tls").get_json()["status"] == "purged"
    with app.app_context():
        assert db.session.query(CredentialItem).count() == 0
    # Vault itself, over TLS too: the ticket's key is gone.
    admin = hvac.Client(
        url=tls_openbao.addr, token=tls_openbao.root_token, verify=str(tls_openbao.ca_file)
    )
    keys = admin.secrets.transit.list_keys(mount_point="vault-service-transit")["data"]["keys"]
    assert all(not key.startswith("ticket-") for key in keys)


@pytest.mark.parametrize("trust", ["other CA", "system store"])
def test_an_untrusted_certificate_is_reported_as_a_tls_failure(
    tls_openbao, other_ca, make_settings, trust, monkeypatch
):
    # The right CA in the variables requests and hvac would read is ignored on purpose: trust is
    # configured in one place.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_openbao.ca_file))
    monkeypatch.setenv("VAULT_CACERT", str(tls_openbao.ca_file))
    app = create_app(
        make_settings(
            vault_addr=tls_openbao.addr,
            vault_token=tls_openbao.app_token,
            vault_ca_cert=str(other_ca) if trust == "other CA" else "",
        )
    )
    vault = app.extensions["vault_service.vault"]
    with app.app_context(), pytest.raises(VaultTLSError) as refused:
        vault.health()
    message = str(refused.value)
    assert "TLS certificate verify failed" in message
    assert "VAULT_SERVICE_VAULT_CA_CERT" in message
    assert "unreachable" not in message and "too slow" not in message
    readiness = app.test_client().get("/readyz")
    assert readiness.status_code == 503
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1
    assert "[FAIL] vault: health: TLS certificate verify failed" in result.output


def test_bootstrap_vault_uses_the_ca_from_its_variable(
    tls_openbao, other_ca, tmp_path, monkeypatch
):
    token_file = tmp_path / "admin-token"
    token_file.write_text(tls_openbao.root_token)
    monkeypatch.setenv("VAULT_ADDR", tls_openbao.addr)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_openbao.ca_file))  # ignored
    monkeypatch.setenv("VAULT_SERVICE_VAULT_CA_CERT", str(other_ca))
    args = ["bootstrap-vault", "--admin-token-file", str(token_file)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    assert "TLS certificate verify failed" in refused.output
    assert "Traceback" not in refused.output

    monkeypatch.setenv("VAULT_SERVICE_VAULT_CA_CERT", str(tls_openbao.ca_file))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "audit devices present: file/" in result.output


def test_doctor_with_an_admin_token_checks_the_posture_over_tls(
    tls_openbao, other_ca, make_settings, ticket_system_factory, tmp_path
):
    token_file = tmp_path / "admin-token"
    token_file.write_text(tls_openbao.root_token)
    settings = {"vault_addr": tls_openbao.addr, "vault_token": tls_openbao.app_token}
    app = create_app(make_settings(**settings, vault_ca_cert=str(tls_openbao.ca_file)))
    ticket_system_factory(app)  # migrates the database
    result = app.test_cli_runner().invoke(args=["doctor", "--admin-token-file", str(token_file)])
    assert result.exit_code == 0, result.output
    assert "[ok] audit device enabled" in result.output
    assert "[ok] policy vault-service matches" in result.output
