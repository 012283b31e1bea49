"""When parts fail: reveals fail closed, closes are never lost, purge steps repeat safely."""

from __future__ import annotations

import hvac.exceptions
import pytest
from sqlalchemy import select

from vault_service import create_app
from vault_service.extensions import db
from vault_service.models import CredentialItem, Job, LeaseStatus, Ticket
from vault_service.services import audit
from vault_service.vault import KV_MOUNT, TRANSIT_MOUNT, VaultRequestFailed

from .conftest import SAMPLE_ITEMS
from .helpers import accessor_is_gone, folder_of, item_path, key_of, lease_of, run_worker_pass

CLOSED_PORT_VAULT = "http://127.0.0.1:9"  # discard port: nothing listens


def kv_reads_in_audit_log(openbao, lease_id: str) -> int:
    """How many times Vault was asked to read this lease's items (its audit log says)."""
    return sum(
        1
        for line in openbao.audit_log.read_text().splitlines()
        if f"vault-service-kv/data/{folder_of(lease_id)}/" in line
        and '"operation":"read"' in line
        and '"type":"request"' in line
    )


def test_reveal_does_not_happen_when_its_audit_record_cannot_be_written(
    app, agent, submitted_ticket, openbao, monkeypatch
):
    agent.login()
    agent.request_access(submitted_ticket)
    grant_id = agent.current_grant_id(submitted_ticket)
    lease = lease_of(app, submitted_ticket)
    real_record = audit.record

    def failing_record(action, **kwargs):
        if action == "credentials.revealed" and kwargs.get("outcome", "success") == "success":
            raise RuntimeError("audit store unavailable")
        return real_record(action, **kwargs)

    monkeypatch.setattr(audit, "record", failing_record)
    response = agent.reveal(submitted_ticket, grant_id)
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    for item in SAMPLE_ITEMS:
        assert item["password"] not in body
    # Vault's own audit log proves nothing was even read: the failure came first.
    assert kv_reads_in_audit_log(openbao, lease.id) == 0

    monkeypatch.setattr(audit, "record", real_record)
    assert agent.reveal(submitted_ticket, grant_id).status_code == 200
    assert kv_reads_in_audit_log(openbao, lease.id) == len(SAMPLE_ITEMS) + 1


def test_close_during_a_vault_outage_is_accepted_and_purged_once_vault_returns(
    app, make_settings, settings, ticket_system, submitted_ticket, ticket_system_factory, openbao
):
    offline = create_app(make_settings(vault_addr=CLOSED_PORT_VAULT))
    offline_ticket_system, _, _ = ticket_system_factory(offline)
    assert offline_ticket_system.close(submitted_ticket).status_code == 202

    report = run_worker_pass(offline)
    assert report.jobs_completed["purge"] == 0
    with app.app_context():
        job = db.session.scalar(select(Job))
        assert job.attempts == 1 and job.completed_at is None
        assert "unreachable" in job.last_error
        # Retried with backoff, not dropped.
        job.next_attempt_at = job.created_at
        db.session.commit()
    assert ticket_system.status(submitted_ticket).get_json()["status"] == "closing"

    lease = lease_of(app, submitted_ticket)
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    assert ticket_system.status(submitted_ticket).get_json()["status"] == "purged"
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.admin().secrets.transit.read_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)


def test_submission_while_vault_is_down_gets_503_and_the_link_survives(
    app, make_settings, settings, ticket_system, client, ticket_system_factory
):
    path = ticket_system.link_path("T-outage")
    # Same database and secret key (link hashes match), but Vault unreachable.
    offline = create_app(
        make_settings(vault_addr=CLOSED_PORT_VAULT, secret_key=settings.secret_key)
    )
    _, _, offline_client = ticket_system_factory(offline)
    response = offline_client.post(path, json={"items": SAMPLE_ITEMS})
    assert response.status_code == 503
    assert "Nothing was stored" in response.get_json()["message"]
    with app.app_context():
        assert db.session.scalars(select(CredentialItem)).all() == []
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201


