"""Vault itself enforces the limits and least privilege, not only the app (real tokens)."""

from __future__ import annotations

import time
from datetime import timedelta

import hvac
import hvac.exceptions
import pytest
from freezegun import freeze_time
from sqlalchemy import select

from vault_service import create_app
from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import Agent, AuditEvent, CredentialItem, Grant
from vault_service.services.access import request_access
from vault_service.vault import (
    APP_POLICY,
    KV_MOUNT,
    LEASE_POLICY,
    REVEAL_POLICY,
    TRANSIT_MOUNT,
    RootTokenRefused,
    VaultForbidden,
)

from .conftest import SAMPLE_ITEMS
from .helpers import client_for, item_path, key_of, lease_of, unseal_grant_token


@pytest.mark.slow
def test_expired_grant_is_refused_by_vault_even_when_the_app_check_is_bypassed(
    make_settings, openbao, ticket_system_factory
):
    app = create_app(make_settings(grant_min_seconds=2, grant_default_seconds=2))
    ticket_system, agent, client = ticket_system_factory(app)
    path = ticket_system.link_path("T-ttl")
    client.post(path, json={"items": SAMPLE_ITEMS})
    agent.login()
    # Minutes are the form's unit; ask the service for a 2-second grant directly.
    with app.app_context():
        alice = db.session.scalar(select(Agent).where(Agent.username == "alice"))
        grant = request_access(
            app.extensions["vault_service.settings"],
            app.extensions["vault_service.vault"],
            alice,
            "T-ttl",
            reason="ttl test",
            duration_seconds=2,
        )
    token = unseal_grant_token(app, grant.id)
    lookup = openbao.admin().auth.token.lookup_accessor(grant.token_accessor)["data"]
    assert lookup["ttl"] <= 2 and lookup["renewable"] is False

    time.sleep(3)
    # The app's own clock is pinned to a moment inside the window: its check passes, Vault's not.
    with freeze_time(grant.created_at + timedelta(seconds=1)):
        response = agent.reveal("T-ttl", grant.id)
    assert response.status_code == 403
    assert "Vault refused" in response.get_data(as_text=True)
    with app.app_context():
        last = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert (last.action, last.outcome) == ("credentials.revealed", "denied")
        assert last.details["reason"] == "refused by vault"
        item_ids = [i.id for i in db.session.scalars(select(CredentialItem))]
    lease = lease_of(app, "T-ttl")
    with pytest.raises(hvac.exceptions.Forbidden):
        client_for(openbao, token).secrets.kv.v2.read_secret_version(
            path=item_path(lease.id, item_ids[0]),
            mount_point=KV_MOUNT,
            raise_on_deleted_version=True,
        )


def test_lease_and_grant_tokens_have_the_shape_the_design_requires(
    app, agent, submitted_ticket, openbao, settings
):
    lease = lease_of(app, submitted_ticket)
    admin = openbao.admin()
    lease_token = admin.auth.token.lookup_accessor(lease.token_accessor)["data"]
    assert lease_token["orphan"] is True
    assert sorted(lease_token["policies"]) == sorted([REVEAL_POLICY, LEASE_POLICY])
    assert lease_token["entity_id"] == lease.entity_id
    assert lease_token["renewable"] is False
    assert settings.max_retention_seconds - 60 <= lease_token["ttl"]
    assert lease_token["ttl"] <= settings.max_retention_seconds

    agent.login()
    agent.request_access(submitted_ticket, minutes=15)
    with app.app_context():
        grant = db.session.scalar(select(Grant))
    grant_token = admin.auth.token.lookup_accessor(grant.token_accessor)["data"]
    assert grant_token["policies"] == [REVEAL_POLICY]
    assert grant_token["entity_id"] == lease.entity_id  # inherited: scopes it to this lease
    assert grant_token["orphan"] is False  # a child: revoking the lease revokes it
    assert grant_token["renewable"] is False
    assert 15 * 60 - 60 <= grant_token["ttl"] <= 15 * 60

    # Revoking the lease alone (as an attacker-proof backstop) takes the grant with it.
    admin.auth.token.revoke_accessor(lease.token_accessor)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        admin.auth.token.lookup_accessor(grant.token_accessor)


