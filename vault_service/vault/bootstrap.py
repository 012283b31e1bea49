"""The operator's side: set Vault up for the app with an admin token, never run by the app."""

from __future__ import annotations

import time
from collections.abc import Callable
from string import Template
from typing import Any, TypeVar

import hvac
import hvac.exceptions

from .errors import DeploymentConflict, VaultNotFound, VaultRequestFailed, translate_errors
from .gateway import IssuedToken, _untyped
from .layout import (
    APP_KEY,
    APP_POLICY,
    APPROLE_ROLE,
    KV_MOUNT,
    LEASE_POLICY,
    LEASE_TOKEN_ROLE,
    POLICY_FILES,
    RECEIPT_KEY,
    RECEIPT_KEY_TYPE,
    REVEAL_POLICY,
    TRANSIT_KEY_TYPE,
    TRANSIT_MOUNT,
    deployment_marker_path,
    policy_dir,
)
from .transport import Addresses, TLSOptions, cluster_session

T = TypeVar("T")


def admin_client(
    addr: Addresses,
    admin_token: str,
    timeout: float = 10.0,
    tls: TLSOptions | None = None,
) -> hvac.Client:
    """A client holding an operator's token, for one node or every node of the cluster (the
    next node is tried when one cannot be reached or is sealed, as for the app), trusting Vault
    as the app does (VAULT_SERVICE_VAULT_CA_CERT, a client certificate; nothing from the
    environment)."""
    addresses = [addr] if isinstance(addr, str) else list(addr)
    session, base = cluster_session(addresses, tls or TLSOptions())
    # hvac annotates an int; requests takes a float.
    return hvac.Client(url=base, token=admin_token, timeout=timeout, session=session)  # type: ignore[arg-type]


def _retry_while_mount_upgrades(fn: Callable[[], T], timeout: float = 30.0) -> T:
    """A KV v2 mount refuses requests for a moment after it is enabled ("Upgrading from
    non-versioned to versioned data"); wait that out instead of failing the bootstrap."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except hvac.exceptions.InvalidRequest as error:
            if "Upgrading" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def render_policies(token_accessor: str) -> dict[str, str]:
    """The three policies as bootstrap writes them: the app's verbatim, the two ticket policies
    rendered from their templates with the token mount's accessor."""
    directory = policy_dir()
    policies = {APP_POLICY: (directory / POLICY_FILES[APP_POLICY]).read_text()}
    for name in (REVEAL_POLICY, LEASE_POLICY):
        template = Template((directory / POLICY_FILES[name]).read_text())
        policies[name] = template.substitute(token_accessor=token_accessor)
    return policies


def _ensure_key(transit: Any, name: str, key_type: str) -> bool:
    """Create a transit key that can never leave Vault, unless it exists; whether it was made."""
    try:
        transit.read_key(name=name, mount_point=TRANSIT_MOUNT)
        return False
    except hvac.exceptions.InvalidPath:
        transit.create_key(
            name=name,
            key_type=key_type,
            exportable=False,
            allow_plaintext_backup=False,
            mount_point=TRANSIT_MOUNT,
        )
        return True


