"""Invariant 1: a submitted canary reaches no database file, log line, page (but the reveal),
outbound event, or Vault's audit log in clear — searched byte by byte after the whole story. One
page is its own exception: the customer's form, re-rendered after a validation error, gives its
author back what they typed except passwords and other secrets; a password canary proves that
part."""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from vault_service.extensions import db
from vault_service.kinds.validation import CredentialInput
from vault_service.logs import JsonFormatter

from .conftest import EVENTS_KEY
from .helpers import run_worker_pass

VAULT_TOKEN = re.compile(rb"(?<![A-Za-z0-9])(?:hvs|hvb|s|b)\.[A-Za-z0-9_-]{20,}")


@pytest.fixture
def settings(make_settings, receiver):
    return make_settings(events_url=receiver.url, events_secrets=(EVENTS_KEY,))


def encodings_of(value: str) -> list[bytes]:
    """The ways a value could leak: as is, and base64 as Vault's transit API carries it."""
    raw = value.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw)]


def test_canary_is_nowhere_but_the_reveal_response(
    app, client, ticket_system, agent, openbao, database_url, capfd, tmp_path, receiver
):
    canary = f"CANARY{uuid.uuid4().hex}"
    password_canary = f"PWCANARY{uuid.uuid4().hex}"
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(JsonFormatter())  # what production writes, fields included
    logging.getLogger().addHandler(handler)
    logging.getLogger("vault_service").addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    items = [
        {
            "kind": "ftps",
            "host": f"{canary.lower()}.example.test",
            "port": "990",
            "username": f"user-{canary}",
            "password": f"pw {canary} ✓",
        },
        {
            "kind": "admin_panel",
            "url": f"https://{canary.lower()}.example.test/admin",
            "username": canary,
            "password": f"{canary}!",
        },
        {"kind": "other", "label": f"label {canary}", "secret": f"secret\n{canary}"},
    ]
    pages: list[str] = []
    try:
        # JSON submission, after a rejected one that carried the canary in every field.
        path = ticket_system.link_path("T-canary")
        link_paths = [path]
        pages.append(client.get(path).get_data(as_text=True))
        bad = [dict(items[0], port="99999"), *items[1:]]
        pages.append(client.post(path, json={"items": bad}).get_data(as_text=True))
        pages.append(
            client.post(path, json={"items": items, "notes": f"notes {canary}"}).get_data(
                as_text=True
            )
        )
        # HTML form submission on a second link, also after a rejected attempt.
        form_path = ticket_system.link_path("T-canary")
        link_paths.append(form_path)
        form_page = client.get(form_path).get_data(as_text=True)
        csrf = form_page.split('name="csrf_token" value="')[1].split('"')[0]
        form = {
            "csrf_token": csrf,
            "ft_kind": "sftp",
            "ft_host": f"{canary.lower()}.example.test",
            "ft_port": "not-a-port",
            "ft_username": canary,
            "ft_password": password_canary,
            "notes": canary,
        }
        refilled = client.post(form_path, data=form).get_data(as_text=True)
        # The customer's own values come back to them (notes included); the password never.
        assert canary in refilled and f"{canary.lower()}.example.test" in refilled
        assert password_canary not in refilled
        pages.append(client.post(form_path, data=dict(form, ft_port="22")).get_data(as_text=True))

        agent.login()
        pages.append(client.get("/").get_data(as_text=True))
        pages.append(client.get("/tickets/T-canary").get_data(as_text=True))
        agent.request_access("T-canary")
        pages.append(client.get("/tickets/T-canary").get_data(as_text=True))
        reveal = agent.reveal("T-canary").get_data(as_text=True)
        assert reveal.count(canary) >= 8  # the one place it must appear
        pages.append(ticket_system.status("T-canary").get_data(as_text=True))
        assert ticket_system.close("T-canary").status_code == 202
        run_worker_pass(app)
        run_worker_pass(app)  # the purge's event, enqueued by the purge
        pages.append(ticket_system.status("T-canary").get_data(as_text=True))
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger("vault_service").removeHandler(handler)
        handler.close()

    needles = [canary.encode(), canary.lower().encode(), password_canary.encode()]
    for item in items:
        plaintext = CredentialInput(item["kind"], {k: v for k, v in item.items() if k != "kind"})
        needles += encodings_of(plaintext.plaintext())

    for number, page in enumerate(pages):
        assert canary not in page and canary.lower() not in page, f"page {number}"
        assert password_canary not in page, f"page {number}"

    # Every outbound event, as delivered: no value, no link token, no Vault token.
    delivered = [attempt.body for attempt in receiver.delivered()]
    assert [json.loads(body)["type"] for body in delivered] == [
        "credentials.submitted",
        "credentials.submitted",
        "access.granted",
        "credentials.revealed",
        "ticket.closed",
        "ticket.purged",
    ]
    link_tokens = [path.rsplit("/", 1)[1].encode() for path in link_paths]
    for body in delivered:
        for needle in [*needles, *link_tokens]:
            assert needle not in body
        # A Vault token's shape (service or batch, either prefix generation); accessors, which
        # the receipt names, have none.
        assert not VAULT_TOKEN.search(body)

    captured = capfd.readouterr()
    logs = (captured.out + captured.err).encode() + log_file.read_bytes()
    assert b"submission.received" in logs  # the logs did capture the story
    for needle in needles:
        assert needle not in logs

    audit_log = Path(openbao.audit_log).read_bytes()
    assert b"vault-service-kv" in audit_log  # Vault did record the requests...
    for needle in needles:
        assert needle not in audit_log  # ...with values only as HMACs
    assert any(b"hmac-sha256:" in line for line in audit_log.splitlines())

    if database_url.startswith("sqlite:///"):
        database = Path(database_url.removeprefix("sqlite:///"))
        files = [database, *(Path(f"{database}{suffix}") for suffix in ("-wal", "-shm"))]
        contents = b"".join(f.read_bytes() for f in files if f.exists())
        assert len(contents) > 0
        for needle in needles:
            assert needle not in contents
    # On any database: every column of every row, as text.
    with app.app_context():
        dump = []
        for table in inspect(db.engine).get_table_names():
            rows = db.session.execute(text(f'SELECT * FROM "{table}"')).all()  # noqa: S608
            dump.append(json.dumps([list(map(str, row)) for row in rows]))
        assert db.session.scalar(select(text("1")))
    everything = "\n".join(dump)
    assert "T-canary" in everything
    assert canary not in everything and canary.lower() not in everything
    assert password_canary not in everything
