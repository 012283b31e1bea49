"""Purging a lease: destroy its Vault material, confirm through Vault's API that nothing is
left, and record the receipt. Run as the "purge" job kind (services/job_kinds/purge.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, update

from .. import failpoints
from ..clock import utcnow
from ..config import Settings
from ..extensions import db
from ..models import GRANTS, ITEMS, DatabaseIdentity, Job, Lease, Ticket
from ..transactions import read_only
from ..vault import Vault, VaultError
from . import audit, connectors, events, lifecycle, receipts
from .events import EventType
from .receipts import PurgeFacts, PurgeReceipt, ReceiptAccess, ReceiptClaims


@dataclass
class PurgeProgress:
    """What a purge destroyed and then confirmed absent through Vault's API."""

    tokens_revoked: list[str] = field(default_factory=list)
    kv_items_deleted: list[str] = field(default_factory=list)
    transit_key: str = ""
    entity_id: str | None = None


def _destroy_lease_material(
    vault: Vault,
    lease: Lease,
    known_item_ids: list[str],
    grant_accessors: list[str],
    *,
    legacy: bool,
) -> PurgeProgress:
    """Each step treats 'already gone' as done, so a retried purge repeats it safely."""
    progress = PurgeProgress()
    # 1. Tokens first: access ends before anything else happens. Revoking the lease revokes
    #    every grant with it (they are its children); _verify_destroyed looks each grant up and
    #    revokes any survivor of a broken tree on its own.
    if lease.token_accessor:
        vault.revoke_accessor(lease.token_accessor)
        progress.tokens_revoked.append(lease.token_accessor)
    progress.tokens_revoked += [a for a in grant_accessors if a]
    failpoints.hit("purge.after_revoke")
    # 2. Crypto-shred: without the key, any copy of the ciphertext (backups, snapshots) is noise.
    # Named before it goes: the legacy layout's name for a lease created before deployment ids.
    key_name = vault.lease_key_name(lease.id)
    vault.delete_lease_key(lease.id, legacy=legacy)
    progress.transit_key = key_name
    # 3. Every KV entry under the lease, from Vault's own listing plus the ones we recorded.
    for item_id in sorted(set(known_item_ids) | set(vault.list_items(lease.id, legacy=legacy))):
        vault.delete_item(lease.id, item_id, legacy=legacy)
        progress.kv_items_deleted.append(item_id)
    # 4. The identity entity whose alias carries the lease id (what scoped the static policies).
    if lease.entity_id:
        vault.delete_entity(lease.entity_id)
        progress.entity_id = lease.entity_id
    return progress


def _verify_destroyed(
    vault: Vault, lease_id: str, progress: PurgeProgress, *, legacy: bool
) -> None:
    """Ask Vault, not our own bookkeeping, whether anything of the lease is left."""
    leftovers = []
    for accessor in progress.tokens_revoked:
        if vault.accessor_exists(accessor):
            # A grant outside the lease's tree (it should not exist): revoke it on its own.
            vault.revoke_accessor(accessor)
            if vault.accessor_exists(accessor):
                leftovers.append(f"token {accessor}")
    if vault.lease_key_exists(lease_id, legacy=legacy):
        leftovers.append("transit key")
    # Vault lists the lease's KV metadata: an empty listing means no item's metadata is left.
    if vault.list_items(lease_id, legacy=legacy):
        leftovers.append("kv listing")
    if progress.entity_id and vault.entity_exists(progress.entity_id):
        leftovers.append("identity entity")
    if leftovers:
        raise PurgeIncomplete(f"still present after purge: {len(leftovers)} object(s)")


class PurgeIncomplete(VaultError):
    """Vault still shows something the purge deleted; retried like any other failure."""


@dataclass(frozen=True)
class PurgeTarget:
    """What a purge job destroys, and who had access to it, read before Vault is called."""

    lease: Lease
    ticket_ref: str
    item_ids: list[str]
    grant_accessors: list[str]
    accesses: list[ReceiptAccess]
    # The lease may predate deployment ids: its material may be in the legacy layout too.
    may_be_legacy: bool


@dataclass(frozen=True)
class PurgeDone:
    """A purge that Vault confirmed: what it destroyed, and its receipt signed by Vault."""

    target: PurgeTarget
    progress: PurgeProgress
    claims: ReceiptClaims
    receipt_jws: str


# The purge's statements, built once with their values bound per call: building them cost more
# CPU than the database takes to run them, and a mass close runs them a thousand times.
# A purge job is enqueued for an existing lease (the job's ticket is the lease's), and neither row
# is ever deleted. The database's identity comes in the same statement: the database knows when
# it was written (see may_be_legacy below).
_TARGET = (
    select(Lease, Ticket.ref, select(DatabaseIdentity.created_at).scalar_subquery())
    .join(Ticket, Ticket.id == Lease.ticket_id)
    .where(Lease.id == bindparam("lease_id"))
)
_GRANT_ACCESSORS = select(GRANTS.c.token_accessor).where(GRANTS.c.lease_id == bindparam("lease_id"))
_ITEM_IDS = select(ITEMS.c.id).where(ITEMS.c.lease_id == bindparam("lease_id"))
# The erasure runs as Core on the completing transaction's connection: no grant or item entity
# is loaded in it (the read step reads plain values), so there is nothing in the session to keep
# in step, and the ORM's bulk-statement machinery would cost more than the statements.
_DELETE_ITEMS = delete(ITEMS).where(ITEMS.c.lease_id == bindparam("lease_id"))
# One statement for every grant of the lease: its token erased, and ended now unless it already
# had ended. (An UPDATE's parameters may not share a column's name: SET would claim them.)
_END_GRANTS = (
    update(GRANTS)
    .where(GRANTS.c.lease_id == bindparam("purged_lease_id"))
    .values(
        token_ciphertext=None,
        revoked_at=func.coalesce(
            GRANTS.c.revoked_at, bindparam("now", type_=GRANTS.c.revoked_at.type)
        ),
    )
)


