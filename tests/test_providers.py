"""Native help-desk webhooks on POST /api/v1/webhooks/<provider>: for each vendor, a delivery
shaped and signed as its documentation shows closes the ticket (and the purge empties Vault);
forged, tampered, stale and replayed deliveries change nothing; an unconfigured provider is
404; the status mapping is configurable."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import hvac.exceptions
import pytest
from sqlalchemy import func, select

from vault_service import create_app
from vault_service.config import ProviderSettings
from vault_service.extensions import db
from vault_service.models import Ticket, WebhookDelivery
from vault_service.services.providers import native_provider_names
from vault_service.vault import KV_MOUNT, TRANSIT_MOUNT

from .conftest import SAMPLE_ITEMS
from .helpers import folder_of, key_of, lease_of, run_worker_pass
from .vendor_deliveries import VENDOR_IDS, VENDORS, Vendor, new_delivery_id

pytestmark = pytest.mark.usefixtures("openbao")

SECRET = "a-help-desk-webhook-secret-4f9c2d"
WRONG_SECRET = "another-help-desk-secret-8e1b7a"
_numbers = itertools.count(5158)
vendors = pytest.mark.parametrize("vendor", VENDORS, ids=VENDOR_IDS)


@pytest.fixture
def settings(make_settings):
    """Every help desk enabled with SECRET (and an old secret still accepted: rotation)."""
    config = ProviderSettings(secrets=("an-old-secret-being-rotated-out", SECRET))
    return make_settings(providers=dict.fromkeys(native_provider_names(), config))


def deliver(client, vendor: Vendor, ref: str, status: str, **overrides):
    """Post one delivery; overrides: secret, timestamp, delivery_id, body (sent instead)."""
    body, headers = vendor.deliver(
        ref,
        status,
        overrides.get("secret", SECRET),
        overrides.get("timestamp", int(time.time())),
        overrides.get("delivery_id") or new_delivery_id(),
    )
    if "headers" in overrides:
        headers = {**headers, **overrides["headers"]}
    return (
        client.post(
            f"/api/v1/webhooks/{vendor.name}", data=overrides.get("body", body), headers=headers
        ),
        body,
        headers,
    )


def ticket_status(app, ref: str) -> str | None:
    with app.app_context():
        status = db.session.scalar(select(Ticket.status).where(Ticket.ref == ref))
        db.session.rollback()
    return status


def deliveries(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(WebhookDelivery))


@pytest.fixture
def open_ticket(ticket_system, client):
    """A ticket (given a vendor) with credentials submitted through its link."""

    def make(vendor: Vendor) -> str:
        ref = vendor.ref(next(_numbers))
        path = ticket_system.link_path(ref)
        assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
        return ref

    return make


@vendors
def test_a_documented_delivery_closes_the_ticket_and_the_purge_follows(
    app, client, open_ticket, vendor
):
    ref = open_ticket(vendor)
    response, _, _ = deliver(client, vendor, ref, vendor.close)
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"status": "accepted", "outcome": "closing"}
    assert ticket_status(app, ref) == "closing"
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    assert ticket_status(app, ref) == "purged"


def test_a_zendesk_close_leaves_nothing_of_the_ticket_in_vault(app, client, open_ticket, openbao):
    """Checked through Vault's own API with the root token, not through the app."""
    vendor = VENDORS[0]
    ref = open_ticket(vendor)
    lease = lease_of(app, ref)
    admin = openbao.admin()
    assert admin.secrets.kv.v2.list_secrets(path=folder_of(lease.id), mount_point=KV_MOUNT)["data"][
        "keys"
    ]
    assert deliver(client, vendor, ref, vendor.close)[0].status_code == 202
    run_worker_pass(app)
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.kv.v2.list_secrets(path=folder_of(lease.id), mount_point=KV_MOUNT)
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.transit.read_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        admin.auth.token.lookup_accessor(lease.token_accessor)
    assert admin.read(f"identity/entity/id/{lease.entity_id}") is None


@vendors
def test_a_tampered_body_is_401_and_changes_nothing(app, client, open_ticket, vendor):
    ref = open_ticket(vendor)
    harmless_ref = vendor.ref(next(_numbers))
    # Signed for another ticket; the body then edited to name this one.
    _, body, _ = deliver(client, vendor, harmless_ref, vendor.close)
    tampered = body.replace(harmless_ref.encode(), ref.encode())
    assert tampered != body
    response, _, _ = deliver(client, vendor, harmless_ref, vendor.close, body=tampered)
    expected = 202 if vendor.name == "freshdesk" else 401  # Freshdesk signs nothing
    assert response.status_code == expected
    if vendor.name != "freshdesk":
        assert response.get_json()["error"] == "unauthorized"
        assert ticket_status(app, ref) == "open"


