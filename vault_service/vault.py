"""The only module that talks to Vault (OpenBao): hvac calls in, our own exceptions out.

Nothing here swallows an error. Every call has a timeout. Responses bodies are never logged:
they can carry tokens or plaintext.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import hvac
import hvac.exceptions
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .config import Settings

log = logging.getLogger(__name__)

KV_MOUNT = "vault-service-kv"
TRANSIT_MOUNT = "vault-service-transit"
APP_KEY = "vault-service-app"
LEASE_TOKEN_ROLE = "vault-service-ticket-lease"
APPROLE_ROLE = "vault-service"
APP_POLICY = "vault-service"
REVEAL_POLICY = "vault-service-ticket-reveal"
LEASE_POLICY = "vault-service-ticket-lease"
TICKET_KEY_PREFIX = "ticket-"

T = TypeVar("T")


class VaultError(Exception):
    """Vault refused or failed in a way the caller must handle. Messages hold no values."""


class VaultUnavailable(VaultError):
    """Vault is unreachable, sealed, or too slow: retry later; nothing was done that we know of."""


class VaultForbidden(VaultError):
    """Vault denied the token: expired, revoked, or outside its policy."""


class VaultNotFound(VaultError):
    """The path does not exist (or no longer exists)."""


class VaultRequestFailed(VaultError):
    """Vault rejected the request itself (a bug or a misconfiguration on our side)."""


class RootTokenRefused(VaultError):
    """The app was given a root token; it refuses to operate with one (least privilege)."""


def policy_dir() -> Path:
    """Where the policy files are: the source tree in development, the wheel when installed."""
    source_tree = Path(__file__).resolve().parent.parent / "policies"
    if source_tree.is_dir():
        return source_tree
    return Path(str(resources.files("vault_service") / "_policies"))


def lease_key_name(lease_id: str) -> str:
    """The transit key of one lease."""
    return f"{TICKET_KEY_PREFIX}{lease_id}"


class FailoverAdapter(HTTPAdapter):
    """Spreads Vault requests over the nodes of a cluster: any node serves (standbys forward to
    the active one); when a node cannot be reached or answers 503, the next one is tried.

    Only failures where Vault cannot have acted are retried elsewhere (no connection made, or a
    503 "not active / sealed"), so a non-idempotent write is never replayed after it may have
    been applied.
    """

    # hvac clients address the cluster by this name; only requests to it are routed. A redirect
    # names a real node, and is followed as it is (a real node may also be the first address,
    # which is why the first address cannot double as the cluster's name).
    CLUSTER_BASE = "http://vault-cluster.invalid"

    def __init__(self, addresses: list[str]):
        super().__init__()
        self._addresses = [address.rstrip("/") for address in addresses]
        self._current = 0
        self._lock = threading.Lock()

    def _rewrite(self, url: str, address: str) -> str:
        parts, base = urlsplit(url), urlsplit(address)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))

    def send(self, request, **kwargs):  # type: ignore[override]
        parts = urlsplit(request.url)
        if f"{parts.scheme}://{parts.netloc}" != self.CLUSTER_BASE:
            # A redirect (a standby pointing at the active node): follow it where it points,
            # falling back to the other nodes only if that one cannot be reached.
            try:
                return super().send(request, **kwargs)
            except requests.exceptions.ConnectionError as error:
                if not _never_reached_vault(error):
                    raise
        with self._lock:
            start = self._current
        last_error: Exception | None = None
        response = None
        for offset in range(len(self._addresses)):
            index = (start + offset) % len(self._addresses)
            request.url = self._rewrite(request.url, self._addresses[index])
            try:
                response = super().send(request, **kwargs)
            except requests.exceptions.ConnectionError as error:
                if not _never_reached_vault(error):
                    raise
                last_error = error
                continue
            if response.status_code == 503 and offset < len(self._addresses) - 1:
                continue
            with self._lock:
                self._current = index  # stick to a node that answers
            return response
        if response is not None:
            return response
        raise last_error or requests.exceptions.ConnectionError("no Vault address configured")


def _never_reached_vault(error: requests.exceptions.ConnectionError) -> bool:
    """A refused or timed-out connection: the request never reached a Vault node."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


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
    def from_auth(cls, auth: dict) -> IssuedToken:
        return cls(
            auth["client_token"],
            auth["accessor"],
            auth["lease_duration"],
            auth.get("entity_id") or "",
        )


@contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Turn hvac/requests failures into our exceptions; the operation name is the only detail."""
    try:
        yield
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise VaultUnavailable(f"{operation}: Vault unreachable or too slow") from error
    except (hvac.exceptions.VaultDown, hvac.exceptions.BadGateway) as error:
        raise VaultUnavailable(f"{operation}: Vault sealed or unavailable") from error
    except hvac.exceptions.InternalServerError as error:
        raise VaultUnavailable(f"{operation}: Vault internal error") from error
    except hvac.exceptions.RateLimitExceeded as error:
        raise VaultUnavailable(f"{operation}: Vault rate limit") from error
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as error:
        raise VaultForbidden(f"{operation}: permission denied") from error
    except hvac.exceptions.InvalidPath as error:
        raise VaultNotFound(f"{operation}: not found") from error
    except hvac.exceptions.VaultError as error:
        raise VaultRequestFailed(f"{operation}: request rejected") from error
    except requests.exceptions.RequestException as error:
        # The class name only: exception messages can echo request URLs or bodies.
        raise VaultUnavailable(f"{operation}: transport error ({type(error).__name__})") from error


class Vault:
    """Our vocabulary over Vault: per-lease keys, policies and tokens; items; the app key."""

    def __init__(
        self,
        settings: Settings,
        session: requests.Session | None = None,
        *,
        before_call: Callable[[str], None] | None = None,
    ):
        self._settings = settings
        # Called with the operation's name before every request to Vault: the app installs the
        # guard that refuses a call made inside an open database transaction.
        self._before_call = before_call
        self._session = session or requests.Session()
        # Vault's address is explicit: no proxy, netrc or CA bundle from the environment (requests
        # reads os.environ and ~/.netrc on every call otherwise). A private CA is configured
        # explicitly instead (VAULT_SERVICE_VAULT_CA_CERT).
        self._session.trust_env = False
        if settings.vault_ca_cert:
            self._session.verify = settings.vault_ca_cert
        addresses = settings.vault_addresses
        self._addr = addresses[0]
        if len(addresses) > 1:
            adapter = FailoverAdapter(addresses)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
            self._addr = FailoverAdapter.CLUSTER_BASE
        self._lock = threading.Lock()
        self._app_token = settings.vault_token
        # With AppRole there is no token until the first login; a given token never "expires" here
        # (Vault tells us when it does).
        self._app_token_expires = 0.0 if settings.vault_role_id else float("inf")
        self._identity_checked = False
        self._app_client: hvac.Client | None = None
        # Independent calls of one request (a submission's KV writes, a reveal's KV reads) run
        # concurrently; each request's calls are few, so a small shared pool suffices.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vault")

    # -- clients ----------------------------------------------------------------------------

    def _client(self, token: str) -> hvac.Client:
        # Explicit url and token: never hvac's implicit VAULT_TOKEN / ~/.vault-token fallback.
        return hvac.Client(
            url=self._addr,
            token=token,
            timeout=self._settings.vault_timeout_seconds,
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
        with translate_errors(operation):
            return fn()

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

    def health(self) -> dict:
        """Vault's own health: initialized, sealed, standby (unauthenticated endpoint)."""
        if self._before_call is not None:
            self._before_call("health")
        with translate_errors("health"):
            response = self._session.get(
                f"{self._addr}/v1/sys/health",
                params={"standbyok": "true", "perfstandbyok": "true"},
                timeout=self._settings.vault_timeout_seconds,
            )
        if response.status_code not in (200, 429, 472, 473):
            raise VaultUnavailable(f"health: status {response.status_code}")
        return response.json()

    def lookup_self(self) -> dict:
        """The app token's own properties (policies, ttl)."""
        app = self._app()
        return self._app_call("lookup-self", lambda: app.auth.token.lookup_self()["data"])

    # -- per-lease provisioning --------------------------------------------------------------

    def create_lease_key(self, lease_id: str) -> None:
        """A per-lease AES-GCM key that can never leave Vault and can be deleted at purge."""
        name = lease_key_name(lease_id)
        app = self._app()
        self._app_call(
            "create transit key",
            lambda: app.secrets.transit.create_key(
                name=name,
                key_type="aes256-gcm96",
                exportable=False,
                allow_plaintext_backup=False,
                mount_point=TRANSIT_MOUNT,
            ),
        )
        self._app_call(
            "configure transit key",
            lambda: app.secrets.transit.update_key_configuration(
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

    def mint_grant_token(self, lease_token: str, lease_id: str, ttl_seconds: int) -> IssuedToken:
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
        app = self._app()
        results = self._app_call(
            "encrypt",
            lambda: app.secrets.transit.encrypt_data(
                name=lease_key_name(lease_id),
                plaintext="",
                batch_input=[{"plaintext": _b64(text)} for text in plaintexts],
                mount_point=TRANSIT_MOUNT,
            ),
        )["data"]["batch_results"]
        if any("error" in result and result["error"] for result in results):
            raise VaultRequestFailed("encrypt: a batch item failed")
        return [result["ciphertext"] for result in results]

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
            if future.exception() is not None:
                raise future.exception()
        return [future.result() for future in futures]

    def in_background(self, call: Callable[..., T], *args: object) -> Future[T]:
        """Start one Vault call on the shared pool and return at once, so a request can do its
        own database work meanwhile. Whoever starts it must wait for it on every path."""
        return self._pool.submit(call, *args)

    def write_item(self, lease_id: str, item_id: str, ciphertext: str) -> None:
        """Store one item's ciphertext; cas=0 makes Vault refuse any second write."""
        app = self._app()
        self._app_call(
            "write item",
            lambda: app.secrets.kv.v2.create_or_update_secret(
                path=f"{lease_id}/{item_id}",
                secret={"ciphertext": ciphertext},
                cas=0,
                mount_point=KV_MOUNT,
            ),
        )

    def write_items(self, lease_id: str, items: list[tuple[str, str]]) -> None:
        """Store several (item id, ciphertext) pairs concurrently; all or an error."""
        self._concurrently(
            [
                lambda item_id=item_id, ciphertext=ciphertext: self.write_item(
                    lease_id, item_id, ciphertext
                )
                for item_id, ciphertext in items
            ]
        )

    def read_items(self, grant_token: str, lease_id: str, item_ids: list[str]) -> list[str]:
        """Read and decrypt items with a grant token (Vault checks its TTL and policy)."""
        client = self._client(grant_token)
        responses = self._concurrently(
            [
                lambda item_id=item_id: self._call(
                    "read item",
                    lambda: client.secrets.kv.v2.read_secret_version(
                        path=f"{lease_id}/{item_id}",
                        mount_point=KV_MOUNT,
                        raise_on_deleted_version=True,
                    ),
                )
                for item_id in item_ids
            ]
        )
        ciphertexts = [response["data"]["data"]["ciphertext"] for response in responses]
        if not ciphertexts:
            return []
        results = self._call(
            "decrypt",
            lambda: client.secrets.transit.decrypt_data(
                name=lease_key_name(lease_id),
                ciphertext="",
                batch_input=[{"ciphertext": c} for c in ciphertexts],
                mount_point=TRANSIT_MOUNT,
            ),
        )["data"]["batch_results"]
        if any(result.get("error") for result in results):
            raise VaultRequestFailed("decrypt: a batch item failed")
        return [_unb64(result["plaintext"]) for result in results]

    def list_items(self, lease_id: str) -> list[str]:
        """Item ids stored under a lease, from Vault's own listing (empty when none)."""
        app = self._app()
        try:
            response = self._app_call(
                "list items",
                lambda: app.secrets.kv.v2.list_secrets(path=lease_id, mount_point=KV_MOUNT),
            )
        except VaultNotFound:
            return []
        return [key.rstrip("/") for key in response["data"]["keys"]]

    def delete_item(self, lease_id: str, item_id: str) -> None:
        """Destroy an item: metadata and every version. Already gone counts as done."""
        app = self._app()
        self._app_call(
            "delete item",
            lambda: app.secrets.kv.v2.delete_metadata_and_all_versions(
                path=f"{lease_id}/{item_id}", mount_point=KV_MOUNT
            ),
        )

    def encrypt_token(self, token: str) -> str:
        """Encrypt a Vault token with the app key before it is stored."""
        app = self._app()
        return self._app_call(
            "seal token",
            lambda: app.secrets.transit.encrypt_data(
                name=APP_KEY, plaintext=_b64(token), mount_point=TRANSIT_MOUNT
            ),
        )["data"]["ciphertext"]

    def decrypt_token(self, ciphertext: str) -> str:
        """Decrypt a stored Vault token with the app key."""
        app = self._app()
        return _unb64(
            self._app_call(
                "unseal token",
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

    def delete_lease_key(self, lease_id: str) -> None:
        """Crypto-shred: delete the lease's transit key. Already gone counts as done."""
        name = lease_key_name(lease_id)
        app = self._app()
        # Keys are created deletable, so one call usually does it. When Vault refuses (a key
        # from a provisioning that died before allowing deletion, or already gone), fall back.
        try:
            self._app_call(
                "delete transit key",
                lambda: app.secrets.transit.delete_key(name=name, mount_point=TRANSIT_MOUNT),
            )
            return
        except VaultRequestFailed:
            pass
        if not self.lease_key_exists(lease_id):
            return
        self._app_call(
            "configure transit key",
            lambda: app.secrets.transit.update_key_configuration(
                name=name, deletion_allowed=True, mount_point=TRANSIT_MOUNT
            ),
        )
        self._app_call(
            "delete transit key",
            lambda: app.secrets.transit.delete_key(name=name, mount_point=TRANSIT_MOUNT),
        )

    def lease_key_exists(self, lease_id: str) -> bool:
        """Whether the lease's transit key still exists."""
        app = self._app()
        try:
            self._app_call(
                "read transit key",
                lambda: app.secrets.transit.read_key(
                    name=lease_key_name(lease_id), mount_point=TRANSIT_MOUNT
                ),
            )
        except VaultNotFound:
            return False
        return True

    def list_kv_leases(self) -> list[str]:
        """Lease ids that have entries in the KV mount, from Vault's own listing."""
        app = self._app()
        try:
            response = self._app_call(
                "list kv leases",
                lambda: app.secrets.kv.v2.list_secrets(path="", mount_point=KV_MOUNT),
            )
        except VaultNotFound:
            return []
        return [key.rstrip("/") for key in response["data"]["keys"] if key.endswith("/")]

    def list_lease_keys(self) -> list[str]:
        """Lease ids that have a transit key."""
        app = self._app()
        try:
            response = self._app_call(
                "list transit keys",
                lambda: app.secrets.transit.list_keys(mount_point=TRANSIT_MOUNT),
            )
        except VaultNotFound:
            return []
        return [
            key.removeprefix(TICKET_KEY_PREFIX)
            for key in response["data"]["keys"]
            if key.startswith(TICKET_KEY_PREFIX)
        ]

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


# -- operator: bootstrap (run with an admin token, never by the app itself) -------------------


def _admin_client(addr: str, admin_token: str, timeout: float = 10.0) -> hvac.Client:
    return hvac.Client(url=addr, token=admin_token, timeout=timeout)


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
    policies = {APP_POLICY: (directory / "vault-service.hcl").read_text()}
    for name in (REVEAL_POLICY, LEASE_POLICY):
        template = Template((directory / f"{name}.hcl.tmpl").read_text())
        policies[name] = template.substitute(token_accessor=token_accessor)
    return policies


def bootstrap_vault(
    addr: str,
    admin_token: str,
    *,
    max_retention_seconds: int = 30 * 24 * 3600,
    enable_approle: bool = False,
) -> list[str]:
    """Create or repair the mounts, app key, app policy and lease role; require an audit device.

    Idempotent: run it again after an upgrade and it converges. Returns what it did, line by line.
    """
    client = _admin_client(addr, admin_token)
    done: list[str] = []
    with translate_errors("bootstrap"):
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        if f"{KV_MOUNT}/" not in mounts:
            client.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
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
            client.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
            done.append(f"enabled transit at {TRANSIT_MOUNT}/")
        try:
            client.secrets.transit.read_key(name=APP_KEY, mount_point=TRANSIT_MOUNT)
        except hvac.exceptions.InvalidPath:
            client.secrets.transit.create_key(
                name=APP_KEY,
                key_type="aes256-gcm96",
                exportable=False,
                allow_plaintext_backup=False,
                mount_point=TRANSIT_MOUNT,
            )
            done.append(f"created app key {APP_KEY}")
        # The ticket policies name the token mount by accessor in their identity templates.
        token_accessor = client.sys.list_auth_methods()["data"]["token/"]["accessor"]
        for name, text in render_policies(token_accessor).items():
            client.sys.create_or_update_acl_policy(name=name, policy=text)
        done.append(f"policies {APP_POLICY}, {REVEAL_POLICY}, {LEASE_POLICY} written")
        # Token TTLs are capped by the token backend's max; retention must fit under it.
        client.sys.tune_auth_method("token", max_lease_ttl=f"{max_retention_seconds + 86400}s")
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
        devices = client.sys.list_enabled_audit_devices()["data"]
        if not devices:
            raise VaultRequestFailed(
                "no audit device is enabled: declare one in the server configuration"
            )
        done.append(f"audit devices present: {', '.join(sorted(devices))}")
        if enable_approle:
            auth_methods = client.sys.list_auth_methods()["data"]
            if "approle/" not in auth_methods:
                client.sys.enable_auth_method("approle")
            client.auth.approle.create_or_update_approle(
                APPROLE_ROLE,
                token_policies=[APP_POLICY],
                token_no_default_policy=True,
                token_ttl="1h",
                token_max_ttl="4h",
                secret_id_ttl="0",
                bind_secret_id=True,
            )
            done.append("approle role vault-service (policy vault-service, 1h tokens)")
    return done


def issue_app_token(addr: str, admin_token: str, ttl_seconds: int) -> IssuedToken:
    """A token with only the app policy, for development and tests (production uses AppRole)."""
    client = _admin_client(addr, admin_token)
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


# -- posture checks (vault-service doctor) ------------------------------------------------------


def read_posture(vault: Vault) -> dict:
    """What `doctor` judges: the app token, the KV config, the app key, a direct-read probe."""
    app = vault._app()
    token = vault.lookup_self()
    kv_config = vault._call(
        "read kv config", lambda: app.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)
    )["data"]
    app_key = vault._call(
        "read app key",
        lambda: app.secrets.transit.read_key(name=APP_KEY, mount_point=TRANSIT_MOUNT),
    )["data"]
    try:
        vault._call(
            "probe kv read",
            lambda: app.secrets.kv.v2.read_secret_version(
                path="doctor-probe/none", mount_point=KV_MOUNT, raise_on_deleted_version=True
            ),
        )
        direct_read = "allowed"
    except VaultForbidden:
        direct_read = "denied"
    except VaultNotFound:
        direct_read = "allowed"  # a 404 means the policy let the read through
    return {
        "token_policies": sorted(token.get("policies") or []),
        "kv_max_versions": kv_config.get("max_versions"),
        "kv_cas_required": kv_config.get("cas_required"),
        "app_key_exportable": app_key.get("exportable"),
        "app_key_plaintext_backup": app_key.get("allow_plaintext_backup"),
        "direct_kv_read": direct_read,
        "ticket_keys": _read_lease_keys(vault._call, app),
    }


KEY_PROPERTIES = ("type", "exportable", "allow_plaintext_backup", "deletion_allowed")


def _read_lease_keys(call: Callable[[str, Callable[[], T]], T], client: hvac.Client) -> dict:
    """Every per-ticket transit key and the properties that decide whether it can leave Vault.

    The app's policy may list and read `keys/ticket-*`, so this works with either identity. A key
    deleted between the listing and its read (a purge) is simply no longer there.
    """
    try:
        names = call(
            "list transit keys",
            lambda: client.secrets.transit.list_keys(mount_point=TRANSIT_MOUNT),
        )["data"]["keys"]
    except VaultNotFound:
        return {}
    keys = {}
    for name in sorted(n for n in names if n.startswith(TICKET_KEY_PREFIX)):
        try:
            data = call(
                "read transit key",
                lambda name=name: client.secrets.transit.read_key(
                    name=name, mount_point=TRANSIT_MOUNT
                ),
            )["data"]
        except VaultNotFound:
            continue
        keys[name] = {prop: data.get(prop) for prop in KEY_PROPERTIES}
    return keys


def read_admin_posture(addr: str, admin_token: str, timeout: float = 10.0) -> dict:
    """What only an operator's token can see, for `doctor --admin-token-file`: the audit devices,
    the mounts' configuration, every ticket key, the stored policies next to the ones the
    bootstrap would write, the lease token role and, if it exists, the app's AppRole role."""
    client = _admin_client(addr, admin_token, timeout)

    def call(operation: str, fn: Callable[[], T]) -> T:
        with translate_errors(f"admin: {operation}"):
            return fn()

    audit_devices = call("list audit devices", client.sys.list_enabled_audit_devices)["data"]
    mounts = call("list mounts", client.sys.list_mounted_secrets_engines)["data"]
    auth_methods = call("list auth methods", client.sys.list_auth_methods)["data"]
    kv_mount = mounts.get(f"{KV_MOUNT}/") or {}
    kv_config = call(
        "read kv config", lambda: client.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)
    )["data"]
    app_key = call(
        "read app key",
        lambda: client.secrets.transit.read_key(name=APP_KEY, mount_point=TRANSIT_MOUNT),
    )["data"]
    expected = render_policies(auth_methods["token/"]["accessor"])
    policies = {}
    for name in expected:
        try:
            policies[name] = call(
                "read policy", lambda name=name: client.sys.read_acl_policy(name)
            )["data"]["policy"]
        except VaultNotFound:
            policies[name] = None
    try:
        lease_role = call(
            "read token role", lambda: client.read(f"auth/token/roles/{LEASE_TOKEN_ROLE}")
        )
    except VaultNotFound:
        lease_role = None
    approle = None
    if "approle/" in auth_methods:
        try:
            approle = call(
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
        "app_key": {prop: app_key.get(prop) for prop in KEY_PROPERTIES},
        "ticket_keys": _read_lease_keys(call, client),
        "policies": policies,
        "expected_policies": expected,
        "lease_role": lease_role["data"] if lease_role else None,
        "approle": approle,
    }
