"""The floor: the Vault calls the service makes for each operation, made directly with hvac.

No Flask, no database, no HTTP in front: one hvac client (the token swapped per call) with a
token holding the app's policy. Each method mirrors, call for call, what the gateway
(vault_service/vault/gateway.py) does for the operation (services/tickets.py, submissions.py,
access.py, purge.py); the benchmark counts both sides in OpenBao's audit log and reports a
mismatch, so the mirror cannot drift silently.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import hvac
import hvac.exceptions

from vault_service.vault import (
    APP_KEY,
    KV_MOUNT,
    LEASE_POLICY,
    LEASE_TOKEN_ROLE,
    RECEIPT_KEY,
    REVEAL_POLICY,
    TRANSIT_MOUNT,
    kv_item_path,
    lease_key_name,
    lease_names,
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _b64url(part: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


@dataclass
class FloorLease:
    """What the floor keeps of one ticket's Vault generation."""

    lease_id: str
    token: str = ""
    accessor: str = ""
    entity_id: str = ""
    sealed_token: str = ""
    item_ids: list[str] = field(default_factory=list)
    grants: list[tuple[str, str]] = field(default_factory=list)  # (accessor, sealed token)


class Floor:
    """Direct hvac calls, one client, no service in between."""

    def __init__(self, addr: str, app_token: str, deployment: str, timeout: float = 5.0):
        self.app_token = app_token
        # The floor names its material as the app it stands beside does (its deployment id).
        self.deployment = deployment
        # hvac's defaults, as anyone calling Vault directly would have them.
        self.client = hvac.Client(url=addr, token=app_token, timeout=timeout)

    @contextmanager
    def _as(self, token: str) -> Iterator[hvac.Client]:
        self.client.token = token
        try:
            yield self.client
        finally:
            self.client.token = self.app_token

    # -- create link (first link of a ticket provisions its lease) ----------------------------

    def create_link(
        self, ttl_seconds: int = 30 * 24 * 3600, lease_id: str | None = None
    ) -> FloorLease:
        lease = FloorLease(lease_id or str(uuid.uuid4()))
        name = lease_key_name(lease.lease_id, deployment=self.deployment)
        transit = self.client.secrets.transit
        transit.create_key(
            name=name,
            key_type="aes256-gcm96",
            exportable=False,
            allow_plaintext_backup=False,
            mount_point=TRANSIT_MOUNT,
        )
        transit.update_key_configuration(
            name=name, deletion_allowed=True, mount_point=TRANSIT_MOUNT
        )
        auth = self.client.auth.token.create(
            role_name=LEASE_TOKEN_ROLE,
            policies=[REVEAL_POLICY, LEASE_POLICY],
            ttl=f"{ttl_seconds}s",
            explicit_max_ttl=f"{ttl_seconds}s",
            renewable=False,
            no_default_policy=True,
            entity_alias=lease.lease_id,
        )["auth"]
        lease.token, lease.accessor = auth["client_token"], auth["accessor"]
        lease.entity_id = auth["entity_id"]
        lease.sealed_token = self._seal(lease.token)
        return lease

    # -- submit -----------------------------------------------------------------------------

    def submit(
        self, lease: FloorLease, items: list[dict], item_ids: list[str] | None = None
    ) -> None:
        plaintexts = [
            json.dumps(
                {"kind": item["kind"], "fields": {k: v for k, v in item.items() if k != "kind"}},
                ensure_ascii=False,
            )
            for item in items
        ]
        results = self.client.secrets.transit.encrypt_data(
            name=lease_key_name(lease.lease_id, deployment=self.deployment),
            plaintext="",
            batch_input=[{"plaintext": _b64(text)} for text in plaintexts],
            mount_point=TRANSIT_MOUNT,
        )["data"]["batch_results"]
        for index, result in enumerate(results):
            item_id = item_ids[index] if item_ids else str(uuid.uuid4())
            self.client.secrets.kv.v2.create_or_update_secret(
                path=kv_item_path(lease.lease_id, item_id, deployment=self.deployment),
                secret={"ciphertext": result["ciphertext"]},
                cas=0,
                mount_point=KV_MOUNT,
            )
            lease.item_ids.append(item_id)

    # -- request access ---------------------------------------------------------------------

    def request_access(self, lease: FloorLease, ttl_seconds: int = 1800) -> None:
        lease_token = self._unseal(lease.sealed_token)
        with self._as(lease_token) as client:
            auth = client.auth.token.create(
                policies=[REVEAL_POLICY],
                ttl=f"{ttl_seconds}s",
                explicit_max_ttl=f"{ttl_seconds}s",
                renewable=False,
                no_default_policy=True,
            )["auth"]
        lease.grants.append((auth["accessor"], self._seal(auth["client_token"])))

    # -- reveal -----------------------------------------------------------------------------

    def reveal(self, lease: FloorLease) -> list[str]:
        grant_token = self._unseal(lease.grants[-1][1])
        with self._as(grant_token) as client:
            ciphertexts = [
                client.secrets.kv.v2.read_secret_version(
                    path=kv_item_path(lease.lease_id, item_id, deployment=self.deployment),
                    mount_point=KV_MOUNT,
                    raise_on_deleted_version=True,
                )["data"]["data"]["ciphertext"]
                for item_id in lease.item_ids
            ]
            results = client.secrets.transit.decrypt_data(
                name=lease_key_name(lease.lease_id, deployment=self.deployment),
                ciphertext="",
                batch_input=[{"ciphertext": c} for c in ciphertexts],
                mount_point=TRANSIT_MOUNT,
            )["data"]["batch_results"]
        return [base64.b64decode(r["plaintext"]).decode() for r in results]

    # -- purge: destroy, then verify through Vault's API --------------------------------------

    def purge(self, lease: FloorLease) -> None:
        """The service's purge, call for call (it makes the fewest calls that keep every
        guarantee; a service that makes more shows up as a floor/service call mismatch), and
        the receipt's signature."""
        # Destroy: the lease token (its grants are its children and go with it), the key (one
        # delete: it was created deletable), every item from Vault's listing, the entity.
        self.client.auth.token.revoke_accessor(lease.accessor)
        name = lease_key_name(lease.lease_id, deployment=self.deployment)
        self.client.secrets.transit.delete_key(name=name, mount_point=TRANSIT_MOUNT)
        item_ids = sorted(set(lease.item_ids) | set(self._list(lease.lease_id)))
        for item_id in item_ids:
            self.client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=kv_item_path(lease.lease_id, item_id, deployment=self.deployment),
                mount_point=KV_MOUNT,
            )
        self.client.delete(f"identity/entity/id/{lease.entity_id}")
        # Verify: every token, the key, the listing (empty: no item's metadata is left), entity.
        accessors = [lease.accessor, *(accessor for accessor, _ in lease.grants)]
        leftovers = [a for a in accessors if self._accessor_exists(a)]
        leftovers += ["key"] if self._key_exists(name) else []
        leftovers += self._list(lease.lease_id)
        leftovers += ["entity"] if self.client.read(f"identity/entity/id/{lease.entity_id}") else []
        if leftovers:
            raise RuntimeError(f"floor purge left {len(leftovers)} object(s)")
        # Receipt: Vault signs what was destroyed with the receipt key, which never leaves it
        # (its latest version, named in the answer: nothing is read before).
        facts = {
            "lease_id": lease.lease_id,
            "transit_key": name,
            "kv_entries": len(item_ids),
            "token_accessors": accessors,
            "identity_entity": lease.entity_id,
        }
        signing_input = ".".join(_b64url(part) for part in ({"alg": "EdDSA"}, facts))
        signature = self.client.secrets.transit.sign_data(
            name=RECEIPT_KEY, hash_input=_b64(signing_input), mount_point=TRANSIT_MOUNT
        )["data"]["signature"]
        if not signature.startswith("vault:v"):
            raise RuntimeError("floor purge: the receipt was not signed")

    # -- helpers (each one Vault call) --------------------------------------------------------

    def _seal(self, token: str) -> str:
        return self.client.secrets.transit.encrypt_data(
            name=APP_KEY, plaintext=_b64(token), mount_point=TRANSIT_MOUNT
        )["data"]["ciphertext"]

    def _unseal(self, ciphertext: str) -> str:
        plaintext = self.client.secrets.transit.decrypt_data(
            name=APP_KEY, ciphertext=ciphertext, mount_point=TRANSIT_MOUNT
        )["data"]["plaintext"]
        return base64.b64decode(plaintext).decode()

    def _accessor_exists(self, accessor: str) -> bool:
        try:
            self.client.auth.token.lookup_accessor(accessor)
        except hvac.exceptions.InvalidRequest:
            return False
        return True

    def _key_exists(self, name: str) -> bool:
        try:
            self.client.secrets.transit.read_key(name=name, mount_point=TRANSIT_MOUNT)
        except hvac.exceptions.InvalidPath:
            return False
        return True

    def _list(self, lease_id: str) -> list[str]:
        try:
            folder = lease_names(lease_id, deployment=self.deployment).kv_folder
            keys = self.client.secrets.kv.v2.list_secrets(path=folder, mount_point=KV_MOUNT)
        except hvac.exceptions.InvalidPath:
            return []
        return [key.rstrip("/") for key in keys["data"]["keys"]]