@vendors
def test_a_delivery_under_a_wrong_secret_is_401_and_changes_nothing(
    app, client, open_ticket, vendor
):
    ref = open_ticket(vendor)
    response, _, _ = deliver(client, vendor, ref, vendor.close, secret=WRONG_SECRET)
    assert response.status_code == 401
    assert ticket_status(app, ref) == "open"
    assert deliveries(app) == 0


@vendors
def test_a_delivery_without_its_signature_header_is_401(app, client, open_ticket, vendor):
    ref = open_ticket(vendor)
    body, headers = vendor.deliver(ref, vendor.close, SECRET, int(time.time()), "d-1")
    stripped = {
        k: v
        for k, v in headers.items()
        if "signature" not in k.lower() and "secret" not in k.lower()
    }
    response = client.post(f"/api/v1/webhooks/{vendor.name}", data=body, headers=stripped)
    assert response.status_code == 401
    assert ticket_status(app, ref) == "open"


@pytest.mark.parametrize(
    "vendor",
    [v for v in VENDORS if v.signs_timestamp],
    ids=["zendesk-event", "zendesk-trigger", "glpi"],
)
def test_a_stale_signed_timestamp_is_401_and_one_inside_the_window_is_not(
    app, client, open_ticket, vendor
):
    ref = open_ticket(vendor)
    now = int(time.time())
    stale = now - vendor.tolerance - 30
    assert deliver(client, vendor, ref, vendor.close, timestamp=stale)[0].status_code == 401
    assert ticket_status(app, ref) == "open"
    late = now - vendor.tolerance + 30
    assert deliver(client, vendor, ref, vendor.close, timestamp=late)[0].status_code == 202


def test_the_timestamp_window_is_configurable_per_provider(make_settings, ticket_system_factory):
    """GLPI's cron may deliver later than a day: the operator widens its window only."""
    vendor = next(v for v in VENDORS if v.name == "glpi")
    wide = ProviderSettings(secrets=(SECRET,), tolerance_seconds=3 * 24 * 3600)
    app = create_app(make_settings(providers={"glpi": wide}))
    ticket_system, _, client = ticket_system_factory(app)
    ref = vendor.ref(next(_numbers))
    ticket_system.link_path(ref)
    two_days_ago = int(time.time()) - 2 * 24 * 3600
    assert deliver(client, vendor, ref, vendor.close, timestamp=two_days_ago)[0].status_code == 202


@vendors
def test_a_replayed_delivery_is_200_and_does_not_close_the_reopened_ticket(
    app, client, open_ticket, vendor
):
    ref = open_ticket(vendor)
    delivery_id, stamp = new_delivery_id(), int(time.time())
    first, _, _ = deliver(
        client, vendor, ref, vendor.close, delivery_id=delivery_id, timestamp=stamp
    )
    assert first.status_code == 202
    run_worker_pass(app)
    reopened, _, _ = deliver(client, vendor, ref, vendor.reopen)
    assert reopened.status_code == 202
    assert reopened.get_json()["outcome"] == "reopened"
    recorded = deliveries(app)
    replay, _, _ = deliver(
        client, vendor, ref, vendor.close, delivery_id=delivery_id, timestamp=stamp
    )
    assert replay.status_code == 200
    assert replay.get_json() == {"status": "already_processed"}
    assert ticket_status(app, ref) == "open"
    assert deliveries(app) == recorded


def test_a_freshdesk_body_repeated_after_the_dedupe_hour_is_a_new_event(app, client, open_ticket):
    """Freshdesk numbers nothing: the same bytes an hour later are a later close."""
    from freezegun import freeze_time

    vendor = next(v for v in VENDORS if v.name == "freshdesk")
    ref = open_ticket(vendor)
    assert deliver(client, vendor, ref, vendor.close)[0].status_code == 202
    run_worker_pass(app)
    assert deliver(client, vendor, ref, vendor.reopen)[0].status_code == 202
    assert deliver(client, vendor, ref, vendor.close)[0].status_code == 200  # a retry
    with freeze_time(datetime.now(UTC) + timedelta(seconds=3601)):
        again, _, _ = deliver(client, vendor, ref, vendor.close)
    assert again.status_code == 202
    assert ticket_status(app, ref) in ("closing", "purged")


