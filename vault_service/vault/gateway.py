"""The runtime gateway: the app's own vocabulary over Vault (per-lease keys and tokens, items,
the app key, health), and the reads `doctor` judges.

Nothing here swallows an error. Every call has a timeout. Response bodies are never logged: they
can carry tokens or plaintext.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import hvac

from ..config import Settings
from .errors import (
    DeploymentConflict,
    RootTokenRefused,
    VaultForbidden,
    VaultNotFound,
    VaultRequestFailed,
    VaultUnavailable,
    translate_errors,
)
from .layout import (
    APP_KEY,
    KV_MOUNT,
    LEASE_POLICY,
    LEASE_TOKEN_ROLE,
    RECEIPT_KEY,
    REVEAL_POLICY,
    TRANSIT_KEY_TYPE,
    TRANSIT_MOUNT,
    LeaseNames,
    deployment_marker_path,
    lease_id_of_key,
    lease_names,
    legacy_lease_names,
)
from .transport import build_session

T = TypeVar("T")


# How many leases' layouts (current or legacy) a process remembers: a layout never changes once a
# lease's key exists, so the cache only saves one key read per lease and process.
LAYOUT_CACHE_SIZE = 4096
# While leases from before deployment ids may still hold material, how often to ask again whether
# any does (they only ever get fewer: every lease created since uses the current layout).
LEGACY_RECHECK_SECONDS = 300.0


def _untyped(helper: object) -> Any:
    """hvac's transit and sys helpers carry no annotations: calling them through Any keeps strict
    typing everywhere else (their answers are JSON, checked where they are used)."""
    return helper


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(data: str) -> str:
    return base64.b64decode(data).decode("utf-8")


@dataclass(frozen=True)
class IssuedToken:
    """A freshly minted token. `token` must be wrapped (encrypt_token) before it is stored."""

    token: str
    accessor: str
    ttl_seconds: int
    entity_id: str = ""

    @classmethod
    def from_auth(cls, auth: dict[str, Any]) -> IssuedToken:
        return cls(
            auth["client_token"],
            auth["accessor"],
            auth["lease_duration"],
            auth.get("entity_id") or "",
        )


@dataclass(frozen=True)
class ReceiptSignature:
    """An Ed25519 signature Vault made with one version of the receipt key."""

    key_version: int
    signature: bytes


class Vault:
    """Our vocabulary over Vault: per-lease keys and tokens; items; the app key; health."""

    def __init__(
        self,
        settings: Settings,
        *,
        before_call: Callable[[str], None] | None = None,
        after_call: Callable[[str, float, BaseException | None], None] | None = None,
        legacy_leases_live: Callable[[], bool] | None = None,
    ):
        self._settings = settings
        # Called with the operation's name before every request to Vault: the app installs the
        # guard that refuses a call made inside an open database transaction.
        self._before_call = before_call
        # Called after every request to Vault with the operation, its duration and its error (or
        # None): the app's metrics observe Vault through it.
        self._after_call = after_call
        self._session, self._addr = build_session(settings)
        self._lock = threading.Lock()
        self._app_token = settings.vault_token
        # With AppRole there is no token until the first login; a given token never "expires" here
        # (Vault tells us when it does).
        self._app_token_expires = 0.0 if settings.vault_role_id else float("inf")
        self._identity_checked = False
        self._app_client: hvac.Client | None = None
        self.deployment = settings.deployment_id
        # The database id this process has seen own the deployment id in Vault (the marker is
        # written once and the app cannot change it, so one confirmation per process suffices).
        self._confirmed_owner: str | None = None
        # Lease id -> where its material lives (the current layout or the legacy one).
        self._layouts: dict[str, LeaseNames] = {}
        # Asked of the database (by the app, which owns it): may any lease not yet purged keep
        # its material in the legacy layout? Once it says no, no lease's layout needs a probe of
        # Vault (a submission's extra key read): new leases are never legacy. None: always probe.
        self._legacy_leases_live = legacy_leases_live
        self._legacy_possible = True
        self._legacy_checked_at = -LEGACY_RECHECK_SECONDS
        # The receipt key as this process last read it (type, latest version, public keys). A
        # purge names that version in its receipt's header and reads again only when Vault signs
        # with another one (services/receipts.py): one call per receipt instead of two.
        self._receipt_key: dict[str, Any] | None = None
        # Independent calls of one request (a submission's KV writes, a reveal's KV reads) run
        # concurrently; each request's calls are few, so a small shared pool suffices.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vault")

    # -- clients ----------------------------------------------------------------------------

    def _client(self, token: str) -> hvac.Client:
        # Explicit url and token: never hvac's implicit VAULT_TOKEN / ~/.vault-token fallback.
        return hvac.Client(
            url=self._addr,
            token=token,
            # hvac annotates an int; requests takes a float, as the setting is.
            timeout=self._settings.vault_timeout_seconds,  # type: ignore[arg-type]
            session=self._session,
        )

    def _app(self) -> hvac.Client:
        """The client with the app's own identity, logging in with AppRole when configured.

        One client object for the process: a re-login changes its token in place, so a call
        retried after a re-login uses the new token.
        """
        if self._settings.vault_role_id and time.monotonic() >= self._app_token_expires - 60:
            with self._lock, translate_errors("approle login"):
                if time.monotonic() >= self._app_token_expires - 60:  # another thread did it
                    auth = self._client("").auth.approle.login(
                        role_id=self._settings.vault_role_id,
                        secret_id=self._settings.vault_secret_id,
                    )["auth"]
                    self._app_token = auth["client_token"]
                    self._app_token_expires = time.monotonic() + auth["lease_duration"]
                    self._identity_checked = False
                    if self._app_client is not None:
                        self._app_client.token = self._app_token
        if self._app_client is None:
            self._app_client = self._client(self._app_token)
        if not self._identity_checked:
            self._refuse_root(self._app_client)
        return self._app_client

    def _refuse_root(self, client: hvac.Client) -> None:
        """Fail closed on a root token: the guarantees assume the app's own policy binds it."""
        data = self._call("lookup-self", lambda: client.auth.token.lookup_self()["data"])
        if "root" in (data.get("policies") or []):
            raise RootTokenRefused("the app refuses to run with a root token")
        self._identity_checked = True

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        if self._before_call is not None:
            self._before_call(operation)
        started, error = time.perf_counter(), None
        try:
            with translate_errors(operation):
                return fn()
        except BaseException as raised:
            error = raised
            raise
        finally:
            if self._after_call is not None:
                self._after_call(operation, time.perf_counter() - started, error)

    def _app_call(self, operation: str, fn: Callable[[], T]) -> T:
        """A call with the app's identity. With AppRole, a refusal may mean our token expired or
        was revoked early: log in again once and retry before giving up."""
        try:
            return self._call(operation, fn)
        except VaultForbidden:
            if not self._settings.vault_role_id:
                raise
            with self._lock:
                self._app_token_expires = 0.0
            self._app()
            return self._call(operation, fn)

    # -- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Vault's own health: initialized, sealed, standby (unauthenticated endpoint)."""
        response = self._call(
            "health",
            lambda: self._session.get(
                f"{self._addr}/v1/sys/health",
                params={"standbyok": "true", "perfstandbyok": "true"},
                timeout=self._settings.vault_timeout_seconds,
            ),
        )
        if response.status_code == 503:
            # Sealed (every node, when there are several: the transport tried the others). Vault
            # says so in the body; readiness reports it as sealed rather than unavailable.
            try:
                body = response.json()
            except ValueError:
                body = {}
            if isinstance(body, dict) and body.get("sealed") is True:
                return body
        if response.status_code not in (200, 429, 472, 473):
            raise VaultUnavailable(f"health: status {response.status_code}")
        answer: dict[str, Any] = response.json()
        return answer

    def lookup_self(self) -> dict[str, Any]:
        """The app token's own properties (policies, ttl)."""
        app = self._app()
        data: dict[str, Any] = self._app_call(
            "lookup-self", lambda: app.auth.token.lookup_self()["data"]
        )
        return data

    # -- the deployment: whose material this is ----------------------------------------------

    def current_names(self, lease_id: str) -> LeaseNames:
        """Where a lease created now keeps its material: under this deployment's id."""
        return lease_names(lease_id, deployment=self.deployment)

    def _names(self, lease_id: str) -> LeaseNames:
        """Where an existing lease's material lives: the current layout, or the legacy one of a
        lease created before deployments had ids (told apart by which key exists)."""
        known = self._layouts.get(lease_id)
        if known is not None:
            return known
        current = self.current_names(lease_id)
        if not self._may_be_legacy():
            return current
        if self._read_key(current.key_name) is not None:
            names = current
        elif self._read_key(legacy_lease_names(lease_id).key_name) is not None:
            names = legacy_lease_names(lease_id)
        else:
            return current  # no key (yet, or any more): not remembered, it may still appear
        if len(self._layouts) >= LAYOUT_CACHE_SIZE:
            self._layouts.clear()
        self._layouts[lease_id] = names
        return names

    def _may_be_legacy(self) -> bool:
        """Whether a lease's layout must be told apart by probing Vault (see __init__)."""
        if self._legacy_leases_live is None or not self._legacy_possible:
            return self._legacy_leases_live is None
        now = time.monotonic()
        if now - self._legacy_checked_at >= LEGACY_RECHECK_SECONDS:
            try:
                self._legacy_possible = self._legacy_leases_live()
            except Exception:  # noqa: BLE001 - no answer (no tables yet, say): probe, ask later
                return True
            self._legacy_checked_at = now
        return self._legacy_possible

    def lease_key_name(self, lease_id: str) -> str:
        """The name of a lease's transit key, in whichever layout the lease uses."""
        return self._names(lease_id).key_name

    def read_deployment_owner(self) -> str | None:
        """The database id that owns this deployment id in Vault, or None when unclaimed."""
        app = self._app()
        path = deployment_marker_path(self.deployment)
        try:
            response = self._app_call(
                "read deployment marker",
                lambda: app.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
                ),
            )
        except VaultNotFound:
            return None
        owner = response["data"]["data"].get("database_id")
        return owner if isinstance(owner, str) else None

    def claim_deployment(self, database_id: str) -> str:
        """Claim this deployment id for a database (write-once: cas=0), or find who holds it;
        returns the owner's database id. Raises DeploymentConflict when it is another database."""
        if self._confirmed_owner == database_id:
            return database_id
        owner = self.read_deployment_owner()
        if owner is None:
            app = self._app()
            path = deployment_marker_path(self.deployment)
            try:
                self._app_call(
                    "claim deployment",
                    lambda: app.secrets.kv.v2.create_or_update_secret(
                        path=path, secret={"database_id": database_id}, cas=0, mount_point=KV_MOUNT
                    ),
                )
                owner = database_id
            except VaultRequestFailed:
                # cas=0 refused: another process claimed it first; its claim decides.
                owner = self.read_deployment_owner()
        if owner != database_id:
            raise DeploymentConflict(
                f"deployment id {self.deployment!r} belongs to another database in this Vault: "
                "give this database its own VAULT_SERVICE_DEPLOYMENT_ID"
            )
        self._confirmed_owner = database_id
        return database_id

    # -- per-lease provisioning --------------------------------------------------------------

    def create_lease_key(self, lease_id: str) -> None:
        """A per-lease AES-GCM key that can never leave Vault and can be deleted at purge."""
        name = self.current_names(lease_id).key_name
        transit = _untyped(self._app().secrets.transit)
        self._app_call(
            "create transit key",
            lambda: transit.create_key(
                name=name,
                key_type=TRANSIT_KEY_TYPE,
                exportable=False,
                allow_plaintext_backup=False,
                mount_point=TRANSIT_MOUNT,
            ),
        )
        self._app_call(
            "configure transit key",
            lambda: transit.update_key_configuration(
                name=name, deletion_allowed=True, mount_point=TRANSIT_MOUNT
            ),
        )

    def create_lease_token(self, lease_id: str, ttl_seconds: int) -> IssuedToken:
        """The lease: an orphan token (via the role) whose TTL is the maximum retention.

        Its entity alias is named by the lease id; the static reveal policy reads that name, so
        the token (and every child) reaches this lease's paths and key only.
        """
        app = self._app()
        auth = self._app_call(
            "create lease token",
            lambda: app.auth.token.create(
                role_name=LEASE_TOKEN_ROLE,
                policies=[REVEAL_POLICY, LEASE_POLICY],
                ttl=f"{ttl_seconds}s",
                explicit_max_ttl=f"{ttl_seconds}s",
                renewable=False,
                no_default_policy=True,
                entity_alias=lease_id,
            ),
        )["auth"]
        if not auth.get("entity_id"):
            raise VaultRequestFailed("create lease token: no entity bound to the token")
        return IssuedToken.from_auth(auth)

    def mint_grant_token(self, lease_token: str, ttl_seconds: int) -> IssuedToken:
        """A grant: child of the lease token (inheriting its entity), reveal policy only,
        non-renewable, TTL = window."""
        lease_client = self._client(lease_token)
        auth = self._call(
            "mint grant token",
            lambda: lease_client.auth.token.create(
                policies=[REVEAL_POLICY],
                ttl=f"{ttl_seconds}s",
                explicit_max_ttl=f"{ttl_seconds}s",
                renewable=False,
                no_default_policy=True,
            ),
        )["auth"]
        return IssuedToken.from_auth(auth)

    # -- items --------------------------------------------------------------------------------

    def encrypt_items(self, lease_id: str, plaintexts: list[str]) -> list[str]:
        """Encrypt with the lease's key in one batch call; returns transit ciphertexts."""
        name = self._names(lease_id).key_name
        app = self._app()
        results = self._app_call(
            "encrypt",
            lambda: app.secrets.transit.encrypt_data(
                name=name,
                plaintext="",
                batch_input=[{"plaintext": _b64(text)} for text in plaintexts],
                mount_point=TRANSIT_MOUNT,
            ),
        )["data"]["batch_results"]
        if any("error" in result and result["error"] for result in results):
            raise VaultRequestFailed("encrypt: a batch item failed")
        return [str(result["ciphertext"]) for result in results]

    def _concurrently(self, calls: list[Callable[[], T]]) -> list[T]:
        """Run independent Vault calls at once (one round trip instead of one per call). Every
        call finishes before the first failure, if any, is raised: the caller knows the state."""
        if self._before_call is not None:
            # The calls run on pool threads, which hold no session: check the caller's here.
            self._before_call("concurrent calls")
        if len(calls) <= 1:
            return [call() for call in calls]
        futures = [self._pool.submit(call) for call in calls]
        wait(futures)
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        return [future.result() for future in futures]

    def in_background(self, call: Callable[..., T], *args: object) -> Future[T]:
        """Start one Vault call on the shared pool and return at once, so a request can do its
        own database work meanwhile. Whoever starts it must wait for it on every path."""
        return self._pool.submit(call, *args)

    def write_item(self, lease_id: str, item_id: str, ciphertext: str) -> None:
        """Store one item's ciphertext; cas=0 makes Vault refuse any second write."""
        path = self._names(lease_id).item_path(item_id)
        app = self._app()
        self._app_call(
            "write item",
            lambda: app.secrets.kv.v2.create_or_update_secret(
                path=path,
                secret={"ciphertext": ciphertext},
                cas=0,
                mount_point=KV_MOUNT,
            ),
        )

    def write_items(self, lease_id: str, items: list[tuple[str, str]]) -> None:
        """Store several (item id, ciphertext) pairs concurrently; all or an error."""
        self._names(lease_id)  # resolved once here, not by each concurrent write
        self._concurrently(
            [
                functools.partial(self.write_item, lease_id, item_id, ciphertext)
                for item_id, ciphertext in items
            ]
        )

    def read_items(self, grant_token: str, lease_id: str, item_ids: list[str]) -> list[str]:
        """Read and decrypt items with a grant token (Vault checks its TTL and policy)."""
        names = self._names(lease_id)
        client = self._client(grant_token)

        def read(item_id: str) -> dict[str, Any]:
            response: dict[str, Any] = self._call(
                "read item",
                lambda: client.secrets.kv.v2.read_secret_version(
                    path=names.item_path(item_id),
                    mount_point=KV_MOUNT,
                    raise_on_deleted_version=True,
                ),
            )
            return response

        responses = self._concurrently([functools.partial(read, item_id) for item_id in item_ids])
        ciphertexts = [response["data"]["data"]["ciphertext"] for response in responses]
        if not ciphertexts:
            return []
        results = self._call(
            "decrypt",
            lambda: client.secrets.transit.decrypt_data(
                name=names.key_name,
                ciphertext="",
                batch_input=[{"ciphertext": c} for c in ciphertexts],
                mount_point=TRANSIT_MOUNT,
            ),
        )["data"]["batch_results"]
        if any(result.get("error") for result in results):
            raise VaultRequestFailed("decrypt: a batch item failed")
        return [_unb64(result["plaintext"]) for result in results]

    def _layouts_of(self, lease_id: str, legacy: bool) -> tuple[LeaseNames, ...]:
        """The layouts a lease's material may be in: the current one, and the legacy one too for
        a lease that may predate deployment ids (the caller knows from the database)."""
        current = self.current_names(lease_id)
        return (current, legacy_lease_names(lease_id)) if legacy else (current,)

    def list_items(self, lease_id: str, *, legacy: bool = True) -> list[str]:
        """Item ids stored under a lease, from Vault's own listing (empty when none), in every
        layout the lease may have used, so a purge finds everything."""
        found: set[str] = set()
        for names in self._layouts_of(lease_id, legacy):
            found.update(self._list_folder(names.kv_folder))
        return sorted(found)

    def _list_folder(self, folder: str) -> list[str]:
        """The entries of one KV folder (sub-folders end with "/"); empty when none."""
        app = self._app()
        try:
            response = self._app_call(
                "list kv", lambda: app.secrets.kv.v2.list_secrets(path=folder, mount_point=KV_MOUNT)
            )
        except VaultNotFound:
            return []
        return [str(key) for key in response["data"]["keys"]]

    def delete_item(self, lease_id: str, item_id: str, *, legacy: bool = True) -> None:
        """Destroy an item: metadata and every version, in every layout the lease may have used
        (its key may be gone already, so which one cannot be asked). Already gone counts as done."""
        app = self._app()
        for names in self._layouts_of(lease_id, legacy):
            path = names.item_path(item_id)
            self._app_call(
                "delete item",
                functools.partial(
                    app.secrets.kv.v2.delete_metadata_and_all_versions,
                    path=path,
                    mount_point=KV_MOUNT,
                ),
            )

    def encrypt_token(self, token: str) -> str:
        """Encrypt a Vault token with the app key before it is stored."""
        app = self._app()
        ciphertext: str = self._app_call(
            "encrypt token",
            lambda: app.secrets.transit.encrypt_data(
                name=APP_KEY, plaintext=_b64(token), mount_point=TRANSIT_MOUNT
            ),
        )["data"]["ciphertext"]
        return ciphertext

    def decrypt_token(self, ciphertext: str) -> str:
        """Decrypt a stored Vault token with the app key."""
        app = self._app()
        return _unb64(
            self._app_call(
                "decrypt token",
                lambda: app.secrets.transit.decrypt_data(
                    name=APP_KEY, ciphertext=ciphertext, mount_point=TRANSIT_MOUNT
                ),
            )["data"]["plaintext"]
        )

    # -- purge --------------------------------------------------------------------------------

    def revoke_accessor(self, accessor: str) -> None:
        """Revoke a token and its children by accessor (Vault answers 204 when already gone)."""
        app = self._app()
        try:
            self._app_call("revoke token", lambda: app.auth.token.revoke_accessor(accessor))
        except VaultRequestFailed:
            if self.accessor_exists(accessor):
                raise

    def accessor_exists(self, accessor: str) -> bool:
        """Whether a token with this accessor is still alive."""
        app = self._app()
        try:
            self._app_call("lookup accessor", lambda: app.auth.token.lookup_accessor(accessor))
        except VaultRequestFailed:
            # Vault answers 400 "invalid accessor" for a revoked or expired token.
            return False
        return True

    def delete_lease_key(self, lease_id: str, *, legacy: bool = True) -> None:
        """Crypto-shred: delete the lease's transit key, in every layout it may have used.
        Already gone counts as done."""
        for names in self._layouts_of(lease_id, legacy):
            self._delete_key(names.key_name)
        self._layouts.pop(lease_id, None)

    def _delete_key(self, name: str) -> None:
        transit = _untyped(self._app().secrets.transit)
        # Keys are created deletable, so one call usually does it. When Vault refuses (a key
        # from a provisioning that died before allowing deletion, or already gone), fall back.
        try:
            self._app_call(
                "delete transit key",
                lambda: transit.delete_key(name=name, mount_point=TRANSIT_MOUNT),
            )
            return
        except VaultRequestFailed:
            pass
        if self._read_key(name) is None:
            return
        self._app_call(
            "configure transit key",
            lambda: transit.update_key_configuration(
                name=name, deletion_allowed=True, mount_point=TRANSIT_MOUNT
            ),
        )
        self._app_call(
            "delete transit key",
            lambda: transit.delete_key(name=name, mount_point=TRANSIT_MOUNT),
        )

    def lease_key_exists(self, lease_id: str, *, legacy: bool = True) -> bool:
        """Whether the lease's transit key still exists (in any layout it may have used)."""
        return any(
            self._read_key(names.key_name) is not None
            for names in self._layouts_of(lease_id, legacy)
        )

    def read_lease_key(self, lease_id: str) -> dict[str, Any] | None:
        """The lease's transit key as Vault describes it (type, exportable, ...); None if gone."""
        return self._read_key(self._names(lease_id).key_name)

    def read_key(self, name: str) -> dict[str, Any] | None:
        """A lease's transit key, by name, as Vault describes it; None if gone."""
        return self._read_key(name)

    def _read_key(self, name: str) -> dict[str, Any] | None:
        transit = _untyped(self._app().secrets.transit)
        try:
            data: dict[str, Any] = self._app_call(
                "read transit key",
                lambda: transit.read_key(name=name, mount_point=TRANSIT_MOUNT),
            )["data"]
        except VaultNotFound:
            return None
        return data

    def list_kv_leases(self) -> list[str]:
        """Lease ids with entries in this deployment's KV folder, from Vault's own listing. Only
        that folder: another deployment's material, or the legacy layout's, is never listed."""
        return [key.rstrip("/") for key in self._list_folder(self.deployment) if key.endswith("/")]

    def list_lease_keys(self) -> list[str]:
        """Lease ids that have a transit key of this deployment (and of no other)."""
        lease_ids = []
        for name in self._list_transit_keys():
            lease_id = lease_id_of_key(name, deployment=self.deployment)
            if lease_id is not None:
                lease_ids.append(lease_id)
        return lease_ids

    def _list_transit_keys(self) -> list[str]:
        transit = _untyped(self._app().secrets.transit)
        try:
            response = self._app_call(
                "list transit keys", lambda: transit.list_keys(mount_point=TRANSIT_MOUNT)
            )
        except VaultNotFound:
            return []
        return [str(key) for key in response["data"]["keys"]]

    def delete_entity(self, entity_id: str) -> None:
        """Delete the lease's identity entity (and its alias, which names the lease)."""
        app = self._app()
        self._app_call("delete entity", lambda: app.delete(f"identity/entity/id/{entity_id}"))

    def entity_exists(self, entity_id: str) -> bool:
        """Whether the lease's identity entity still exists."""
        app = self._app()
        path = f"identity/entity/id/{entity_id}"
        response = self._app_call("read entity", lambda: app.read(path))
        return response is not None

    # -- receipts: sign with a key that never leaves Vault -----------------------------------

    def read_receipt_key(self) -> dict[str, Any]:
        """The receipt key as Vault describes it: type, exportable, latest_version, and every
        version's public key (the app's policy reads this path and nothing else of the key)."""
        transit = _untyped(self._app().secrets.transit)
        data: dict[str, Any] = self._app_call(
            "read receipt key",
            lambda: transit.read_key(name=RECEIPT_KEY, mount_point=TRANSIT_MOUNT),
        )["data"]
        self._receipt_key = data
        return data

    def last_receipt_key(self) -> dict[str, Any]:
        """The receipt key as this process last read it, read now if never: it may be stale (a
        rotation since), which a signature from another version shows (sign_receipt)."""
        return self._receipt_key if self._receipt_key is not None else self.read_receipt_key()

    def sign_receipt(self, signing_input: bytes) -> ReceiptSignature:
        """Ed25519 over the raw bytes with the receipt key's latest version, which Vault names in
        its answer (no version is asked for: after a rotation, Vault signs with the new one)."""
        transit = _untyped(self._app().secrets.transit)
        signature: str = self._app_call(
            "sign receipt",
            lambda: transit.sign_data(
                name=RECEIPT_KEY,
                hash_input=base64.b64encode(signing_input).decode("ascii"),
                mount_point=TRANSIT_MOUNT,
            ),
        )["data"]["signature"]
        # Vault answers "vault:v<version>:<standard base64 of the 64-byte signature>".
        prefix, version, encoded = signature.split(":", 2)
        if prefix != "vault" or not version.startswith("v") or not version[1:].isdigit():
            raise VaultRequestFailed("sign receipt: Vault's answer names no key version")
        return ReceiptSignature(int(version[1:]), base64.b64decode(encoded))

    # -- posture: what `doctor` reads of the app's own identity ------------------------------

    def read_kv_configuration(self) -> dict[str, Any]:
        """The KV mount's configuration (max_versions, cas_required)."""
        app = self._app()
        data: dict[str, Any] = self._app_call(
            "read kv config", lambda: app.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)
        )["data"]
        return data

    def read_app_key(self) -> dict[str, Any]:
        """The app key as Vault describes it (type, exportable, allow_plaintext_backup, ...)."""
        transit = _untyped(self._app().secrets.transit)
        data: dict[str, Any] = self._app_call(
            "read app key",
            lambda: transit.read_key(name=APP_KEY, mount_point=TRANSIT_MOUNT),
        )["data"]
        return data

    def probe_direct_kv_read(self) -> bool:
        """Whether the app's own token may read a credential from KV; its policy must deny it."""
        app = self._app()
        try:
            # _call, not _app_call: a refusal is the answer sought here, not a sign that the
            # app's token expired, so it must not trigger a re-login.
            self._call(
                "probe kv read",
                lambda: app.secrets.kv.v2.read_secret_version(
                    path=f"{self.deployment}/doctor-probe/none",
                    mount_point=KV_MOUNT,
                    raise_on_deleted_version=True,
                ),
            )
        except VaultForbidden:
            return False
        except VaultNotFound:
            return True  # a 404 means the policy let the read through
        return True
