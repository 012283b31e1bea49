"""How the app reaches Vault: one HTTP session, explicit about its trust, spread over a cluster."""

from __future__ import annotations

import json as jsonlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3
from certifi import where as public_ca_bundle
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from ..config import Settings

# Where an operator's command sends its requests: one node, or every node of one cluster.
Addresses = str | Sequence[str]

# Vault answers a request a standby cannot forward with a redirect to the active node.
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# As many connections per node as requests keeps by default: a worker's threads and the gateway's
# pool of concurrent calls share them; a burst beyond opens extra ones that are not kept.
CONNECTIONS_PER_NODE = 10


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

    def pool_manager(self) -> urllib3.PoolManager:
        """Connections that verify Vault's certificate (against the private CA when one is given,
        else the public CAs requests trusts) and present ours when one is configured. Vault's
        address is explicit: no proxy, netrc or CA bundle from the environment
        (REQUESTS_CA_BUNDLE and hvac's VAULT_CACERT are ignored on purpose)."""
        return urllib3.PoolManager(
            maxsize=CONNECTIONS_PER_NODE,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self.ca_cert or public_ca_bundle(),
            cert_file=self.client_cert or None,
            key_file=self.client_key or None,
        )


def build_session(settings: Settings) -> tuple[VaultSession, str]:
    """The session the app's Vault clients share, and the base address they send requests to."""
    return cluster_session(settings.vault_addresses, TLSOptions.from_settings(settings))


def cluster_session(addresses: Sequence[str], tls: TLSOptions) -> tuple[VaultSession, str]:
    """A session over every node in `addresses` (one node: that node), and the base address to
    send requests to; the app's clients and the operators' commands alike."""
    session = VaultSession(addresses, tls)
    if len(addresses) == 1:
        return session, session.nodes[0]
    return session, VaultSession.CLUSTER_BASE


class VaultSession(requests.Session):
    """The `requests.Session` interface hvac speaks, sent with urllib3 directly.

    Why not requests itself: preparing, sending and building a response through requests costs
    about twice urllib3's own work per call (cookies, hooks, adapters, redirect machinery), and a
    purge makes a dozen calls. What requests did that Vault needs is done here: query and JSON
    encoding, timeouts, redirects, TLS, and its exception types, which callers translate
    (vault/errors.py). What Vault never needs (cookies, auth, files, streaming) is refused.

    Spread over a cluster: any node serves (standbys forward to the active one); when a node
    cannot be reached or answers 503, the next one is tried. Only failures where Vault cannot
    have acted are retried elsewhere (no connection made, or a 503 "not active / sealed"), so a
    non-idempotent write is never replayed after it may have been applied.
    """

    # With several nodes, hvac clients address the cluster by this name; only requests to it are
    # spread. A redirect names a real node, and is followed as it is (a real node may also be the
    # first address, which is why the first address cannot double as the cluster's name).
    CLUSTER_BASE = "http://vault-cluster.invalid"

    def __init__(self, addresses: Sequence[str], tls: TLSOptions):
        super().__init__()
        if not addresses:
            raise ValueError("no Vault address configured")
        self.trust_env = False
        # What hvac copies into every call; the pools below are what is actually used.
        self.verify = tls.ca_cert or True
        self.cert = (tls.client_cert, tls.client_key) if tls.client_cert else None
        self.nodes = [address.rstrip("/") for address in addresses]
        self._connections = tls.pool_manager()
        self._current = 0
        self._lock = threading.Lock()

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str | bytes,
        params: Mapping[str, Any] | None = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: float | tuple[float, float] | None = None,
        allow_redirects: bool = True,
        proxies: Mapping[str, str] | None = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        # verify and cert are hvac copying this session's own settings back; proxies are never
        # used (trust_env is off and none is configured).
        unsupported = {"cookies": cookies, "files": files, "auth": auth, "hooks": hooks}
        for name, value in unsupported.items():
            if value:
                raise TypeError(f"the Vault session does not send {name}")
        if stream:
            raise TypeError("the Vault session does not stream responses")
        url = url.decode() if isinstance(url, bytes) else url
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params, doseq=True)}"
        send_headers = dict(headers or {})
        body: bytes | None
        if json is not None:
            body = jsonlib.dumps(json, allow_nan=False).encode()
            send_headers.setdefault("Content-Type", "application/json")
        else:
            body = data.encode() if isinstance(data, str) else data
        deadline = _timeout(timeout)
        method = method.upper()

        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.CLUSTER_BASE:
            return self._send(method, url, body, send_headers, deadline, allow_redirects)
        path = url[len(self.CLUSTER_BASE) :]
        with self._lock:
            start = self._current
        unavailable: requests.Response | None = None
        unreachable: NodeUnreachable | None = None
        for offset in range(len(self.nodes)):
            index = (start + offset) % len(self.nodes)
            try:
                response = self._send(
                    method, self.nodes[index] + path, body, send_headers, deadline, allow_redirects
                )
            except NodeUnreachable as error:
                unreachable = error
                continue
            if response.status_code == 503 and offset < len(self.nodes) - 1:
                unavailable = response  # sealed or not active: another node may serve
                continue
            with self._lock:
                self._current = index  # stick to a node that answers
            return response
        # No node served: a node's own answer (sealed, say so) tells more than a refused connection.
        if unavailable is not None:
            return unavailable
        raise unreachable or NodeUnreachable("no Vault node could be reached")

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: urllib3.Timeout,
        allow_redirects: bool,
    ) -> requests.Response:
        """One request to one node, following its redirects (a standby pointing at the active
        node) where they point."""
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._urlopen(method, url, body, headers, timeout)
            location = answer.headers.get("Location")
            if not (allow_redirects and answer.status in REDIRECTS and location):
                return _response(answer, url)
            url = urljoin(url, location)
            if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                method, body = "GET", None  # as browsers and requests do
        raise requests.exceptions.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")

    def _urlopen(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: urllib3.Timeout,
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self._connections.urlopen(
                method,
                url,
                body=body,
                headers=headers,
                timeout=timeout,
                retries=False,
                redirect=False,
                preload_content=True,
            )
        except HTTPError as error:
            raise _requests_error(error) from error

    def close(self) -> None:
        self._connections.clear()
        super().close()


def _timeout(timeout: float | tuple[float, float] | None) -> urllib3.Timeout:
    """requests' timeout forms: one number for connect and read each, or (connect, read)."""
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(connect=timeout, read=timeout)


def _response(answer: urllib3.BaseHTTPResponse, url: str) -> requests.Response:
    """The response as requests would have built it, for hvac and our callers alike."""
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason or ""
    response.headers = CaseInsensitiveDict(answer.headers)
    response._content = answer.data  # noqa: SLF001 - the body, read in full as requests does
    response.url = url
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response


class NodeUnreachable(requests.exceptions.ConnectionError):
    """A refused or timed-out connection: the request never reached a Vault node, so another node
    may be tried without risk of applying a write twice."""


def _requests_error(error: HTTPError) -> requests.exceptions.RequestException:
    """urllib3's failure as the requests exception callers translate (vault/errors.py)."""
    if isinstance(error, NewConnectionError | ConnectTimeoutError):
        return NodeUnreachable(error)
    if isinstance(error, ReadTimeoutError):
        return requests.exceptions.ReadTimeout(error)
    if isinstance(error, Urllib3SSLError):
        return requests.exceptions.SSLError(error)
    return requests.exceptions.ConnectionError(error)
