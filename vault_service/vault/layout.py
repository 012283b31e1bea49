"""The Vault layout: what our mounts, keys, roles and policies are called, and where policies live.

Bootstrap creates these names, the gateway uses them, doctor checks them: one spelling each.
"""

from __future__ import annotations

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
# Lease keys are named "ticket-<lease id>": the prefix predates the word "lease", and the policies'
# paths (`keys/ticket-*`, `decrypt/ticket-{{...}}`) and existing deployments' keys carry it.
LEASE_KEY_PREFIX = "ticket-"
# Every transit key we create (the app key, each lease key): AES-256-GCM with a 96-bit nonce.
TRANSIT_KEY_TYPE = "aes256-gcm96"
# The key that signs deletion receipts (EdDSA JWS). Its name has no "ticket-" prefix, so no purge
# or sweep ever takes it for a lease's key; the app may sign with it and read its public keys.
RECEIPT_KEY = "vault-service-receipts"
RECEIPT_KEY_TYPE = "ed25519"


def lease_key_name(lease_id: str) -> str:
    """The transit key of one lease."""
    return f"{LEASE_KEY_PREFIX}{lease_id}"


def is_lease_key(name: str) -> bool:
    """Whether a transit key name is a lease's key (and not, say, the app key)."""
    return name.startswith(LEASE_KEY_PREFIX)


def lease_id_of_key(name: str) -> str:
    """The lease a transit key belongs to: the inverse of lease_key_name."""
    if not is_lease_key(name):
        raise ValueError("not a lease key")
    return name.removeprefix(LEASE_KEY_PREFIX)


def policy_dir() -> Path:
    """Where the policy files are: the source tree in development, the wheel when installed."""
    source_tree = Path(__file__).resolve().parents[2] / "policies"
    if source_tree.is_dir():
        return source_tree
    return Path(str(resources.files("vault_service") / "_policies"))
