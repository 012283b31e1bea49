"""Orphans: Vault material of a lease the database does not know or has purged.

They arise when a process dies between a Vault write and its database commit (a submission's KV
entries after its lease was purged, say), or when the database is restored from an older backup
(SECURITY.md, "Restoring the database from a backup").

A sweep sees only its own deployment's material: the KV folder and the lease keys named by
VAULT_SERVICE_DEPLOYMENT_ID, and only after Vault's marker confirmed that this database owns that
id. Legacy material (created before deployments had ids) carries no deployment in its names, so
no sweep ever removes it: only the purge of a lease this database knows does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from ..models import OWNED_LEASE_STATES, Lease
from ..transactions import read_only, transaction
from ..vault import Vault
from . import audit, deployment

log = logging.getLogger(__name__)


@dataclass
class OrphanReport:
    """What an orphan sweep removed, by lease."""

    kv_entries: dict[str, int] = field(default_factory=dict)
    # Lease id -> the name of its transit key that was deleted.
    transit_keys: dict[str, str] = field(default_factory=dict)

    @property
    def lease_ids(self) -> set[str]:
        return set(self.kv_entries) | set(self.transit_keys)

    @property
    def found(self) -> int:
        return len(self.lease_ids)


def sweep_orphans(vault: Vault) -> OrphanReport:
    """Find lease material in Vault with no owning lease row and destroy it, auditing each.

    A lease row is always committed before any of its Vault material is created, so material
    without an owning row can belong to no request in flight. Raises DeploymentConflict, having
    listed nothing, when another database owns this deployment id: its live tickets would look
    like orphans here.
    """
    deployment.require_own_deployment(vault)
    kv_leases = set(vault.list_kv_leases())
    key_leases = set(vault.list_lease_keys())
    candidates = kv_leases | key_leases
    if not candidates:
        return OrphanReport()
    with read_only() as session:
        owned = set(
            session.scalars(
                select(Lease.id).where(
                    Lease.id.in_(candidates), Lease.status.in_(OWNED_LEASE_STATES)
                )
            )
        )
    report = OrphanReport()
    for lease_id in sorted(candidates - owned):
        _remove_orphan(vault, lease_id, report, kv_leases, key_leases)
    return report


def _remove_orphan(
    vault: Vault, lease_id: str, report: OrphanReport, kv_leases: set[str], key_leases: set[str]
) -> None:
    """Destroy one orphaned lease's KV entries and key, then audit it (Vault first, no
    transaction held)."""
    if lease_id in kv_leases:
        item_ids = vault.list_items(lease_id)
        for item_id in item_ids:
            vault.delete_item(lease_id, item_id)
        report.kv_entries[lease_id] = len(item_ids)
    if lease_id in key_leases:
        vault.delete_lease_key(lease_id)
        report.transit_keys[lease_id] = vault.current_names(lease_id).key_name
    with transaction():
        audit.record(
            "sweep.orphan_removed",
            actor="worker",
            lease_id=lease_id,
            kv_entries=report.kv_entries.get(lease_id, 0),
            transit_key=lease_id in key_leases,
        )
    log.warning("orphan removed from vault", extra={"fields": {"lease_id": lease_id}})
