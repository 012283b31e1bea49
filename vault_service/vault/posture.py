"""What `vault-service doctor` judges: Vault's posture as the app's token and an operator's see it.

Only reads: the verdicts are doctor's (services/doctor.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypedDict, TypeVar

import hvac

from .bootstrap import admin_client, render_policies
from .errors import VaultNotFound, translate_errors
from .gateway import Vault, _untyped
from .layout import (
    APP_KEY,
    APPROLE_ROLE,
    KV_MOUNT,
    LEASE_TOKEN_ROLE,
    TRANSIT_MOUNT,
    is_lease_key,
)
from .transport import Addresses, TLSOptions

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
    lease_keys: dict[str, dict[str, Any]]
    receipt_key: dict[str, Any] | None  # its KEY_PROPERTIES; None when Vault has no such key


class AdminPosture(TypedDict):
    """What only an operator's token sees."""

    audit_devices: list[str]
    kv_mount_type: str | None
    kv_mount_version: str | None
    kv_max_versions: int | None
    kv_cas_required: bool | None
    app_key: dict[str, Any]
    lease_keys: dict[str, dict[str, Any]]
    policies: dict[str, str | None]
    expected_policies: dict[str, str]
    lease_role: dict[str, Any] | None
    approle: dict[str, Any] | None


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
        # This deployment's keys only (another deployment's doctor judges its own).
        "lease_keys": _read_lease_keys(
            [vault.current_names(lease_id).key_name for lease_id in vault.list_lease_keys()],
            vault.read_key,
        ),
        "receipt_key": receipt_key,
    }


def read_admin_posture(
    addr: Addresses,
    admin_token: str,
    timeout: float = 10.0,
    tls: TLSOptions | None = None,
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
    transit = _untyped(client.secrets.transit)
    app_key = _admin_call(
        "read app key",
        lambda: transit.read_key(name=APP_KEY, mount_point=TRANSIT_MOUNT),
    )["data"]
    expected = render_policies(auth_methods["token/"]["accessor"])
    policies: dict[str, str | None] = {}
    system = _untyped(client.sys)
    for name in expected:
        try:
            policies[name] = _admin_call(
                "read policy", functools.partial(system.read_acl_policy, name)
            )["data"]["policy"]
        except VaultNotFound:
            policies[name] = None
    lease_role: Any
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
        # Every deployment's lease keys and the legacy ones: an operator's view of the server.
        "lease_keys": _read_lease_keys(
            _list_lease_keys(client), lambda name: _read_lease_key(client, name)
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
    """The names of every lease key (of any deployment), as an operator's token lists them."""
    transit = _untyped(client.secrets.transit)
    try:
        names = _admin_call(
            "list transit keys", lambda: transit.list_keys(mount_point=TRANSIT_MOUNT)
        )["data"]["keys"]
    except VaultNotFound:
        return []
    return [str(name) for name in names if is_lease_key(str(name))]


def _read_lease_key(client: hvac.Client, name: str) -> dict[str, Any] | None:
    """A lease's transit key as an operator's token reads it; None if gone."""
    transit = _untyped(client.secrets.transit)
    try:
        data: dict[str, Any] = _admin_call(
            "read transit key", lambda: transit.read_key(name=name, mount_point=TRANSIT_MOUNT)
        )["data"]
    except VaultNotFound:
        return None
    return data


def _read_lease_keys(
    names: Iterable[str], read_key: Callable[[str], dict[str, Any] | None]
) -> dict[str, dict[str, Any]]:
    """Every lease key, by name, with its properties. A key deleted between the listing and its
    read (a purge) is simply no longer there."""
    keys = {}
    for name in sorted(names):
        data = read_key(name)
        if data is not None:
            keys[name] = _key_properties(data)
    return keys


def _key_properties(key: dict[str, Any]) -> dict[str, Any]:
    """The properties of a transit key that doctor judges."""
    return {prop: key.get(prop) for prop in KEY_PROPERTIES}
