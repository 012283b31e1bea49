"""The Vault layout: what our mounts, keys, roles and policies are called, and where policies live.

Bootstrap creates these names, the gateway uses them, doctor checks them: one spelling each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KV_MOUNT = "vault-service-kv"
TRANSIT_MOUNT = "vault-service-transit"
APP_KEY = "vault-service-app"
LEASE_TOKEN_ROLE = "vault-service-ticket-lease"
APPROLE_ROLE = "vault-service"
APP_POLICY = "vault-service"
REVEAL_POLICY = "vault-service-ticket-reveal"
LEASE_POLICY = "vault-service-ticket-lease"
# Each policy's file in policy_dir(): the app's is written verbatim, the two ticket policies are
# templates that bootstrap fills in with the token mount's accessor.
POLICY_FILES = {
    APP_POLICY: "vault-service.hcl",
    REVEAL_POLICY: f"{REVEAL_POLICY}.hcl.tmpl",
    LEASE_POLICY: f"{LEASE_POLICY}.hcl.tmpl",
}
# Every deployment (one database) sharing an OpenBao has an id, so that no deployment ever lists,
# sweeps or purges another's material: a short slug, never a UUID (36 characters), so it can never
# be mistaken for a lease of the legacy layout, and never "_deployments" (no leading underscore).
DEPLOYMENT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
DEFAULT_DEPLOYMENT_ID = "default"
# KV `<mount>/data/_deployments/<deployment id>` holds the identity of the database that owns the
# deployment id: a second database claiming the same id is refused (services/deployment.py).
DEPLOYMENTS_PREFIX = "_deployments"
# Lease keys are named "ticket-<lease id>.<deployment id>". The lease id comes right after the
# prefix so that ONE static reveal policy serves every deployment: its identity template
# `decrypt/ticket-{{alias}}*` reaches this lease's key whatever the deployment. The deployment id
# follows a dot, which neither a lease id nor a deployment id contains, so a name parses one way.
LEASE_KEY_PREFIX = "ticket-"
DEPLOYMENT_SEPARATOR = "."
# Every transit key we create (the app key, each lease key): AES-256-GCM with a 96-bit nonce.
TRANSIT_KEY_TYPE = "aes256-gcm96"
# The key that signs deletion receipts (EdDSA JWS). Its name has no "ticket-" prefix, so no purge
# or sweep ever takes it for a lease's key; the app may sign with it and read its public keys.
RECEIPT_KEY = "vault-service-receipts"
RECEIPT_KEY_TYPE = "ed25519"


@dataclass(frozen=True)
class LeaseNames:
    """Where one lease's material lives: its KV folder (under the mount) and its transit key."""

    kv_folder: str
    key_name: str

    def item_path(self, item_id: str) -> str:
        """One item's KV path, relative to the mount."""
        return f"{self.kv_folder}/{item_id}"


def is_deployment_id(value: str) -> bool:
    """Whether a string is a valid deployment id."""
    return bool(DEPLOYMENT_ID_PATTERN.match(value))


def lease_names(lease_id: str, *, deployment: str) -> LeaseNames:
    """The names of a lease's material in the current layout (every lease created since 0012)."""
    if not is_deployment_id(deployment):
        raise ValueError("not a deployment id")
    return LeaseNames(
        f"{deployment}/{lease_id}",
        f"{LEASE_KEY_PREFIX}{lease_id}{DEPLOYMENT_SEPARATOR}{deployment}",
    )


def legacy_lease_names(lease_id: str) -> LeaseNames:
    """The names of a lease created before deployments had ids: `<lease>/<item>`, `ticket-<lease>`.

    Such material is reached only through a lease row the database holds (purge, reveal), never by
    a listing: nothing in its names says which deployment it belongs to, so no sweep removes it.
    """
    return LeaseNames(lease_id, f"{LEASE_KEY_PREFIX}{lease_id}")


def lease_key_name(lease_id: str, *, deployment: str) -> str:
    """The transit key of one lease."""
    return lease_names(lease_id, deployment=deployment).key_name


def kv_item_path(lease_id: str, item_id: str, *, deployment: str) -> str:
    """One item's KV path (relative to the mount) in the current layout."""
    return lease_names(lease_id, deployment=deployment).item_path(item_id)


def is_lease_key(name: str) -> bool:
    """Whether a transit key name is a lease's key of any deployment or the legacy layout (and
    not, say, the app key)."""
    return name.startswith(LEASE_KEY_PREFIX)


def lease_id_of_key(name: str, *, deployment: str) -> str | None:
    """The lease a transit key belongs to when it is this deployment's, else None (another
    deployment's, the legacy layout's, or no lease key at all): the inverse of lease_key_name."""
    if not is_lease_key(name):
        return None
    lease_id, separator, owner = name.removeprefix(LEASE_KEY_PREFIX).rpartition(
        DEPLOYMENT_SEPARATOR
    )
    if not separator or owner != deployment or not lease_id or DEPLOYMENT_SEPARATOR in lease_id:
        return None
    return lease_id


def deployment_marker_path(deployment: str) -> str:
    """The KV path (relative to the mount) of the marker naming the database that owns an id."""
    if not is_deployment_id(deployment):
        raise ValueError("not a deployment id")
    return f"{DEPLOYMENTS_PREFIX}/{deployment}"


def policy_dir() -> Path:
    """Where the policy files are: the source tree in development, the wheel when installed."""
    source_tree = Path(__file__).resolve().parents[2] / "policies"
    if source_tree.is_dir():
        return source_tree
    return Path(str(resources.files("vault_service") / "_policies"))