def test_purge_completes_when_some_of_its_steps_were_already_done(
    app, ticket_system, submitted_ticket, openbao
):
    lease = lease_of(app, submitted_ticket)
    admin = openbao.admin()
    # As if an earlier attempt died half-way: token revoked, key deleted, entity gone.
    admin.auth.token.revoke_accessor(lease.token_accessor)
    admin.secrets.transit.update_key_configuration(
        name=key_of(lease.id), deletion_allowed=True, mount_point=TRANSIT_MOUNT
    )
    admin.secrets.transit.delete_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)
    admin.delete(f"identity/entity/id/{lease.entity_id}")

    assert ticket_system.close(submitted_ticket).status_code == 202
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    receipt = ticket_system.status(submitted_ticket).get_json()["purge_receipt"]
    assert receipt["destroyed"]["kv_entries"] == 3
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.kv.v2.list_secrets(path=folder_of(lease.id), mount_point=KV_MOUNT)
    # Running the finished job again changes nothing and keeps the one receipt.
    with app.app_context():
        jobs = db.session.scalars(select(Job)).all()
        assert len(jobs) == 1 and jobs[0].result == receipt


def test_purge_removes_kv_entries_the_database_never_recorded(
    app, ticket_system, submitted_ticket, openbao
):
    lease = lease_of(app, submitted_ticket)
    # An entry written by a submission that crashed before its database commit.
    openbao.admin().secrets.kv.v2.create_or_update_secret(
        path=item_path(lease.id, "00000000-0000-4000-8000-000000000000"),
        secret={"ciphertext": "vault:v1:orphan"},
        cas=0,
        mount_point=KV_MOUNT,
    )
    ticket_system.close(submitted_ticket)
    run_worker_pass(app)
    receipt = ticket_system.status(submitted_ticket).get_json()["purge_receipt"]
    assert receipt["destroyed"]["kv_entries"] == 4
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.admin().secrets.kv.v2.list_secrets(path=folder_of(lease.id), mount_point=KV_MOUNT)


def test_grant_request_while_vault_is_down_is_a_clear_503(
    app, make_settings, settings, submitted_ticket, ticket_system_factory
):
    offline = create_app(
        make_settings(vault_addr=CLOSED_PORT_VAULT, secret_key=settings.secret_key)
    )
    _, offline_agent, offline_client = ticket_system_factory(offline)
    offline_agent.login()
    response = offline_agent.request_access(submitted_ticket)
    assert response.status_code == 503
    assert "no access was granted" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Ticket.status)) == "open"


def test_sealed_vault_gives_customers_503_keeps_the_link_and_still_accepts_the_close(
    app, client, ticket_system, openbao
):
    path = ticket_system.link_path("T-sealed")
    ticket_system.link_path("T-sealed-close")  # a ticket with Vault material to purge
    openbao.process.seal(openbao.root_token)
    try:
        response = client.post(path, json={"items": SAMPLE_ITEMS})
        assert response.status_code == 503
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        # Named as what it is: not "unavailable", and not the app's identity's fault.
        assert readiness.get_json()["checks"]["vault"] == "sealed"
        assert "vault_auth" not in readiness.get_json()["checks"]
        assert ticket_system.close("T-sealed-close").status_code == 202
        assert run_worker_pass(app).jobs_completed["purge"] == 0
    finally:
        openbao.process.unseal(openbao.unseal_key)
    assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
    # The close's purge waited for Vault (backed off); make it due now and it completes.
    with app.app_context():
        db.session.execute(Job.__table__.update().values(next_attempt_at=Job.created_at))
        db.session.commit()
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    assert ticket_system.status("T-sealed-close").get_json()["status"] == "purged"


def test_close_during_provisioning_leaves_nothing_behind_in_vault(
    app, ticket_system, openbao, vault, monkeypatch
):
    """The close wins the race: the purge runs before the lease token exists, so the request
    that was provisioning must destroy what it created itself."""
    real_create_lease_token = type(vault).create_lease_token
    created = {}

    def close_first_then_create(self, lease_id, ttl_seconds):
        assert ticket_system.close("T-race").status_code == 202
        assert run_worker_pass(app).jobs_completed["purge"] == 1  # found no token or entity yet
        issued = real_create_lease_token(self, lease_id, ttl_seconds)
        created.update(lease_id=lease_id, issued=issued)
        return issued

    # The ticket exists (a first link) but its lease is still provisioning when the close comes.
    with app.app_context():
        db.session.add(Ticket(ref="T-race"))
        db.session.commit()
    monkeypatch.setattr(type(vault), "create_lease_token", close_first_then_create)
    response = ticket_system.create_link("T-race")
    assert response.status_code == 409

    lease_id, issued = created["lease_id"], created["issued"]
    admin = openbao.admin()
    with pytest.raises(hvac.exceptions.InvalidRequest):
        admin.auth.token.lookup_accessor(issued.accessor)
    with pytest.raises(hvac.exceptions.InvalidPath):
        admin.secrets.transit.read_key(name=key_of(lease_id), mount_point=TRANSIT_MOUNT)
    assert admin.read(f"identity/entity/id/{issued.entity_id}") is None
    assert ticket_system.status("T-race").get_json()["status"] == "purged"


