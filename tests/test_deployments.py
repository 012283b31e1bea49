"""Deployments sharing one OpenBao: each sees, sweeps and reads its own material only, and a
second database on the same deployment id is refused (doctor, bootstrap, sweep, new links)."""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import hvac
import pytest
from sqlalchemy import select, update

from vault_service import create_app
from vault_service.config import ConfigError, load_settings
from vault_service.extensions import db
from vault_service.models import CredentialItem, DatabaseIdentity, Lease
from vault_service.services import deployment, doctor
from vault_service.services.orphans import sweep_orphans
from vault_service.vault import (
    KV_MOUNT,
    TRANSIT_MOUNT,
    DeploymentConflict,
    bootstrap_vault,
    lease_names,
    legacy_lease_names,
)

from .conftest import SAMPLE_ITEMS
from .helpers import (
    client_for,
    lease_of,
    run_worker_pass,
    unseal_grant_token,
    vault_requests_since,
)


@pytest.fixture
def other_database_url(tmp_path, migrated_sqlite_template) -> str:
    """A second database (another deployment's), built by the same migrations."""
    path = tmp_path / "other.db"
    shutil.copyfile(migrated_sqlite_template, path)
    return f"sqlite:///{path}"


def live_ticket(app, ticket_system_factory, ref: str):
    """An app's ticket with SAMPLE_ITEMS submitted; returns its actors and the ticket's lease."""
    ticket_system, agent, client = ticket_system_factory(app)
    response = client.post(ticket_system.link_path(ref), json={"items": SAMPLE_ITEMS})
    assert response.status_code == 201, response.get_json()
    return agent, lease_of(app, ref)


def item_ids(app, lease_id: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(select(CredentialItem.id).where(CredentialItem.lease_id == lease_id))
        )


def stored_in_vault(openbao, lease_id: str, deployment_id: str, ids: list[str]) -> bool:
    """Every item and the key of a lease, asked of Vault with the root token."""
    names = lease_names(lease_id, deployment=deployment_id)
    admin = openbao.admin()
    for item_id in ids:
        admin.secrets.kv.v2.read_secret_version(
            path=names.item_path(item_id), mount_point=KV_MOUNT, raise_on_deleted_version=True
        )
    admin.secrets.transit.read_key(name=names.key_name, mount_point=TRANSIT_MOUNT)
    return True


def orphan_sweep(app):
    with app.app_context():
        return sweep_orphans(app.extensions["vault_service.vault"])


def test_a_sweep_never_touches_another_deployments_live_ticket(
    app, settings, make_settings, other_database_url, openbao, ticket_system_factory
):
    other = create_app(
        make_settings(
            database_url=other_database_url, deployment_id="other-" + uuid.uuid4().hex[:8]
        )
    )
    other_id = other.extensions["vault_service.settings"].deployment_id
    victim_agent, victim_lease = live_ticket(other, ticket_system_factory, "T-victim")
    victim_items = item_ids(other, victim_lease.id)
    # The sweeping deployment has live material too, and a real orphan of its own.
    live_ticket(app, ticket_system_factory, "T-sweeper")
    orphan = str(uuid.uuid4())
    openbao.admin().secrets.kv.v2.create_or_update_secret(
        path=lease_names(orphan, deployment=settings.deployment_id).item_path("x"),
        secret={"ciphertext": "vault:v1:x"},
        cas=0,
        mount_point=KV_MOUNT,
    )

    report = orphan_sweep(app)

    # Its own orphan went; nothing of the other deployment was even a candidate.
    assert report.lease_ids == {orphan}
    assert stored_in_vault(openbao, victim_lease.id, other_id, victim_items)
    victim_agent.login()
    victim_agent.request_access("T-victim")
    page = victim_agent.reveal("T-victim")
    assert page.status_code == 200
    assert SAMPLE_ITEMS[0]["password"] in page.get_data(as_text=True)
    # And the other way round: the victim's own sweep leaves the sweeper's ticket alone.
    assert orphan_sweep(other).found == 0