@vendors
def test_an_unmapped_status_is_acknowledged_and_ignored(app, client, open_ticket, vendor):
    ref = open_ticket(vendor)
    response, _, _ = deliver(client, vendor, ref, vendor.unmapped)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored"}
    assert ticket_status(app, ref) == "open"
    assert deliveries(app) == 0


@vendors
def test_the_status_mapping_is_configurable(make_settings, ticket_system_factory, vendor):
    """E.g. VAULT_SERVICE_ZENDESK_CLOSE_STATUSES=solved,closed: purge on solved already."""
    config = ProviderSettings(
        secrets=(SECRET,),
        close_statuses=frozenset({vendor.unmapped.lower(), vendor.close.lower()}),
        reopen_statuses=frozenset({vendor.reopen.lower()}),
    )
    app = create_app(make_settings(providers={vendor.name: config}))
    ticket_system, _, client = ticket_system_factory(app)
    ref = vendor.ref(next(_numbers))
    ticket_system.link_path(ref)
    response, _, _ = deliver(client, vendor, ref, vendor.unmapped)
    assert response.status_code == 202
    assert ticket_status(app, ref) == "closing"


def test_a_status_moved_out_of_the_mapping_no_longer_closes(make_settings, ticket_system_factory):
    vendor = VENDORS[0]
    config = ProviderSettings(secrets=(SECRET,), close_statuses=frozenset({"solved"}))
    app = create_app(make_settings(providers={"zendesk": config}))
    ticket_system, _, client = ticket_system_factory(app)
    ref = vendor.ref(next(_numbers))
    ticket_system.link_path(ref)
    assert deliver(client, vendor, ref, "closed")[0].get_json() == {"status": "ignored"}
    assert ticket_status(app, ref) == "open"


@vendors
def test_an_unknown_ticket_is_a_2xx_no_op(app, client, vendor):
    response, _, _ = deliver(client, vendor, vendor.ref(next(_numbers)), vendor.close)
    assert response.status_code == 202
    assert response.get_json()["outcome"] == "unknown_ticket"


@vendors
def test_a_provider_without_a_secret_is_404(make_settings, vendor):
    app = create_app(make_settings())  # no VAULT_SERVICE_<NAME>_WEBHOOK_SECRET at all
    response, _, _ = deliver(app.test_client(), vendor, vendor.ref(1), vendor.close)
    assert response.status_code == 404


@vendors
def test_a_signed_body_that_is_not_json_is_415_or_400(app, client, open_ticket, vendor):
    ref = open_ticket(vendor)
    response, _, _ = deliver(
        client, vendor, ref, vendor.close, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert ticket_status(app, ref) == "open"


@pytest.mark.parametrize(
    "vendor",
    [v for v in VENDORS if v.name in ("zendesk", "jira", "freshdesk")],
    ids=["zendesk-event", "zendesk-trigger", "jira", "freshdesk"],
)
def test_an_unrendered_placeholder_as_ticket_id_is_400(app, client, vendor):
    """A trigger saved with a typo sends `{{ticket.id}}` verbatim: a clear 400, no record."""
    response, _, _ = deliver(client, vendor, "{{ticket.id}}", vendor.close)
    assert response.status_code == 400
    assert deliveries(app) == 0


@vendors
def test_an_oversized_delivery_is_413(client, vendor):
    response, _, _ = deliver(client, vendor, "1", vendor.close, body=b"{" + b" " * 70_000 + b"}")
    assert response.status_code == 413


def test_settings_for_a_help_desk_no_provider_knows_stop_the_start(make_settings):
    """A misspelt VAULT_SERVICE_<NAME>_WEBHOOK_SECRET would leave the help desk meant unconfigured:
    config.py reads every <NAME> it finds, and the app refuses to start with one no provider has."""
    from vault_service.config import ConfigError, read_provider_settings

    found = read_provider_settings({"VAULT_SERVICE_ZENDSK_WEBHOOK_SECRET": "s3cret-zendesk-hook"})
    assert set(found) == {"zendsk"}
    with pytest.raises(ConfigError, match="ZENDSK"):
        create_app(make_settings(providers=found))


def test_a_glpi_delivery_without_a_content_type_is_read_as_json(app, client, open_ticket):
    """GLPI's queue sends only its own headers (QueuedWebhook::sendById): no Content-Type."""
    vendor = next(v for v in VENDORS if v.name == "glpi")
    ref = open_ticket(vendor)
    response, _, headers = deliver(client, vendor, ref, vendor.close)
    assert "Content-Type" not in headers
    assert response.status_code == 202, response.get_json()
    assert ticket_status(app, ref) == "closing"
