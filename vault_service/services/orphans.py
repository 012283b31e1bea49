"""Orphans: Vault material of a lease the database does not know or has purged.

They arise when a process dies between a Vault write and its database commit (a submission's KV
entries after its lease was purged, say), or when the database is restored from an older backup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from ..extensions import db, release_transaction
from ..models import Lease
from ..vault import Vault, lease_key_name
from . import audit

log = logging.getLogger(__name__)

# Leases in these states own their Vault material: live ones use it, purging ones have a job.
OWNED_STATES = ("provisioning", "active", "purging")


@dataclass
class OrphanReport:
    """What an orphan sweep removed, by lease."""

    kv_entries: dict[str, int] = field(default_factory=dict)
    transit_keys: list[str] = field(default_factory=list)

    @property
    def lease_ids(self) -> set[str]:
        return set(self.kv_entries) | {k.removeprefix("ticket-") for k in self.transit_keys}

    @property
    def found(self) -> int:
        return len(self.lease_ids)


def sweep_orphans(vault: Vault) -> OrphanReport:
    """Find lease material in Vault with no owning lease row and destroy it, auditing each.

    A lease row is always committed before any of its Vault material is created, so material
    without an owning row can belong to no request in flight.
    """
    kv_leases = set(vault.list_kv_leases())
    key_leases = set(vault.list_lease_keys())
    candidates = kv_leases | key_leases
    if not candidates:
        return OrphanReport()
    owned = set(
        db.session.scalars(
            select(Lease.id).where(Lease.id.in_(candidates), Lease.status.in_(OWNED_STATES))
        )
    )
    release_transaction()  # no database transaction is held across the Vault calls below
    report = OrphanReport()
    for lease_id in sorted(candidates - owned):
        if lease_id in kv_leases:
            item_ids = vault.list_items(lease_id)
            for item_id in item_ids:
                vault.delete_item(lease_id, item_id)
            report.kv_entries[lease_id] = len(item_ids)
        if lease_id in key_leases:
            vault.delete_lease_key(lease_id)
            report.transit_keys.append(lease_key_name(lease_id))
        audit.record(
            "sweep.orphan_removed",
            actor="worker",
            lease_id=lease_id,
            kv_entries=report.kv_entries.get(lease_id, 0),
            transit_key=lease_id in key_leases,
        )
        db.session.commit()
        log.warning("orphan removed from vault", extra={"fields": {"lease_id": lease_id}})
    return report