def bootstrap_vault(
    addr: Addresses,
    admin_token: str,
    *,
    max_retention_seconds: int = 30 * 24 * 3600,
    enable_approle: bool = False,
    tls: TLSOptions | None = None,
    deployment_id: str | None = None,
    database_id: str | None = None,
) -> list[str]:
    """Create or repair the mounts, app key, app policy and lease role; require an audit device;
    with a deployment id, claim it for the database (or refuse: another database owns it).

    Idempotent: run it again after an upgrade and it converges. Returns what it did, line by line.
    """
    client = admin_client(addr, admin_token, tls=tls)
    system = _untyped(client.sys)
    transit = _untyped(client.secrets.transit)
    done: list[str] = []
    with translate_errors("bootstrap"):
        mounts = system.list_mounted_secrets_engines()["data"]
        if f"{KV_MOUNT}/" not in mounts:
            system.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
            done.append(f"enabled kv-v2 at {KV_MOUNT}/")
        # One version, and every write must say which version it expects (cas): a credential is
        # written once and never overwritten, and no old version lingers after a delete.
        _retry_while_mount_upgrades(
            lambda: client.secrets.kv.v2.configure(
                max_versions=1, cas_required=True, mount_point=KV_MOUNT
            )
        )
        done.append(f"{KV_MOUNT}: max_versions=1 cas_required=true")
        if f"{TRANSIT_MOUNT}/" not in mounts:
            system.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
            done.append(f"enabled transit at {TRANSIT_MOUNT}/")
        if _ensure_key(transit, APP_KEY, TRANSIT_KEY_TYPE):
            done.append(f"created app key {APP_KEY}")
        # Signs deletion receipts. Never deletable either (the default): a receipt is only worth
        # its key staying inside Vault.
        if _ensure_key(transit, RECEIPT_KEY, RECEIPT_KEY_TYPE):
            done.append(f"created receipt signing key {RECEIPT_KEY} ({RECEIPT_KEY_TYPE})")
        # The ticket policies name the token mount by accessor in their identity templates.
        token_accessor = system.list_auth_methods()["data"]["token/"]["accessor"]
        for name, text in render_policies(token_accessor).items():
            system.create_or_update_acl_policy(name=name, policy=text)
        done.append(f"policies {APP_POLICY}, {REVEAL_POLICY}, {LEASE_POLICY} written")
        # Token TTLs are capped by the token backend's max; retention must fit under it.
        system.tune_auth_method("token", max_lease_ttl=f"{max_retention_seconds + 86400}s")
        # hvac's role helper predates allowed_entity_aliases, so the role is written directly.
        client.write_data(
            f"auth/token/roles/{LEASE_TOKEN_ROLE}",
            data={
                "allowed_policies": [REVEAL_POLICY, LEASE_POLICY],
                # Written empty on purpose: a role update keeps fields it is not given, and a
                # glob left behind would widen the allowed policies past the two above.
                "allowed_policies_glob": [],
                "disallowed_policies": ["default"],
                "disallowed_policies_glob": [],
                "allowed_entity_aliases": ["*"],
                "orphan": True,
                "renewable": False,
                "token_type": "service",
                "token_explicit_max_ttl": f"{max_retention_seconds}s",
            },
        )
        done.append(
            f"token role {LEASE_TOKEN_ROLE} (orphan, non-renewable, the two ticket policies)"
        )
        # OpenBao takes audit devices only from its server configuration; refuse to carry on
        # without one, since every reveal must also be on Vault's own record.
        devices = system.list_enabled_audit_devices()["data"]
        if not devices:
            raise VaultRequestFailed(
                "no audit device is enabled: declare one in the server configuration"
            )
        done.append(f"audit devices present: {', '.join(sorted(devices))}")
        if enable_approle:
            auth_methods = system.list_auth_methods()["data"]
            if "approle/" not in auth_methods:
                system.enable_auth_method("approle")
            client.auth.approle.create_or_update_approle(
                APPROLE_ROLE,
                token_policies=[APP_POLICY],
                token_no_default_policy=True,
                token_ttl="1h",
                token_max_ttl="4h",
                secret_id_ttl="0",
                bind_secret_id=True,
            )
            done.append(f"approle role {APPROLE_ROLE} (policy {APP_POLICY}, 1h tokens)")
    if deployment_id is not None:
        done.append(claim_deployment(client, deployment_id, database_id))
    return done


