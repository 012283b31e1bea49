"""How the app reaches Vault: one HTTP session, explicit about its trust, spread over a cluster."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ..config import Settings

# Where an operator's command sends its requests: one node, or every node of one cluster.
Addresses = str | Sequence[str]


@dataclass(frozen=True)
class TLSOptions:
    """How to trust Vault (a private CA's file) and prove ourselves to it (a client certificate),
    for the app and for every command alike."""

    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> TLSOptions:
        return cls(settings.vault_ca_cert, settings.vault_client_cert, settings.vault_client_key)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TLSOptions:
        """For the commands that run before the app's settings can load (bootstrap-vault)."""
        environ = os.environ if environ is None else environ
        return cls(
            environ.get("VAULT_SERVICE_VAULT_CA_CERT", ""),
            environ.get("VAULT_SERVICE_VAULT_CLIENT_CERT", ""),
            environ.get("VAULT_SERVICE_VAULT_CLIENT_KEY", ""),
        )

    def apply(self, session: requests.Session) -> requests.Session:
        """Vault's address is explicit: no proxy, netrc or CA bundle from the environment
        (requests reads os.environ and ~/.netrc on every call otherwise; REQUESTS_CA_BUNDLE and
        hvac's VAULT_CACERT are ignored on purpose). A private CA is given here instead."""
        session.trust_env = False
        if self.ca_cert:
            session.verify = self.ca_cert
        if self.client_cert:
            session.cert = (self.client_cert, self.client_key)
        return session


def build_session(
    settings: Settings, session: requests.Session | None = None
) -> tuple[requests.Session, str]:
    """The session the app's Vault clients share, and the base address they send requests to."""
    return cluster_session(settings.vault_addresses, TLSOptions.from_settings(settings), session)


def cluster_session(
    addresses: Sequence[str], tls: TLSOptions, session: requests.Session | None = None
) -> tuple[requests.Session, str]:
    """A session over every node in `addresses` (one node: that node), and the base address to
    send requests to; the app's clients and the operators' commands alike."""
    session = tls.apply(session or requests.Session())
    if len(addresses) == 1:
        return session, addresses[0].rstrip("/")
    adapter = FailoverAdapter(list(addresses))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, FailoverAdapter.CLUSTER_BASE


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

    def send(  # type: ignore[override]
        self, request: PreparedRequest, **kwargs: Any
    ) -> Response:
        url = str(request.url)  # a prepared request always has its URL as text
        parts = urlsplit(url)
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
            request.url = self._rewrite(url, self._addresses[index])
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