def test_a_second_database_on_the_same_deployment_id_is_refused_everywhere(
    app, make_settings, other_database_url, openbao, runner, ticket_system_factory
):
    owner_agent, owner_lease = live_ticket(app, ticket_system_factory, "T-owner")
    owner_items = item_ids(app, owner_lease.id)
    with app.app_context():
        owner_database = deployment.database_id()
    deployment_id = app.extensions["vault_service.settings"].deployment_id
    # The same deployment id, another database (a second instance pointed at the same OpenBao).
    intruder = create_app(make_settings(database_url=other_database_url))
    intruder_ticket_system, _, intruder_client = ticket_system_factory(intruder)

    # Its sweep refuses before listing anything...
    with pytest.raises(DeploymentConflict, match="belongs to another database"):
        orphan_sweep(intruder)
    # ...it creates no material under the owner's names (a link needs a lease key: 503)...
    response = intruder_client.post(
        "/api/v1/tickets/T-intruder/submission-links",
        headers=intruder_ticket_system.headers(),
        json={},
    )
    assert response.status_code == 503
    # ...its doctor fails, saying why, while the owner's passes...
    with intruder.app_context():
        findings = doctor.run_checks(
            intruder.extensions["vault_service.settings"],
            intruder.extensions["vault_service.vault"],
        )
    verdict = next(f for f in findings if f.name == f"deployment {deployment_id}")
    assert not verdict.ok and "owned by another database" in verdict.detail
    result = runner.invoke(args=["doctor"])
    assert f"deployment {deployment_id}" in result.output and result.exit_code == 0, result.output
    # ...and bootstrap-vault refuses to claim the id for it.
    with intruder.app_context():
        intruder_database = deployment.database_id()
    assert intruder_database != owner_database
    with pytest.raises(DeploymentConflict, match="another database"):
        bootstrap_vault(
            openbao.addr,
            openbao.root_token,
            deployment_id=deployment_id,
            database_id=intruder_database,
        )
    assert bootstrap_vault(
        openbao.addr, openbao.root_token, deployment_id=deployment_id, database_id=owner_database
    )[-1] == (f"deployment {deployment_id}: owned by this database")
    # The owner's ticket is whole and revealable.
    assert stored_in_vault(openbao, owner_lease.id, deployment_id, owner_items)
    owner_agent.login()
    owner_agent.request_access("T-owner")
    assert SAMPLE_ITEMS[0]["password"] in owner_agent.reveal("T-owner").get_data(as_text=True)


def test_a_lease_token_reaches_neither_another_deployments_items_nor_its_key(
    app, make_settings, other_database_url, openbao, ticket_system_factory
):
    other = create_app(make_settings(database_url=other_database_url, deployment_id="b-deploy"))
    _, their_lease = live_ticket(other, ticket_system_factory, "T-theirs")
    their_item = item_ids(other, their_lease.id)[0]
    agent, our_lease = live_ticket(app, ticket_system_factory, "T-ours")
    our_item = item_ids(app, our_lease.id)[0]
    agent.login()
    agent.request_access("T-ours")
    grant = client_for(openbao, unseal_grant_token(app, agent.current_grant_id("T-ours")))
    ours = lease_names(our_lease.id, deployment=app.extensions["vault_service.vault"].deployment)
    theirs = lease_names(their_lease.id, deployment="b-deploy")
    # Its own item: allowed (so the refusals below are the policy's doing, not a broken token).
    grant.secrets.kv.v2.read_secret_version(
        path=ours.item_path(our_item), mount_point=KV_MOUNT, raise_on_deleted_version=True
    )
    for path in (
        theirs.item_path(their_item),  # the other deployment's item
        f"{ours.kv_folder.split('/')[0]}/{their_lease.id}/{their_item}",  # via our folder
        f"b-deploy/{our_lease.id}/{our_item}",  # our lease id under their folder: not there
        "_deployments/b-deploy",  # the other deployment's marker
    ):
        with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidPath)) as refused:
            grant.secrets.kv.v2.read_secret_version(
                path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
            )
        if path == theirs.item_path(their_item):
            assert refused.type is hvac.exceptions.Forbidden
    with pytest.raises(hvac.exceptions.Forbidden):
        grant.secrets.transit.decrypt_data(
            name=theirs.key_name, ciphertext="vault:v1:AAAA", mount_point=TRANSIT_MOUNT
        )


