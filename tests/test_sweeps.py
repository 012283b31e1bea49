"""The worker's sweeps: orphaned Vault material, expired grants and links — each audited."""

from __future__ import annotations

import uuid
from datetime import timedelta

import hvac.exceptions
import pytest
from freezegun import freeze_time
from sqlalchemy import select

from vault_service.clock import utcnow
from vault_service.extensions import current_vault, db
from vault_service.models import AuditEvent, Grant, SubmissionLink
from vault_service.services.orphans import sweep_orphans
from vault_service.vault import KV_MOUNT, TRANSIT_MOUNT

from .helpers import folder_of, item_path, key_of, lease_of, run_worker_pass


def plant_orphan(openbao, lease_id: str, with_key: bool = True) -> None:
    """Vault material of a lease the database does not know, as a crash would leave it."""
    admin = openbao.admin()
    admin.secrets.kv.v2.create_or_update_secret(
        path=item_path(lease_id, str(uuid.uuid4())),
        secret={"ciphertext": "vault:v1:orphan"},
        cas=0,
        mount_point=KV_MOUNT,
    )
    if with_key:
        admin.secrets.transit.create_key(name=key_of(lease_id), mount_point=TRANSIT_MOUNT)


def orphan_sweep(app):
    """The orphan sweep alone. Other tests' leases are orphans to this test's fresh database
    (one OpenBao serves the session), so assertions name this test's own leases."""
    with app.app_context():
        return sweep_orphans(current_vault())


def audit_actions(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_orphaned_kv_entries_and_keys_are_removed_and_audited(
    app, openbao, submitted_ticket, ticket_system
):
    orphan = str(uuid.uuid4())
    plant_orphan(openbao, orphan)
    live = lease_of(app, submitted_ticket)
    report = orphan_sweep(app)
    assert orphan in report.lease_ids
    assert live.id not in report.lease_ids
    admin = openbao.admin()
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.kv.v2.list_secrets(path=folder_of(orphan), mount_point=KV_MOUNT)
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.transit.read_key(name=key_of(orphan), mount_point=TRANSIT_MOUNT)
    # The live ticket's material is untouched and still revealable.
    assert admin.secrets.kv.v2.list_secrets(path=folder_of(live.id), mount_point=KV_MOUNT)["data"][
        "keys"
    ]
    events = {e.details["lease_id"]: e for e in audit_actions(app, "sweep.orphan_removed")}
    assert events[orphan].details["kv_entries"] == 1
    assert events[orphan].details["transit_key"] is True
    assert orphan_sweep(app).found == 0  # nothing left to find
    assert run_worker_pass(app, orphans=True).orphans_removed == 0  # the worker's pass does it


def test_material_written_after_its_lease_was_purged_is_an_orphan(
    app, openbao, submitted_ticket, ticket_system
):
    lease = lease_of(app, submitted_ticket)
    ticket_system.close(submitted_ticket)
    run_worker_pass(app)
    # A submission that raced the close and crashed after its Vault write.
    plant_orphan(openbao, lease.id, with_key=False)
    assert lease.id in orphan_sweep(app).lease_ids
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.admin().secrets.kv.v2.list_secrets(path=folder_of(lease.id), mount_point=KV_MOUNT)


def test_expired_grant_tokens_are_erased_and_expired_links_recorded_once(
    app, client, ticket_system, agent, submitted_ticket
):
    unused = ticket_system.link_path("T-unused")
    agent.login()
    agent.request_access(submitted_ticket, minutes=30)
    with freeze_time(utcnow() + timedelta(days=4)):
        report = run_worker_pass(app)
        assert report.grant_tokens_erased == 1
        assert report.links_expired == 1
        assert run_worker_pass(app).links_expired == 0
        assert client.get(unused).status_code == 410
    with app.app_context():
        assert db.session.scalar(select(Grant.token_ciphertext)) is None
        link = db.session.scalar(select(SubmissionLink).where(SubmissionLink.consumed_at.is_(None)))
        assert link.expiry_recorded_at is not None
    assert len(audit_actions(app, "sweep.grant_expired")) == 1
    assert len(audit_actions(app, "sweep.link_expired")) == 1
