"""What `vault-service doctor` judges: Vault's posture as the app's token and an operator's see it.

Only reads: the verdicts are doctor's (services/doctor.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypedDict, TypeVar

import hvac

from .bootstrap import admin_client, render_policies
from .errors import VaultNotFound, translate_errors
from .gateway import Vault
from .layout import (
    APP_KEY,
    APPROLE_ROLE,
    KV_MOUNT,
    LEASE_TOKEN_ROLE,
    TRANSIT_MOUNT,
    is_lease_key,
    lease_id_of_key,
    lease_key_name,
)
from .transport import TLSOptions

T = TypeVar("T")

# The properties that decide whether a transit key can leave Vault, and what it is.
KEY_PROPERTIES = ("type", "exportable", "allow_plaintext_backup", "deletion_allowed")


class Posture(TypedDict):
    """What the app's own token sees."""

    token_policies: list[str]
    kv_max_versions: int | None
    kv_cas_required: bool | None
    app_key_exportable: bool | None
    app_key_plaintext_backup: bool | None
    direct_kv_read: str  # "allowed" or "denied"
    lease_keys: dict[str, dict]
    receipt_key: dict | None  # its KEY_PROPERTIES; None when Vault has no such key


class AdminPosture(TypedDict):
    """What only an operator's token sees."""

    audit_devices: list[str]
    kv_mount_type: str | None
    kv_mount_version: str | None
    kv_max_versions: int | None
    kv_cas_required: bool | None
    app_key: dict
    lease_keys: dict[str, dict]
    policies: dict[str, str | None]
    expected_policies: dict[str, str]
    lease_role: dict | None
    approle: dict | None


def read_posture(vault: Vault) -> Posture:
    """What `doctor` judges: the app token, the KV config, the app key, a direct-read probe."""
    token = vault.lookup_self()
    kv_config = vault.read_kv_configuration()
    app_key = vault.read_app_key()
    direct_read = "allowed" if vault.probe_direct_kv_read() else "denied"
    try:
        receipt_key = _key_properties(vault.read_receipt_key())
    except VaultNotFound:
        receipt_key = None
    return {
        "token_policies": sorted(token.get("policies") or []),
        "kv_max_versions": kv_config.get("max_versions"),
        "kv_cas_required": kv_config.get("cas_required"),
        "app_key_exportable": app_key.get("exportable"),
        "app_key_plaintext_backup": app_key.get("allow_plaintext_backup"),
        "direct_kv_read": direct_read,
        # The app's policy may list and read `keys/ticket-*`, so the app token sees every key.
        "lease_keys": _read_lease_keys(vault.list_lease_keys(), vault.read_lease_key),
        "receipt_key": receipt_key,
    }


def read_admin_posture(
    addr: str, admin_token: str, timeout: float = 10.0, tls: TLSOptions | None = None
) -> AdminPosture:
    """What only an operator's token can see, for `doctor --admin-token-file`: the audit devices,
    the mounts' configuration, every lease key, the stored policies next to the ones the
    bootstrap would write, the lease token role and, if it exists, the app's AppRole role."""
    client = admin_client(addr, admin_token, timeout, tls)
    audit_devices = _admin_call("list audit devices", client.sys.list_enabled_audit_devices)["data"]
    mounts = _admin_call("list mounts", client.sys.list_mounted_secrets_engines)["data"]
    auth_methods = _admin_call("list auth methods", client.sys.list_auth_methods)["data"]
    kv_mount = mounts.get(f"{KV_MOUNT}/") or {}
    kv_config = _admin_call(
        "read kv config", lambda: client.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)
    )["data"]
    app_key = _admin_call(
        "read app key",
        lambda: client.secrets.transit.read_key(name=APP_KEY, mount_point=TRANSIT_MOUNT),
    )["data"]
    expected = render_policies(auth_methods["token/"]["accessor"])
    policies = {}
    for name in expected:
        try:
            policies[name] = _admin_call(
                "read policy", lambda name=name: client.sys.read_acl_policy(name)
            )["data"]["policy"]
        except VaultNotFound:
            policies[name] = None
    try:
        lease_role = _admin_call(
            "read token role", lambda: client.read(f"auth/token/roles/{LEASE_TOKEN_ROLE}")
        )
    except VaultNotFound:
        lease_role = None
    approle = None
    if "approle/" in auth_methods:
        try:
            approle = _admin_call(
                "read approle role", lambda: client.auth.approle.read_role(APPROLE_ROLE)
            )["data"]
        except VaultNotFound:
            approle = None
    return {
        "audit_devices": sorted(audit_devices),
        "kv_mount_type": kv_mount.get("type"),
        "kv_mount_version": (kv_mount.get("options") or {}).get("version"),
        "kv_max_versions": kv_config.get("max_versions"),
        "kv_cas_required": kv_config.get("cas_required"),
        "app_key": _key_properties(app_key),
        "lease_keys": _read_lease_keys(
            _list_lease_keys(client), lambda lease_id: _read_lease_key(client, lease_id)
        ),
        "policies": policies,
        "expected_policies": expected,
        "lease_role": lease_role["data"] if lease_role else None,
        "approle": approle,
    }


def _admin_call(operation: str, fn: Callable[[], T]) -> T:
    """A call with the operator's token; errors name the operation, marked as the admin's."""
    with translate_errors(f"admin: {operation}"):
        return fn()


def _list_lease_keys(client: hvac.Client) -> list[str]:
    """Lease ids that have a transit key, as an operator's token lists them."""
    try:
        names = _admin_call(
            "list transit keys",
            lambda: client.secrets.transit.list_keys(mount_point=TRANSIT_MOUNT),
        )["data"]["keys"]
    except VaultNotFound:
        return []
    return [lease_id_of_key(name) for name in names if is_lease_key(name)]


def _read_lease_key(client: hvac.Client, lease_id: str) -> dict | None:
    """A lease's transit key as an operator's token reads it; None if gone."""
    try:
        return _admin_call(
            "read transit key",
            lambda: client.secrets.transit.read_key(
                name=lease_key_name(lease_id), mount_point=TRANSIT_MOUNT
            ),
        )["data"]
    except VaultNotFound:
        return None


def _read_lease_keys(
    lease_ids: Iterable[str], read_key: Callable[[str], dict | None]
) -> dict[str, dict]:
    """Every lease key, by name, with its properties. A key deleted between the listing and its
    read (a purge) is simply no longer there."""
    keys = {}
    for lease_id in sorted(lease_ids):
        data = read_key(lease_id)
        if data is not None:
            keys[lease_key_name(lease_id)] = _key_properties(data)
    return keys


def _key_properties(key: dict) -> dict:
    """The properties of a transit key that doctor judges."""
    return {prop: key.get(prop) for prop in KEY_PROPERTIES}
