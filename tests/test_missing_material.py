"""A reveal whose item or key is gone from Vault says so and is audited as such, never as an
ended grant (issue 13 item 6: another deployment's sweep deleted a live ticket's material and
the victim's agents read "the grant has ended")."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from vault_service.extensions import db
from vault_service.models import AuditEvent, CredentialItem
from vault_service.vault import KV_MOUNT, TRANSIT_MOUNT

from .helpers import item_path, key_of, lease_of


def remove_item(openbao, lease_id: str, item_id: str) -> None:
    openbao.admin().secrets.kv.v2.delete_metadata_and_all_versions(
        path=item_path(lease_id, item_id), mount_point=KV_MOUNT
    )


def remove_key(openbao, lease_id: str, item_id: str) -> None:
    admin = openbao.admin()
    name = key_of(lease_id)
    admin.secrets.transit.update_key_configuration(
        name=name, deletion_allowed=True, mount_point=TRANSIT_MOUNT
    )
    admin.secrets.transit.delete_key(name=name, mount_point=TRANSIT_MOUNT)


@pytest.mark.parametrize("remove", [remove_item, remove_key], ids=["item", "key"])
def test_a_reveal_of_material_missing_in_vault_says_so_and_is_audited(
    app, agent, submitted_ticket, openbao, remove
):
    lease = lease_of(app, submitted_ticket)
    with app.app_context():
        item_id = db.session.scalar(
            select(CredentialItem.id).where(CredentialItem.lease_id == lease.id)
        )
        db.session.rollback()
    agent.login()
    agent.request_access(submitted_ticket)
    remove(openbao, lease.id, item_id)
    response = agent.reveal(submitted_ticket)
    page = response.get_data(as_text=True)
    assert response.status_code == 410
    assert "missing from the secure store" in page
    assert "grant has ended" not in page
    with app.app_context():
        denied = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "credentials.revealed", AuditEvent.outcome == "denied"
            )
        ).all()
        assert [event.details["reason"] for event in denied] == ["missing in vault"]
        db.session.rollback()