def _read_target(job: Job) -> PurgeTarget:
    with read_only() as session:
        lease, ticket_ref, identity_since = session.execute(
            _TARGET, {"lease_id": job.payload["lease_id"]}
        ).one()
        connection = session.connection()
        grant_accessors = list(connection.scalars(_GRANT_ACCESSORS, {"lease_id": lease.id}))
        item_ids = list(connection.scalars(_ITEM_IDS, {"lease_id": lease.id}))
        # The receipt's access summary is fixed here, before the purge changes anything.
        accesses = receipts.read_accesses(session, lease.id, ticket_ref)
    # The database's identity is written before its first lease's Vault material: a lease older
    # than it (or a database without one) may hold material in the legacy layout (the very
    # first lease, reserved just before, is asked about both: a few calls, once).
    may_be_legacy = identity_since is None or lease.created_at < identity_since
    return PurgeTarget(lease, ticket_ref, item_ids, grant_accessors, accesses, may_be_legacy)


def _receipt_body(
    job: Job, target: PurgeTarget, progress: PurgeProgress, now: datetime
) -> PurgeFacts:
    """What the purge did, as the receipt states it."""
    return {
        "ticket_ref": target.ticket_ref,
        "lease_id": target.lease.id,
        "requested_at": job.created_at.isoformat(),
        "completed_at": now.isoformat(),
        "destroyed": {
            "kv_entries": len(progress.kv_items_deleted),
            # The lease is purging, so no submission can add a record before they are erased.
            "credential_records": len(target.item_ids),
            "transit_key": progress.transit_key,
            "identity_entity": progress.entity_id,
            "tokens_revoked": len(progress.tokens_revoked),
            "token_accessors": progress.tokens_revoked,
        },
        # Each object above was looked up again through Vault's API and found absent.
        "verified_absent_in_vault": True,
    }


def destroy_lease(settings: Settings, vault: Vault, job: Job) -> PurgeDone:
    """Destroy a purge job's lease material in Vault, confirm it gone, and have Vault sign the
    receipt (no transaction held)."""
    target = _read_target(job)
    legacy = target.may_be_legacy
    progress = _destroy_lease_material(
        vault, target.lease, target.item_ids, target.grant_accessors, legacy=legacy
    )
    _verify_destroyed(vault, target.lease.id, progress, legacy=legacy)
    now = utcnow()
    claims = receipts.claims_for(
        settings,
        issued_at=now,
        reason=job.payload["reason"],
        body=_receipt_body(job, target, progress, now),
        accesses=target.accesses,
    )
    # A signing failure (Vault down, key missing) fails the attempt: it is retried like any
    # other, and the destruction steps it repeats find everything already gone.
    return PurgeDone(target, progress, claims, receipts.sign_claims(vault, claims))


def _erase_lease_records(lease_id: str, now: datetime) -> None:
    """Delete the lease's item records and end its grants."""
    connection = db.session.connection()
    connection.execute(_DELETE_ITEMS, {"lease_id": lease_id})
    connection.execute(_END_GRANTS, {"purged_lease_id": lease_id, "now": now})


def record_purge(job: Job, done: PurgeDone) -> PurgeReceipt:
    """In the job's completing transaction: erase the lease's records, audit, keep the signed
    receipt; returns the receipt's JSON (the job's result)."""
    now = utcnow()
    target, progress = done.target, done.progress
    _erase_lease_records(target.lease.id, now)
    ticket_id = target.lease.ticket_id  # the job's ticket (lifecycle._purge_lease)
    lifecycle.complete_lease_purge(ticket_id, target.lease.id, now)
    event = audit.record(
        "purge.completed",
        actor="worker",
        ticket_ref=target.ticket_ref,
        lease_id=target.lease.id,
        kv_entries=len(progress.kv_items_deleted),
        tokens_revoked=len(progress.tokens_revoked),
        transit_key=progress.transit_key,
        receipt_jti=done.claims["jti"],
    )
    receipt = receipts.store_receipt(
        ticket_id, target.lease.id, done.claims, done.receipt_jws, event.hash
    )
    connectors.enqueue_purged_note(target.ticket_ref, ticket_id, job.id)
    # The contract's `receipt` is the signed one: the compact JWS anyone verifies with the JWKS.
    events.emit(
        EventType.TICKET_PURGED, target.ticket_ref, ticket_id=ticket_id, receipt=done.receipt_jws
    )
    return receipt