def test_the_sweep_never_removes_legacy_material_it_cannot_attribute(app, openbao):
    """Material of the layout before deployment ids names no deployment: no sweep takes it."""
    legacy = legacy_lease_names(str(uuid.uuid4()))
    admin = openbao.admin()
    admin.secrets.kv.v2.create_or_update_secret(
        path=legacy.item_path("x"), secret={"ciphertext": "vault:v1:x"}, cas=0, mount_point=KV_MOUNT
    )
    admin.secrets.transit.create_key(name=legacy.key_name, mount_point=TRANSIT_MOUNT)

    assert orphan_sweep(app).found == 0

    admin.secrets.kv.v2.read_secret_version(
        path=legacy.item_path("x"), mount_point=KV_MOUNT, raise_on_deleted_version=True
    )
    admin.secrets.transit.read_key(name=legacy.key_name, mount_point=TRANSIT_MOUNT)


def test_production_requires_a_deployment_id_and_every_environment_a_valid_one():
    base = {
        "VAULT_SERVICE_SECRET_KEY": "k" * 40,
        "VAULT_SERVICE_TICKET_API_TOKEN": "t" * 40,
        "VAULT_SERVICE_VAULT_TOKEN": "dev-token",
        "VAULT_SERVICE_PUBLIC_URL": "https://vault.example",
    }
    with pytest.raises(ConfigError, match="VAULT_SERVICE_DEPLOYMENT_ID must be set in production"):
        load_settings({**base, "VAULT_SERVICE_ENV": "production"})
    assert load_settings({**base, "VAULT_SERVICE_ENV": "testing"}).deployment_id == "default"
    for bad in ("Prod", "_deployments", "a" * 33, "prod.eu"):
        with pytest.raises(ConfigError, match="VAULT_SERVICE_DEPLOYMENT_ID"):
            load_settings(
                {**base, "VAULT_SERVICE_ENV": "testing", "VAULT_SERVICE_DEPLOYMENT_ID": bad}
            )


def legacy_material_exists(openbao, lease_id: str) -> bool:
    """Whether Vault still holds a legacy-layout item or key of this lease (root token)."""
    legacy = legacy_lease_names(lease_id)
    admin = openbao.admin()
    try:
        admin.secrets.transit.read_key(name=legacy.key_name, mount_point=TRANSIT_MOUNT)
        return True
    except hvac.exceptions.InvalidPath:
        pass
    try:
        admin.secrets.kv.v2.read_secret_metadata(path=legacy.item_path("x"), mount_point=KV_MOUNT)
        return True
    except hvac.exceptions.InvalidPath:
        return False


@pytest.mark.parametrize("older_than_identity", [True, False])
def test_a_purge_destroys_the_legacy_layout_only_of_a_lease_older_than_deployment_ids(
    app, openbao, ticket_system_factory, older_than_identity
):
    """A lease from before deployment ids may have material under the legacy names: its purge
    destroys those too, verified in Vault. A newer lease's purge spends no call on them (its
    material can only be in the current layout): planted legacy names of it stay untouched."""
    ref = f"T-legacy-{older_than_identity}"
    ticket_system, _agent, _client = ticket_system_factory(app)
    # The database's identity is written before its first lease: a lease is what a deployment
    # upgraded past deployment ids creates, unless moved back before the identity below.
    _, lease = live_ticket(app, ticket_system_factory, ref)
    legacy = legacy_lease_names(lease.id)
    admin = openbao.admin()
    admin.secrets.kv.v2.create_or_update_secret(
        path=legacy.item_path("x"), secret={"ciphertext": "vault:v1:x"}, cas=0, mount_point=KV_MOUNT
    )
    admin.secrets.transit.create_key(name=legacy.key_name, mount_point=TRANSIT_MOUNT)
    admin.secrets.transit.update_key_configuration(
        name=legacy.key_name, deletion_allowed=True, mount_point=TRANSIT_MOUNT
    )
    if older_than_identity:
        with app.app_context():
            since = db.session.scalar(select(DatabaseIdentity.created_at))
            db.session.execute(
                update(Lease)
                .where(Lease.id == lease.id)
                .values(created_at=since - timedelta(days=1))
            )
            db.session.commit()

    assert ticket_system.close(ref).status_code == 202
    assert run_worker_pass(app).jobs_completed["purge"] == 1

    assert not stored_anything_current(openbao, lease.id, app)
    assert legacy_material_exists(openbao, lease.id) is not older_than_identity


