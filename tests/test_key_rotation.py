"""Key rotation without a reset: VAULT_SERVICE_SECRET_KEY as a list (the first signs, every one
verifies) and the app's transit key rotated in Vault. A session, an unused link, a status page,
its delete confirmation, the received-proof cookie and TOTP sign-in all outlive a rotation while
the old key stays listed, and end once it is removed; grants sealed before a transit rotation
still reveal."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from vault_service import create_app
from vault_service.extensions import db
from vault_service.models import Agent, Grant, SubmissionLink
from vault_service.services import totp
from vault_service.services.tickets import hash_link_token
from vault_service.vault import APP_KEY, TRANSIT_MOUNT

from .conftest import SAMPLE_ITEMS
from .helpers import GOOD, form_post

pytestmark = pytest.mark.usefixtures("openbao")

ORIGIN = "http://localhost"
NEW_KEY = "new-secret-key-" + "n" * 40
JSON_ACCEPT = {"Accept": "application/json"}


def ciphertext_of(app, username: str) -> str:
    with app.app_context():
        value = db.session.scalar(
            select(Agent.totp_secret_ciphertext).where(Agent.username == username)
        )
        db.session.rollback()
    assert value
    return value


def nonce_of(page: str) -> str:
    match = re.search(r'name="nonce" value="([^"]+)"', page)
    assert match, "no confirmation form on the page"
    return match.group(1)


def test_rotating_the_secret_key_ends_nothing_until_the_old_key_is_removed(
    app, client, ticket_system, agent, make_settings, settings
):
    old_key = settings.signing_key
    agent.create("bob")  # enrolled under the old key, and never signs in during the window
    agent.create("carol")
    agent.create("dave")
    # Each agent signs in at most twice: a test has three TOTP codes per 30-second step.
    assert agent.login("dave").status_code == 302
    # Carol signs in before the rotation and leaves her browser idle through it.
    idle = type(agent)(app.test_client(), app)
    assert idle.login("carol").status_code == 302
    unused_link = ticket_system.link_path("T-rotate")
    kept_for_later = ticket_system.link_path("T-rotate")
    used_link = ticket_system.link_path("T-rotate")
    # A browser's form post: the submitting browser gets its received-proof cookie.
    assert form_post(client, used_link, GOOD).status_code == 201
    status_link = ticket_system.link_path("T-rotate-status")
    submitted = client.post(status_link, json={"items": SAMPLE_ITEMS})
    assert submitted.status_code == 201
    status_path = submitted.get_json()["status_url"].removeprefix(ORIGIN)
    confirm = client.get(f"{status_path}?confirm=delete").get_data(as_text=True)
    old_nonce = nonce_of(confirm)

    # The rotation: the new key first, the old one second. Same browser, same database.
    rotated = create_app(make_settings(secret_key=f"{NEW_KEY} {old_key}"))
    client.application = rotated

    # The session signed under the old key still opens the agent's pages.
    home = client.get("/")
    assert home.status_code == 200, home.headers.get("Location")
    # The unused link still opens, the used one still says "received" to its submitter, the
    # status page still answers and its confirmation made before the rotation still confirms.
    assert client.get(unused_link).status_code == 200
    received = client.get(used_link)
    assert received.status_code == 410 and "Already received" in received.get_data(as_text=True)
    assert client.get(status_path, headers=JSON_ACCEPT).status_code == 200
    # A link made now is hashed under the new key alone.
    fresh_link = ticket_system.link_path("T-rotate-new")  # a ticket of its own
    with rotated.app_context():
        hashes = set(db.session.scalars(select(SubmissionLink.token_hash)))
        db.session.rollback()
    new_settings = rotated.extensions["vault_service.settings"]
    assert hash_link_token(new_settings, fresh_link.removeprefix("/s/")) in hashes
    assert hash_link_token(settings, fresh_link.removeprefix("/s/")) not in hashes

    # TOTP sign-in in a new browser: alice's secret was encrypted under the old key; signing in
    # re-encrypts it under the new one.
    assert not totp.is_under_signing_key(new_settings.secret_keys, ciphertext_of(rotated, "alice"))
    browser = type(agent)(rotated.test_client(), rotated)
    assert browser.login().status_code == 302
    assert totp.is_under_signing_key(new_settings.secret_keys, ciphertext_of(rotated, "alice"))
    assert not totp.is_under_signing_key(new_settings.secret_keys, ciphertext_of(rotated, "bob"))

    # The unused link takes its submission; the old confirmation deletes.
    assert client.post(unused_link, json={"items": SAMPLE_ITEMS}).status_code == 201
    deleted = client.post(
        f"{status_path}?confirm=delete",
        data={"action": "delete", "nonce": old_nonce},
        headers={"Origin": ORIGIN},
    )
    assert deleted.status_code == 202

    # The old key removed: everything made under it alone ends.
    only_new = create_app(make_settings(secret_key=NEW_KEY))
    client.application = only_new
    idle.client.application = only_new
    # Carol's idle session, signed under the old key only, now ends. (Dave's may live on:
    # Flask re-signs a session cookie under the first key whenever a request changes it.)
    assert idle.client.get("/").headers["Location"].startswith("/login")
    assert client.get(kept_for_later).status_code == 410
    gone = client.get(used_link)
    assert gone.status_code == 410 and "Already received" not in gone.get_data(as_text=True)
    assert client.get(status_path, headers=JSON_ACCEPT).status_code == 404
    # Alice signed in during the window and keeps her second factor; bob must re-enrol.
    browser = type(agent)(only_new.test_client(), only_new)
    assert browser.login().status_code == 302
    assert browser.login("bob").status_code == 401
    # The link made after the rotation works under the new key alone.
    assert client.get(fresh_link).status_code == 200


def test_every_listed_secret_key_must_be_long_enough(make_settings):
    from vault_service.config import ConfigError

    with pytest.raises(ConfigError, match="32\\+"):
        make_settings(secret_key=f"{NEW_KEY} too-short-old-key")


def grant_ciphertexts(app) -> list[str]:
    with app.app_context():
        values = list(db.session.scalars(select(Grant.token_ciphertext)))
        db.session.rollback()
    return values


def test_rotating_the_app_transit_key_keeps_sealed_grants_and_leases_readable(
    app, client, ticket_system, agent, openbao
):
    for ref in ("T-transit-1", "T-transit-2"):
        path = ticket_system.link_path(ref)
        assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
    assert agent.login().status_code == 302
    assert agent.request_access("T-transit-1").status_code == 302
    grant_id = agent.current_grant_id("T-transit-1")
    (before,) = grant_ciphertexts(app)

    # What an operator types: bao write -f vault-service-transit/keys/vault-service-app/rotate
    admin = openbao.admin()
    admin.secrets.transit.rotate_key(name=APP_KEY, mount_point=TRANSIT_MOUNT)
    latest = admin.secrets.transit.read_key(name=APP_KEY, mount_point=TRANSIT_MOUNT)["data"][
        "latest_version"
    ]
    assert not before.startswith(f"vault:v{latest}:")

    # The grant sealed under the old version still reveals; the second ticket's lease token,
    # sealed under the old version, still grants, and its new grant is sealed under the new one.
    revealed = agent.reveal("T-transit-1", grant_id)
    assert revealed.status_code == 200
    assert SAMPLE_ITEMS[0]["username"] in revealed.get_data(as_text=True)
    assert agent.request_access("T-transit-2").status_code == 302
    assert agent.reveal("T-transit-2").status_code == 200
    after = [c for c in grant_ciphertexts(app) if c != before]
    assert len(after) == 1 and after[0].startswith(f"vault:v{latest}:")