def test_app_token_cannot_read_or_decrypt_credentials(app, submitted_ticket, openbao, vault):
    lease = lease_of(app, submitted_ticket)
    with app.app_context():
        item_id = db.session.scalars(select(CredentialItem.id)).first()
    app_client = vault._app()
    assert app_client.auth.token.lookup_self()["data"]["policies"] == [APP_POLICY]
    with pytest.raises(hvac.exceptions.Forbidden):
        app_client.secrets.kv.v2.read_secret_version(
            path=item_path(lease.id, item_id), mount_point=KV_MOUNT, raise_on_deleted_version=True
        )
    stored = openbao.admin().secrets.kv.v2.read_secret_version(
        path=item_path(lease.id, item_id), mount_point=KV_MOUNT
    )["data"]["data"]["ciphertext"]
    assert stored.startswith("vault:v1:")
    with pytest.raises(hvac.exceptions.Forbidden):
        app_client.secrets.transit.decrypt_data(
            name=key_of(lease.id), ciphertext=stored, mount_point=TRANSIT_MOUNT
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        app_client.secrets.transit.export_key(
            name=key_of(lease.id), key_type="encryption-key", mount_point=TRANSIT_MOUNT
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        app_client.sys.create_or_update_acl_policy(name="anything-else", policy='path "*" {}')


def test_grant_of_one_ticket_cannot_read_another_ticket_or_mint_tokens(
    app, agent, ticket_system, client, openbao
):
    for ref in ("T-a", "T-b"):
        client.post(ticket_system.link_path(ref), json={"items": SAMPLE_ITEMS})
    agent.login()
    agent.request_access("T-a")
    grant_id = agent.current_grant_id("T-a")
    token = unseal_grant_token(app, grant_id)
    other = lease_of(app, "T-b")
    with app.app_context():
        other_item = db.session.scalar(
            select(CredentialItem.id).where(CredentialItem.lease_id == other.id)
        )
    grant_client = client_for(openbao, token)
    with pytest.raises(hvac.exceptions.Forbidden):
        grant_client.secrets.kv.v2.read_secret_version(
            path=item_path(other.id, other_item),
            mount_point=KV_MOUNT,
            raise_on_deleted_version=True,
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        grant_client.auth.token.create(policies=[REVEAL_POLICY], ttl="1h")


def test_vault_refuses_a_second_write_to_an_item_twice_over(app, submitted_ticket, vault, openbao):
    lease = lease_of(app, submitted_ticket)
    with app.app_context():
        item_id = db.session.scalars(select(CredentialItem.id)).first()
    # The app's policy grants "create" only: an existing item cannot be updated at all...
    with pytest.raises(VaultForbidden):
        vault.write_item(lease.id, item_id, "vault:v1:overwrite-attempt")
    # ...and even a root token is held to cas=0 by the mount's cas_required.
    with pytest.raises(hvac.exceptions.InvalidRequest):
        openbao.admin().secrets.kv.v2.create_or_update_secret(
            path=item_path(lease.id, item_id),
            secret={"ciphertext": "x"},
            cas=0,
            mount_point=KV_MOUNT,
        )


def test_app_refuses_to_operate_with_a_root_token(make_settings, openbao, ticket_system_factory):
    app = create_app(make_settings(vault_token=openbao.root_token))
    ticket_system, _, _ = ticket_system_factory(app)
    response = ticket_system.create_link("T-root")
    assert response.status_code == 503
    with pytest.raises(RootTokenRefused):
        app.extensions["vault_service.vault"].lookup_self()


def test_closed_ticket_refuses_reveal_even_while_vault_is_down(
    make_settings, app, agent, submitted_ticket, ticket_system, ticket_system_factory
):
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)
    assert ticket_system.close(submitted_ticket).status_code == 202
    with app.app_context():
        assert db.session.get(Grant, grant_id).revoked_at <= utcnow()
    # The same database behind a Vault that does not answer: the refusal needs no Vault.
    offline = create_app(make_settings(vault_addr="http://127.0.0.1:9"))
    _, offline_agent, _ = ticket_system_factory(offline)
    offline_agent.login()
    response = offline_agent.reveal(submitted_ticket, grant_id)
    assert response.status_code == 403
    assert "Access to these credentials has ended" in response.get_data(as_text=True)


def test_app_token_can_write_no_policy_and_mint_nothing_but_ticket_tokens(vault):
    """The escalation path of per-ticket policies is closed: no policy write at all."""
    app_client = vault._app()
    for name in ("vault-service-ticket-x", "vault-service", "anything"):
        with pytest.raises(hvac.exceptions.Forbidden):
            app_client.sys.create_or_update_acl_policy(name=name, policy='path "*" {}')
    for policies in (["root"], ["vault-service"], ["default"], [REVEAL_POLICY, "vault-service"]):
        with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
            app_client.auth.token.create(
                role_name="vault-service-ticket-lease", policies=policies, ttl="1h"
            )
    with pytest.raises(hvac.exceptions.Forbidden):
        app_client.auth.token.create(policies=[REVEAL_POLICY], ttl="1h")  # not via the role