def stored_anything_current(openbao, lease_id: str, app) -> bool:
    """Whether any of the lease's current-layout material is left (root token's listing)."""
    deployment_id = app.extensions["vault_service.settings"].deployment_id
    names = lease_names(lease_id, deployment=deployment_id)
    admin = openbao.admin()
    try:
        admin.secrets.transit.read_key(name=names.key_name, mount_point=TRANSIT_MOUNT)
        return True
    except hvac.exceptions.InvalidPath:
        pass
    try:
        keys = admin.secrets.kv.v2.list_secrets(path=names.kv_folder, mount_point=KV_MOUNT)
    except hvac.exceptions.InvalidPath:
        return False
    return bool(keys["data"]["keys"])


def test_a_submission_makes_only_its_own_vault_calls_once_no_legacy_lease_lives(
    app, openbao, ticket_system_factory
):
    """Told by the database that no live lease predates its identity, the gateway asks Vault
    nothing to find a lease's layout: OpenBao's audit log shows a submission's batch encrypt and
    one write per item, and no read of the lease's key."""
    ticket_system, _agent, client = ticket_system_factory(app)
    path = ticket_system.link_path("T-calls")
    offset = Path(openbao.audit_log).stat().st_size
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
    lease = lease_of(app, "T-calls")
    calls = [
        (request["operation"], request["path"])
        for request in vault_requests_since(openbao, offset)
        if lease.id in request.get("path", "")
    ]
    assert len(calls) == 1 + len(SAMPLE_ITEMS), calls
    assert [op for op, path in calls if "/keys/" in path] == []


def test_a_lease_older_than_the_identity_keeps_its_legacy_layout_found_by_asking_vault(
    app, openbao, ticket_system_factory
):
    """A lease from before deployment ids, still live, whose key sits under the legacy name:
    the gateway probes Vault for it (and a fresh gateway that the database tells of no such
    lease never probes: it names the current layout even where a legacy key exists)."""
    _agent, lease = live_ticket(app, ticket_system_factory, "T-old")
    legacy = legacy_lease_names(lease.id)
    admin = openbao.admin()
    admin.secrets.transit.create_key(name=legacy.key_name, mount_point=TRANSIT_MOUNT)
    settings = app.extensions["vault_service.settings"]
    current = lease_names(lease.id, deployment=settings.deployment_id).key_name
    admin.secrets.transit.update_key_configuration(
        name=current, deletion_allowed=True, mount_point=TRANSIT_MOUNT
    )
    admin.secrets.transit.delete_key(name=current, mount_point=TRANSIT_MOUNT)

    fresh = create_app(settings)
    with fresh.app_context():
        assert fresh.extensions["vault_service.vault"].lease_key_name(lease.id) == current
        since = db.session.scalar(select(DatabaseIdentity.created_at))
        db.session.execute(
            update(Lease).where(Lease.id == lease.id).values(created_at=since - timedelta(days=1))
        )
        db.session.commit()
    older = create_app(settings)
    with older.app_context():
        assert older.extensions["vault_service.vault"].lease_key_name(lease.id) == legacy.key_name