def test_a_key_that_cannot_be_made_revokes_the_lease_token_made_beside_it(
    app, vault, openbao, ticket_system, monkeypatch
):
    """A new lease's key and token are made at once (two round trips instead of four); when the
    key fails, the token already issued beside it is revoked before the 503, not left behind."""
    real_create_lease_token = type(vault).create_lease_token
    issued_tokens = []

    def create_lease_token(self, lease_id, ttl_seconds):
        issued = real_create_lease_token(self, lease_id, ttl_seconds)
        issued_tokens.append(issued)
        return issued

    def create_lease_key(self, lease_id):
        raise VaultRequestFailed("create transit key: refused")

    monkeypatch.setattr(type(vault), "create_lease_token", create_lease_token)
    monkeypatch.setattr(type(vault), "create_lease_key", create_lease_key)
    response = ticket_system.create_link("T-keyless")
    assert response.status_code == 503
    assert len(issued_tokens) == 1  # the real token, made in Vault beside the failing key
    assert accessor_is_gone(openbao, issued_tokens[0].accessor)
    with app.app_context():
        ticket = db.session.scalar(select(Ticket).where(Ticket.ref == "T-keyless"))
        assert ticket is not None
        assert [lease.status for lease in ticket.leases] == [LeaseStatus.PROVISIONING]
        assert ticket.leases[0].token_accessor is None


def test_a_purge_failing_again_and_again_is_surfaced_but_never_dropped(
    app, make_settings, ticket_system, submitted_ticket, ticket_system_factory
):
    offline = create_app(make_settings(vault_addr=CLOSED_PORT_VAULT))
    offline_ticket_system, _, offline_client = ticket_system_factory(offline)
    offline_ticket_system.close(submitted_ticket)
    for attempt in range(1, 6):
        with app.app_context():
            db.session.execute(Job.__table__.update().values(next_attempt_at=Job.created_at))
            db.session.commit()
        report = run_worker_pass(offline)
        assert report.jobs_failing["purge"] == (1 if attempt >= 5 else 0)
    with app.app_context():
        job = db.session.scalar(select(Job))
        assert job.attempts == 5 and job.completed_at is None
        # Backoff grows with each attempt (2**5 s now), and the job stays queued.
        assert (job.next_attempt_at - job.created_at).total_seconds() >= 30
    assert app.test_client().get("/readyz").get_json()["purge_jobs"] == "failing: 1"
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert "[FAIL] purge jobs: 1 job(s) failed 5+ times" in result.output
    assert "unreachable" in result.output

    with app.app_context():
        db.session.execute(Job.__table__.update().values(next_attempt_at=Job.created_at))
        db.session.commit()
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    assert app.test_client().get("/readyz").get_json()["purge_jobs"] == "ok"


def test_purge_holds_no_database_transaction_while_it_talks_to_vault(
    app, ticket_system, agent, submitted_ticket, vault, monkeypatch
):
    """On SQLite an open transaction is the write lock: held across Vault calls, it would stall
    every other writer for the whole purge."""
    agent.login()
    agent.request_access(submitted_ticket)
    ticket_system.close(submitted_ticket)
    real_app_call = type(vault)._app_call
    seen = []

    def checked_app_call(self, operation, fn):
        seen.append((operation, db.session().in_transaction()))
        return real_app_call(self, operation, fn)

    monkeypatch.setattr(type(vault), "_app_call", checked_app_call)
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    assert len(seen) >= 8  # revoke, key, listing, items, entity, and the checks after
    assert [operation for operation, in_transaction in seen if in_transaction] == []
