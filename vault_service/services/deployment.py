"""Which deployment this database is in Vault, and whether Vault agrees that it owns that name.

Deployments sharing one OpenBao keep their material under their own VAULT_SERVICE_DEPLOYMENT_ID
(vault/layout.py). The id is the operator's choice, so two databases could be given the same one;
each database therefore has a random identity of its own, and Vault keeps, per deployment id, a
write-once marker naming the database that claimed it first. A process that finds another
database there refuses to sweep or to create new material (DeploymentConflict) and doctor fails.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..models import DatabaseIdentity, Lease
from ..transactions import read_only, transaction
from ..vault import DeploymentConflict, Vault

__all__ = [
    "DeploymentCheck",
    "DeploymentConflict",
    "check_deployment",
    "database_id",
    "legacy_leases_live",
    "require_own_deployment",
]


@dataclass(frozen=True)
class DeploymentCheck:
    """This database's identity next to the one Vault's marker names for the deployment id."""

    deployment_id: str
    database_id: str
    owner: str | None  # the marker's database id; None when the id is unclaimed

    @property
    def ours(self) -> bool:
        return self.owner == self.database_id


def database_id() -> str:
    """This database's id, written on first use (a racing writer loses to the row written first)."""
    with read_only() as session:
        existing: str | None = session.scalar(select(DatabaseIdentity.database_id))
    if existing is not None:
        return existing
    try:
        with transaction() as session:
            session.add(DatabaseIdentity(singleton=1, database_id=str(uuid.uuid4())))
    except IntegrityError:
        pass  # another process wrote it between our read and our insert: theirs stands
    with read_only() as session:
        written: str | None = session.scalar(select(DatabaseIdentity.database_id))
    if written is None:  # pragma: no cover - the insert above or a rival's committed one
        raise RuntimeError("database identity missing after it was written")
    return written


def legacy_leases_live() -> bool:
    """Whether a lease not yet purged predates this database's identity, so that its material
    may sit in the legacy layout (from before deployment ids). The Vault gateway asks: while
    none does, a lease's layout is the current one without asking Vault which key exists."""
    with read_only() as session:
        since = session.scalar(select(DatabaseIdentity.created_at))
        live = select(Lease.id).where(Lease.purged_at.is_(None))
        if since is not None:
            live = live.where(Lease.created_at < since)
        return session.scalar(live.limit(1)) is not None


def require_own_deployment(vault: Vault, database: str | None = None) -> str:
    """Claim the deployment id for this database (once) or raise DeploymentConflict; call before
    any listing that may destroy (the orphan sweep) and before creating a lease's material.
    `database` is this database's id when the caller has just read it (database_id())."""
    return vault.claim_deployment(database or database_id())


def check_deployment(vault: Vault) -> DeploymentCheck:
    """What doctor reports: claims an unclaimed id (as the app's first sweep would), never raises
    on a conflict."""
    mine = database_id()
    try:
        vault.claim_deployment(mine)
    except DeploymentConflict:
        return DeploymentCheck(vault.deployment, mine, vault.read_deployment_owner())
    return DeploymentCheck(vault.deployment, mine, mine)
