"""Signed deletion receipts, against the real OpenBao: every purge's receipt is a JWS signed by a
Vault transit ed25519 key, verified here with an independent JOSE implementation (joserfc)
against /.well-known/jwks.json; the key cannot leave Vault; rotation keeps old receipts good."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from click.testing import CliRunner
from joserfc.errors import JoseError
from sqlalchemy import select, update

from vault_service import jws
from vault_service.cli import main
from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import Lease, Receipt
from vault_service.services.doctor import check_receipt_key, run_checks
from vault_service.vault import RECEIPT_KEY, TRANSIT_MOUNT

from .conftest import SAMPLE_ITEMS
from .helpers import (
    lease_of,
    run_worker_pass,
    tamper,
    vault_requests_since,
    verify_independently,
)

# RFC 9864 deprecates "EdDSA" for the fully specified "Ed25519"; DESIGN.md's contract names EdDSA,
# which every JOSE library still verifies, so joserfc's warning about it is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

ISSUER = "http://localhost"  # the tests' public URL (conftest.make_settings)


def close_and_purge(ticket_system, app, ticket_ref: str) -> dict:
    assert ticket_system.close(ticket_ref).status_code == 202
    assert run_worker_pass(app).jobs_completed["purge"] == 1
    status = ticket_system.status(ticket_ref).get_json()
    assert status["status"] == "purged"
    return status


def test_a_close_gives_a_receipt_that_verifies_independently_and_fails_after_any_byte_changes(
    app, client, ticket_system, agent, submitted_ticket
):
    agent.login()
    assert agent.request_access(submitted_ticket, reason="check the upload").status_code == 302
    grant_id = agent.current_grant_id(submitted_ticket)
    assert agent.reveal(submitted_ticket, grant_id).status_code == 200
    status = close_and_purge(ticket_system, app, submitted_ticket)

    token = status["purge_receipt_jws"]
    claims = verify_independently(client, token)
    assert claims["iss"] == ISSUER
    assert claims["ticket_ref"] == submitted_ticket
    assert claims["reason"] == "ticket_closed"
    assert claims["verified_absent_in_vault"] is True
    assert claims["destroyed"]["kv_entries"] == 3  # two items and the notes
    assert isinstance(claims["iat"], int) and uuid.UUID(claims["jti"])
    assert claims["requested_at"] <= claims["completed_at"]
    # The access summary: the grant with its agent and reason, and the one reveal.
    [access] = claims["accesses"]
    assert access["agent"] == "alice"
    assert access["reason"] == "check the upload"
    assert access["granted_at"] < access["expires_at"]
    assert len(access["revealed_at"]) == 1
    assert access["granted_at"] <= access["revealed_at"][0] <= claims["completed_at"]
    # The JSON receipt is the signed payload plus the hash of its audit record.
    assert {k: v for k, v in status["purge_receipt"].items() if k != "audit_record_hash"} == claims
    assert len(status["purge_receipt"]["audit_record_hash"]) == 64
    # No submitted value is in the receipt.
    for item in SAMPLE_ITEMS:
        assert item["password"] not in json.dumps(claims, ensure_ascii=False)

    for part in (0, 1, 2):
        with pytest.raises((JoseError, ValueError)):
            verify_independently(client, tamper(token, part))
    # Our own verifier agrees with joserfc both ways.
    keys = client.get("/.well-known/jwks.json").get_json()
    assert jws.verify(token, keys, issuer=ISSUER).payload == claims
    for part in (1, 2):
        with pytest.raises(jws.InvalidReceipt):
            jws.verify(tamper(token, part), keys, issuer=ISSUER)
    with pytest.raises(jws.InvalidReceipt):
        jws.verify(token, keys, issuer="https://someone-else.example")


def test_a_retention_purge_says_so_and_a_receipt_without_accesses_says_none(
    app, client, ticket_system, submitted_ticket
):
    lease = lease_of(app, submitted_ticket)
    with app.app_context():
        db.session.execute(
            update(Lease)
            .where(Lease.id == lease.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    report = run_worker_pass(app)
    assert report.retention_closed == 1
    status = ticket_system.status(submitted_ticket).get_json()
    claims = verify_independently(client, status["purge_receipt_jws"])
    assert claims["reason"] == "retention_expired"
    assert claims["accesses"] == []


def test_every_reopen_cycle_keeps_its_own_signed_receipt(app, client, ticket_system):
    ticket_ref = f"T-{uuid.uuid4().hex[:8]}"
    leases = []
    for _cycle in range(2):
        path = ticket_system.link_path(ticket_ref)
        assert client.post(path, json={"items": SAMPLE_ITEMS[:1]}).status_code == 201
        leases.append(lease_of_latest(app, ticket_ref))
        close_and_purge(ticket_system, app, ticket_ref)
        assert ticket_system.send_event("ticket.reopened", ticket_ref).status_code == 202

    response = client.get(f"/api/v1/tickets/{ticket_ref}/receipts", headers=ticket_system.headers())
    assert response.status_code == 200
    listed = response.get_json()["receipts"]
    assert len(listed) == 2
    claims = [verify_independently(client, entry["purge_receipt_jws"]) for entry in listed]
    # Newest first, one per lease, and the ticket API's latest receipt is the newest.
    assert [c["lease_id"] for c in claims] == list(reversed(leases))
    assert (
        listed[0]["purge_receipt"] == ticket_system.status(ticket_ref).get_json()["purge_receipt"]
    )


def lease_of_latest(app, ticket_ref: str) -> str:
    from vault_service.models import Ticket

    with app.app_context():
        ticket = db.session.scalar(select(Ticket).where(Ticket.ref == ticket_ref))
        return db.session.scalar(
            select(Lease.id).where(Lease.ticket_id == ticket.id).order_by(Lease.created_at.desc())
        )


def test_the_receipt_key_never_leaves_vault(openbao, app_token):
    app_client = hvac.Client(url=openbao.addr, token=app_token, timeout=10)
    # The app's own token: no export, no reconfiguration (which could make it exportable), no
    # rotation, no backup. Vault answers 403 to each.
    for method, path, body in (
        ("GET", f"{TRANSIT_MOUNT}/export/signing-key/{RECEIPT_KEY}", None),
        ("GET", f"{TRANSIT_MOUNT}/export/signing-key/{RECEIPT_KEY}/latest", None),
        ("POST", f"{TRANSIT_MOUNT}/keys/{RECEIPT_KEY}/config", {"exportable": True}),
        ("POST", f"{TRANSIT_MOUNT}/keys/{RECEIPT_KEY}/rotate", {}),
        ("GET", f"{TRANSIT_MOUNT}/backup/{RECEIPT_KEY}", None),
        ("DELETE", f"{TRANSIT_MOUNT}/keys/{RECEIPT_KEY}", None),
    ):
        with pytest.raises(hvac.exceptions.Forbidden):
            app_client.adapter.request(method, f"/v1/{path}", json=body)
    # As an operator reads it: ed25519, not exportable, no plaintext backup. So even the root
    # token cannot export it.
    admin = openbao.admin()
    key = admin.secrets.transit.read_key(name=RECEIPT_KEY, mount_point=TRANSIT_MOUNT)["data"]
    assert key["type"] == "ed25519"
    assert key["exportable"] is False
    assert key["allow_plaintext_backup"] is False
    with pytest.raises(hvac.exceptions.InvalidRequest):
        admin.secrets.transit.export_key(
            name=RECEIPT_KEY, key_type="signing-key", mount_point=TRANSIT_MOUNT
        )


def test_rotation_keeps_old_receipts_verifiable(
    app, client, ticket_system, openbao, tmp_path, monkeypatch
):
    first_ref, second_ref = (f"T-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for ticket_ref in (first_ref, second_ref):
        path = ticket_system.link_path(ticket_ref)
        assert client.post(path, json={"items": SAMPLE_ITEMS[:1]}).status_code == 201
    first = close_and_purge(ticket_system, app, first_ref)["purge_receipt_jws"]

    token_file = tmp_path / "admin-token"
    token_file.write_text(openbao.root_token)
    monkeypatch.setenv("VAULT_ADDR", openbao.addr)
    result = CliRunner().invoke(main, ["rotate-receipt-key", "--admin-token-file", str(token_file)])
    assert result.exit_code == 0, result.output
    second = close_and_purge(ticket_system, app, second_ref)["purge_receipt_jws"]

    kids = [json.loads(jws.b64url_decode(token.split(".")[0]))["kid"] for token in (first, second)]
    assert kids[0] != kids[1]
    assert kids[1] == f"{RECEIPT_KEY}:v{result.output.split()[-1]}"
    published = {key["kid"] for key in client.get("/.well-known/jwks.json").get_json()["keys"]}
    assert set(kids) <= published
    assert verify_independently(client, first)["ticket_ref"] == first_ref
    assert verify_independently(client, second)["ticket_ref"] == second_ref


def test_a_purge_asks_vault_only_to_sign_until_the_receipt_key_is_rotated(
    app, client, ticket_system, openbao
):
    """OpenBao's audit log: once the worker has read the receipt key, a purge's one call on it is
    the signature; after a rotation the signature comes back from the new version, so the worker
    reads the key again and signs again, and that very receipt carries the new kid."""
    refs = [f"T-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for ticket_ref in refs:
        path = ticket_system.link_path(ticket_ref)
        assert client.post(path, json={"items": SAMPLE_ITEMS[:1]}).status_code == 201
    close_and_purge(ticket_system, app, refs[0])

    def receipt_key_calls(ticket_ref: str) -> tuple[list[tuple[str, str]], str]:
        offset = Path(openbao.audit_log).stat().st_size
        token = close_and_purge(ticket_system, app, ticket_ref)["purge_receipt_jws"]
        calls = [
            (request["operation"], request["path"].split("/")[1])
            for request in vault_requests_since(openbao, offset)
            if request.get("path", "").endswith(f"/{RECEIPT_KEY}")
        ]
        return calls, json.loads(jws.b64url_decode(token.split(".")[0]))["kid"]

    calls, kid = receipt_key_calls(refs[1])
    assert calls == [("update", "sign")]
    admin = openbao.admin()
    admin.secrets.transit.rotate_key(name=RECEIPT_KEY, mount_point=TRANSIT_MOUNT)
    latest = admin.secrets.transit.read_key(name=RECEIPT_KEY, mount_point=TRANSIT_MOUNT)
    calls, rotated_kid = receipt_key_calls(refs[2])
    assert calls == [("update", "sign"), ("read", "keys"), ("update", "sign")]
    assert kid != rotated_kid == f"{RECEIPT_KEY}:v{latest['data']['latest_version']}"
    status = ticket_system.status(refs[2]).get_json()
    assert verify_independently(client, status["purge_receipt_jws"])["ticket_ref"] == refs[2]


def test_the_jwks_is_public_briefly_cacheable_and_holds_only_public_keys(client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    keys = response.get_json()["keys"]
    assert keys
    for key in keys:
        assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}  # no "d": no private half
        assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA")
        assert len(jws.b64url_decode(key["x"])) == 32


def test_verify_receipt_accepts_a_good_receipt_and_refuses_a_bad_one(
    app, client, ticket_system, submitted_ticket, tmp_path, monkeypatch
):
    monkeypatch.delenv("VAULT_SERVICE_PUBLIC_URL", raising=False)
    token = close_and_purge(ticket_system, app, submitted_ticket)["purge_receipt_jws"]
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(client.get("/.well-known/jwks.json").get_data(as_text=True))

    def verify(text: str, *options: str):
        receipt = tmp_path / "receipt.jws"
        receipt.write_text(text)
        return CliRunner().invoke(
            main, ["verify-receipt", str(receipt), "--jwks", str(jwks_file), *options]
        )

    good = verify(token, "--issuer", ISSUER)
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["ticket_ref"] == submitted_ticket
    # The ticket API's answer, saved as it came, verifies too.
    answer = json.dumps(ticket_system.status(submitted_ticket).get_json())
    assert verify(answer, "--issuer", ISSUER).exit_code == 0

    for bad, options in (
        (tamper(token, 1), ("--issuer", ISSUER)),
        (tamper(token, 2), ("--issuer", ISSUER)),
        (token, ("--issuer", "https://impostor.example")),
        ("not a receipt", ("--issuer", ISSUER)),
    ):
        result = verify(bad, *options)
        assert result.exit_code == 1, result.output
        assert "INVALID" in result.stderr
    # A JWKS without the signing key: kid unknown.
    jwks_file.write_text(json.dumps({"keys": []}))
    assert verify(token, "--issuer", ISSUER).exit_code == 1


def test_doctor_checks_the_receipt_key(app, settings, vault):
    with app.app_context():
        findings = {f.name: f for f in run_checks(settings, vault)}
    finding = findings[f"receipt signing key {RECEIPT_KEY}"]
    assert finding.ok, finding.detail
    assert not check_receipt_key(None).ok
    good = {"type": "ed25519", "exportable": False, "allow_plaintext_backup": False}
    assert check_receipt_key(good).ok
    for wrong in ({"exportable": True}, {"allow_plaintext_backup": True}, {"type": "rsa-2048"}):
        assert not check_receipt_key({**good, **wrong}).ok


def test_the_receipt_row_holds_the_jws_and_its_claims(app, ticket_system, submitted_ticket):
    status = close_and_purge(ticket_system, app, submitted_ticket)
    with app.app_context():
        [receipt] = db.session.scalars(select(Receipt)).all()
    assert receipt.jws == status["purge_receipt_jws"]
    assert receipt.reason == "ticket_closed"
    assert receipt.payload == json.loads(jws.b64url_decode(receipt.jws.split(".")[1]))
