"""Customer submissions: validate typed credentials, store them in Vault, consume the link once."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update

from ..clock import utcnow
from ..config import Settings
from ..errors import Conflict, LinkGone, ServiceUnavailable, ValidationFailed
from ..extensions import db
from ..models import CredentialItem, Lease, SubmissionLink, Ticket, new_uuid
from ..vault import Vault, VaultError
from . import audit
from .tickets import hash_link_token

log = logging.getLogger(__name__)

KIND_LABELS = {
    "ftp": "FTP",
    "sftp": "SFTP",
    "ftps": "FTPS",
    "admin_panel": "Admin panel",
    "other": "Other",
    "notes": "Notes",
}
FILE_TRANSFER_KINDS = ("ftp", "sftp", "ftps")
KIND_FIELDS = {
    "ftp": ("host", "port", "username", "password"),
    "sftp": ("host", "port", "username", "password"),
    "ftps": ("host", "port", "username", "password"),
    "admin_panel": ("url", "username", "password"),
    "other": ("label", "secret"),
}
FIELD_MAX_LENGTHS = {
    "host": 253,
    "port": 5,
    "username": 256,
    "password": 1024,
    "url": 2048,
    "label": 100,
    "secret": 8192,
    "notes": 4000,
}
MAX_ITEMS = 20
# The claim a submission holds on its link while it writes to Vault; long enough for every
# Vault call to time out once, short enough that a crashed worker frees the link quickly.
CLAIM_SECONDS = 120
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


@dataclass(frozen=True)
class CredentialInput:
    """One validated credential: its kind and its string fields."""

    kind: str
    fields: dict[str, str]

    def plaintext(self) -> str:
        """What is encrypted into Vault: the kind and fields as JSON (never logged)."""
        return json.dumps({"kind": self.kind, "fields": self.fields}, ensure_ascii=False)


@dataclass(frozen=True)
class SubmissionInput:
    """A validated submission."""

    items: list[CredentialInput]
    notes: str


def _is_valid_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(value))


def _is_web_address(value: str) -> bool:
    """An absolute http(s) URL with a host, and no whitespace anywhere (urlsplit would quietly
    drop tabs and newlines)."""
    if any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 literal
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _has_control_characters(value: str) -> bool:
    # Tabs and newlines are fine in a secret; NUL and other C0 controls only break things.
    return any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value)


def _check_field(name: str, value: object, errors: dict[str, str], key: str) -> str:
    if value is None or value == "":
        errors[key] = "This field is required."
        return ""
    # Every stored value is text; only a port may also come as a JSON number.
    if not isinstance(value, str | int if name == "port" else str) or isinstance(value, bool):
        errors[key] = "Must be text."
        return ""
    text = str(value)
    if len(text) > FIELD_MAX_LENGTHS[name]:
        errors[key] = f"At most {FIELD_MAX_LENGTHS[name]} characters."
    elif _has_control_characters(text):
        errors[key] = "Contains characters that are not allowed."
    elif name == "host" and not _is_valid_host(text):
        errors[key] = "Enter a host name or IP address, without spaces or a scheme."
    elif name == "port" and not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        # isascii first: isdigit() also holds for "²", which int() refuses.
        errors[key] = "Enter a port number between 1 and 65535."
    elif name == "url" and not _is_web_address(text):
        errors[key] = "Enter a full http:// or https:// address."
    elif name in ("username", "label") and not text.strip():
        errors[key] = "This field is required."
    # Values are kept byte-exact: a password's spaces are part of it.
    return text


def validate_submission(payload: object) -> SubmissionInput:
    """Check a submission's shape and every field; raise ValidationFailed listing each problem."""
    if not isinstance(payload, dict):
        raise ValidationFailed("The submission must be a JSON object.")
    errors: dict[str, str] = {}
    for name in sorted(map(str, set(payload) - {"items", "notes"})):
        errors[name] = "Unknown field."
    raw_items = payload.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        errors["items"] = "Add at least one credential."
        raw_items = []
    elif len(raw_items) > MAX_ITEMS:
        errors["items"] = f"At most {MAX_ITEMS} credentials per submission."
        raw_items = []
    items: list[CredentialInput] = []
    for index, raw in enumerate(raw_items):
        prefix = f"items[{index}]"
        if not isinstance(raw, dict):
            errors[prefix] = "Each credential must be an object."
            continue
        kind = raw.get("kind")
        # isinstance first: `[] in KIND_FIELDS` raises TypeError (unhashable), a 500.
        if not isinstance(kind, str) or kind not in KIND_FIELDS:
            errors[f"{prefix}.kind"] = "Choose ftp, sftp, ftps, admin_panel or other."
            continue
        names = KIND_FIELDS[kind]
        for name in sorted(map(str, set(raw) - set(names) - {"kind"})):
            errors[f"{prefix}.{name}"] = f"Not a field of {kind}."
        fields = {
            name: _check_field(name, raw.get(name), errors, f"{prefix}.{name}") for name in names
        }
        items.append(CredentialInput(kind, fields))
    notes = payload.get("notes", "")
    if notes is None:
        notes = ""
    if not isinstance(notes, str):
        errors["notes"] = "Must be text."
        notes = ""
    elif len(notes) > FIELD_MAX_LENGTHS["notes"]:
        errors["notes"] = f"At most {FIELD_MAX_LENGTHS['notes']} characters."
    elif "\x00" in notes:
        errors["notes"] = "Contains characters that are not allowed."
    if errors:
        raise ValidationFailed(fields=errors)
    return SubmissionInput(items, notes)


