"""Production authentication: AppRole login, least privilege, and recovery from a revoked token."""

from __future__ import annotations

from vault_service import create_app
from vault_service.vault import APP_POLICY, bootstrap_vault

from .conftest import SAMPLE_ITEMS


def approle_app(openbao, make_settings):
    """An app that authenticates with a fresh AppRole secret id, as in production."""
    bootstrap_vault(openbao.addr, openbao.root_token, enable_approle=True)
    admin = openbao.admin()
    role_id = admin.auth.approle.read_role_id("vault-service")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("vault-service")["data"]["secret_id"]
    return create_app(
        make_settings(vault_token="", vault_role_id=role_id, vault_secret_id=secret_id)
    )


def test_app_logs_in_with_approle_and_holds_only_its_policy(
    openbao, make_settings, ticket_system_factory
):
    app = approle_app(openbao, make_settings)
    ticket_system, _, client = ticket_system_factory(app)
    path = ticket_system.link_path("T-approle")
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
    vault = app.extensions["vault_service.vault"]
    assert vault.lookup_self()["policies"] == [APP_POLICY]  # no "default" either
    ready = client.get("/readyz").get_json()
    assert ready["checks"] == {
        "database": "ok",
        "schema": "ok",
        "vault": "ok",
        "vault_auth": "ok",
    }


def test_app_logs_in_again_when_its_approle_token_is_revoked(
    openbao, make_settings, ticket_system_factory
):
    app = approle_app(openbao, make_settings)
    ticket_system, _, _ = ticket_system_factory(app)
    ticket_system.link_path("T-relogin-1")
    vault = app.extensions["vault_service.vault"]
    first_accessor = vault.lookup_self()["accessor"]
    openbao.admin().auth.token.revoke_accessor(first_accessor)
    assert ticket_system.create_link("T-relogin-2").status_code == 201
    assert vault.lookup_self()["accessor"] != first_accessor


def test_readiness_fails_when_vault_refuses_the_app_token(openbao, make_settings, client):
    from vault_service.vault import issue_app_token

    doomed = issue_app_token(openbao.addr, openbao.root_token, ttl_seconds=600)
    app = create_app(make_settings(vault_token=doomed.token))
    probe = app.test_client()
    assert probe.get("/readyz").status_code == 200
    openbao.admin().auth.token.revoke_accessor(doomed.accessor)
    response = probe.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["vault_auth"] == "refused"
    assert response.get_json()["checks"]["vault"] == "ok"  # Vault answered: the identity is wrong