def claim_deployment(client: hvac.Client, deployment_id: str, database_id: str | None) -> str:
    """Claim a deployment id for a database in Vault, or refuse: another database owns it.

    `database_id` None means the database has no identity yet (never migrated or never run), so
    it cannot be the one that claimed the id: an existing claim is then someone else's.
    """
    path = deployment_marker_path(deployment_id)
    try:
        with translate_errors("read deployment marker"):
            owner = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
            )["data"]["data"].get("database_id")
    except VaultNotFound:
        owner = None
    if owner is not None and owner != database_id:
        raise DeploymentConflict(
            f"deployment id {deployment_id!r} is already used in this Vault by another database: "
            "set a VAULT_SERVICE_DEPLOYMENT_ID of its own for this one"
        )
    if owner is not None:
        return f"deployment {deployment_id}: owned by this database"
    if database_id is None:
        return f"deployment {deployment_id}: unclaimed (the app claims it for its database)"
    with translate_errors("claim deployment"):
        client.secrets.kv.v2.create_or_update_secret(
            path=path, secret={"database_id": database_id}, cas=0, mount_point=KV_MOUNT
        )
    return f"deployment {deployment_id}: claimed for this database"


def rotate_receipt_key(addr: Addresses, admin_token: str, tls: TLSOptions | None = None) -> int:
    """Add a new version of the receipt key (an operator's act: the app's policy cannot). Older
    versions stay for verification, so every receipt already issued stays verifiable; returns
    the version new receipts are signed with."""
    transit = _untyped(admin_client(addr, admin_token, tls=tls).secrets.transit)
    with translate_errors("rotate receipt key"):
        transit.rotate_key(name=RECEIPT_KEY, mount_point=TRANSIT_MOUNT)
        key = transit.read_key(name=RECEIPT_KEY, mount_point=TRANSIT_MOUNT)
    return int(key["data"]["latest_version"])


def issue_app_token(
    addr: Addresses, admin_token: str, ttl_seconds: int, tls: TLSOptions | None = None
) -> IssuedToken:
    """A token with only the app policy, for development and tests (production uses AppRole)."""
    client = admin_client(addr, admin_token, tls=tls)
    with translate_errors("issue app token"):
        auth = client.auth.token.create(
            policies=[APP_POLICY],
            no_default_policy=True,
            ttl=f"{ttl_seconds}s",
            renewable=True,
            no_parent=True,
            meta={"purpose": "vault-service app"},
        )["auth"]
    return IssuedToken.from_auth(auth)


def issue_wrapped_secret_id(
    addr: Addresses,
    admin_token: str,
    wrap_ttl_seconds: int,
    tls: TLSOptions | None = None,
    *,
    uses: int = 0,
    ttl_seconds: int = 0,
) -> tuple[str, str]:
    """The app's AppRole role id and a new secret id for it, the secret id response-wrapped:
    only a single-use wrapping token that dies after `wrap_ttl_seconds` leaves Vault, so a copy
    left on a volume is worthless once consumed or expired, and a consumer that finds it already
    used knows someone else read it. `uses`/`ttl_seconds` (0: unlimited) bound the secret id
    itself, for one-off commands; a long-running app logs in again every hour and needs 0."""
    client = admin_client(addr, admin_token, tls=tls)
    with translate_errors("read approle role id"):
        role_id = client.auth.approle.read_role_id(APPROLE_ROLE)["data"]["role_id"]
    with translate_errors("issue wrapped secret id"):
        response = _untyped(client).write(
            f"auth/approle/role/{APPROLE_ROLE}/secret-id",
            wrap_ttl=f"{wrap_ttl_seconds}s",
            num_uses=uses,
            ttl=f"{ttl_seconds}s",
        )
    return str(role_id), str(response["wrap_info"]["token"])


def unwrap_secret_id(addr: Addresses, wrapping_token: str, tls: TLSOptions | None = None) -> str:
    """The secret id inside a wrapping token (which this call consumes). The wrapping token is
    the request's own token: unwrapping needs no other identity."""
    client = admin_client(addr, wrapping_token, tls=tls)
    with translate_errors("unwrap secret id"):
        return str(_untyped(client.sys).unwrap()["data"]["secret_id"])