def find_usable_link(settings: Settings, token: str) -> SubmissionLink:
    """The link for a token if it can still take a submission; one LinkGone for every other case."""
    if not token or len(token) > 128:
        raise LinkGone()
    row = db.session.execute(
        select(SubmissionLink, Lease.status, Ticket.status)
        .join(Lease, Lease.id == SubmissionLink.lease_id)
        .join(Ticket, Ticket.id == SubmissionLink.ticket_id)
        .where(SubmissionLink.token_hash == hash_link_token(settings, token))
    ).first()
    if row is None:
        raise LinkGone()
    link, lease_status, ticket_status = row
    if link.consumed_at is not None or link.expires_at <= utcnow():
        raise LinkGone()
    if lease_status != "active" or ticket_status != "open":
        raise LinkGone()
    return link


def _claim_link(link_id: str) -> None:
    now = utcnow()
    claimed = db.session.execute(
        update(SubmissionLink)
        .where(
            SubmissionLink.id == link_id,
            SubmissionLink.consumed_at.is_(None),
            SubmissionLink.expires_at > now,
            or_(SubmissionLink.claimed_until.is_(None), SubmissionLink.claimed_until <= now),
        )
        .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    ).rowcount
    db.session.commit()
    if claimed != 1:
        # Either it was consumed a moment ago (410 from now on) or another post is mid-flight.
        link = db.session.get(SubmissionLink, link_id)
        db.session.rollback()
        if link is None or link.consumed_at is not None:
            raise LinkGone()
        raise Conflict("A submission for this link is already being processed.")


def _release_claim(link_id: str) -> None:
    db.session.rollback()
    db.session.execute(
        update(SubmissionLink)
        .where(SubmissionLink.id == link_id, SubmissionLink.consumed_at.is_(None))
        .values(claimed_until=None)
    )
    db.session.commit()


def _discard_written(vault: Vault, lease_id: str, item_ids: list[str]) -> None:
    """Best effort: remove what this submission wrote. Anything this misses stays under the
    lease's path, which the purge lists from Vault itself, so it goes at close or retention."""
    for item_id in item_ids:
        try:
            vault.delete_item(lease_id, item_id)
        except VaultError:
            log.warning(
                "could not discard item after a failed submission",
                extra={"fields": {"lease_id": lease_id, "item_id": item_id}},
            )


def _fail_submission(
    link_id: str, lease_id: str, error: VaultError, *, discard: list[str], vault: Vault
) -> NoReturn:
    """Undo what a failed submission wrote, free its link, and say why: 410 if the ticket
    closed under it, 503 (retry) if Vault failed."""
    _discard_written(vault, lease_id, discard)
    _release_claim(link_id)
    state = db.session.execute(
        select(Lease.status, Ticket.status)
        .join(Ticket, Lease.ticket_id == Ticket.id)
        .where(Lease.id == lease_id)
    ).one_or_none()
    db.session.rollback()
    if state is None or tuple(state) != ("active", "open"):
        # The close won the race and its purge destroyed the key under us: the link is gone
        # for good, so say so (410), not "retry later" (503).
        raise LinkGone() from error
    log.warning(
        "submission not stored: vault error",
        extra={"fields": {"link_id": link_id, "error": str(error)}},
    )
    raise ServiceUnavailable() from error


@dataclass(frozen=True)
class SubmissionReceipt:
    """What the customer is told: how many items were stored, and until when at most."""

    ticket_ref: str
    item_count: int
    kinds: list[str]
    retention_until: str


def submit_credentials(
    settings: Settings, vault: Vault, token: str, payload: object, *, client: str = "customer"
) -> SubmissionReceipt:
    """Store a submission in Vault under the link's lease and consume the link atomically."""
    link = find_usable_link(settings, token)
    submission = validate_submission(payload)
    link_id, lease_id, ticket_id = link.id, link.lease_id, link.ticket_id
    _claim_link(link_id)

    to_store = list(submission.items)
    if submission.notes:
        to_store.append(CredentialInput("notes", {"notes": submission.notes}))
    item_ids = [new_uuid() for _ in to_store]
    try:
        ciphertexts = vault.encrypt_items(lease_id, [item.plaintext() for item in to_store])
    except VaultError as error:
        _fail_submission(link_id, lease_id, error, discard=[], vault=vault)
    try:
        vault.write_items(lease_id, list(zip(item_ids, ciphertexts, strict=True)))
    except VaultError as error:
        # Some writes may have landed; deleting an item that was never written is a no-op.
        _fail_submission(link_id, lease_id, error, discard=item_ids, vault=vault)

    # The final step re-checks under the lease's row lock: a close that won the race means the
    # purge may already have run, so what we wrote must go and the customer is told so.
    lease = db.session.scalar(select(Lease).where(Lease.id == lease_id).with_for_update())
    ticket = db.session.get(Ticket, ticket_id)
    if lease is None or lease.status != "active" or ticket is None or ticket.status != "open":
        db.session.rollback()
        _discard_written(vault, lease_id, item_ids)
        _release_claim(link_id)
        raise LinkGone()
    now = utcnow()
    db.session.add_all(
        CredentialItem(
            id=item_id, lease_id=lease_id, link_id=link_id, kind=item.kind, position=position
        )
        for position, (item_id, item) in enumerate(zip(item_ids, to_store, strict=True))
    )
    db.session.execute(
        update(SubmissionLink)
        .where(SubmissionLink.id == link_id)
        .values(consumed_at=now, claimed_until=None)
    )
    kinds = [item.kind for item in to_store]
    audit.record(
        "submission.received",
        actor=client,
        ticket_ref=ticket.ref,
        link_id=link_id,
        item_count=len(to_store),
        kinds=kinds,
    )
    retention_until = lease.expires_at.isoformat()
    db.session.commit()
    return SubmissionReceipt(ticket.ref, len(to_store), kinds, retention_until)
