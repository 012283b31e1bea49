"""The Vault session's HTTP behaviour, against local HTTP servers standing in for cluster nodes:
which failures move a request to another node and which never do (a write that may have been
applied is not replayed), redirects, and what it refuses to send. The same session against real
OpenBao nodes is covered by test_ha (a killed leader), test_tls and the lifecycle tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hvac
import pytest
import requests

from vault_service.devtools.processes import free_port
from vault_service.vault import TLSOptions, VaultUnavailable
from vault_service.vault.errors import translate_errors
from vault_service.vault.transport import VaultSession, cluster_session


class Node:
    """One stand-in node: answers every request with `status` and a JSON body naming itself,
    after `delay` seconds; `redirect_to` answers 307 pointing there instead. Requests are logged
    as (method, path, body, token header)."""

    def __init__(self, name: str):
        self.name, self.status, self.delay, self.redirect_to = name, 200, 0.0, ""
        self.seen: list[tuple[str, str, bytes, str | None]] = []
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                node.seen.append((self.command, self.path, body, self.headers.get("X-Vault-Token")))
                time.sleep(node.delay)
                if node.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", node.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps({"node": node.name, "sealed": node.status == 503}).encode()
                self.send_response(node.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except BrokenPipeError:
                    pass  # the client timed out first, as one test wants

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started = [Node("a"), Node("b")]
    yield started
    for node in started:
        node.close()


def cluster_client(addresses: list[str], timeout: float = 5) -> hvac.Client:
    session, base = cluster_session(addresses, TLSOptions())
    return hvac.Client(url=base, token="t0ken", timeout=timeout, session=session)  # type: ignore[arg-type]


def test_one_node_is_addressed_as_itself(nodes):
    session, base = cluster_session([nodes[0].addr + "/"], TLSOptions())
    assert isinstance(session, VaultSession)
    assert base == nodes[0].addr


def test_hvac_requests_arrive_as_sent(nodes):
    client = cluster_client([nodes[0].addr])
    answer = client.secrets.kv.v2.create_or_update_secret(path="p q", secret={"k": "ü"})
    assert answer == {"node": "a", "sealed": False}
    client.secrets.kv.v2.read_secret_version(path="p", version=3, raise_on_deleted_version=True)
    (write_method, write_path, write_body, token), (read_method, read_path, _, _) = nodes[0].seen
    assert (write_method, write_path, token) == ("POST", "/v1/secret/data/p%20q", "t0ken")
    assert json.loads(write_body) == {"options": {}, "data": {"k": "ü"}}
    assert (read_method, read_path) == ("GET", "/v1/secret/data/p?version=3")


def test_an_unreachable_node_is_skipped_and_the_answering_one_kept(nodes):
    client = cluster_client([f"http://127.0.0.1:{free_port()}", nodes[0].addr])
    for _ in range(3):
        assert client.read("secret/data/p")["node"] == "a"
    assert len(nodes[0].seen) == 3


def test_a_503_moves_to_the_next_node_and_the_last_answer_is_kept_when_all_are_sealed(nodes):
    nodes[0].status = 503
    client = cluster_client([nodes[0].addr, nodes[1].addr])
    assert client.read("secret/data/p")["node"] == "b"
    nodes[1].status = 503
    session, base = cluster_session([nodes[0].addr, nodes[1].addr], TLSOptions())
    answer = session.get(f"{base}/v1/sys/health", timeout=5)
    assert answer.status_code == 503 and answer.json()["sealed"] is True


def test_a_write_that_timed_out_after_reaching_a_node_is_not_sent_elsewhere(nodes):
    nodes[0].delay = 1.0
    client = cluster_client([nodes[0].addr, nodes[1].addr], timeout=0.3)
    with pytest.raises(VaultUnavailable), translate_errors("write"):
        client.write_data("secret/data/p", data={"k": "v"})
    assert len(nodes[0].seen) == 1
    assert nodes[1].seen == []


def test_a_redirect_is_followed_with_its_method_and_body(nodes):
    nodes[0].redirect_to = nodes[1].addr
    client = cluster_client([nodes[0].addr])
    assert client.write_data("secret/data/p", data={"k": "v"})["node"] == "b"
    [(method, path, body, token)] = nodes[1].seen
    assert (method, path, token) == ("POST", "/v1/secret/data/p", "t0ken")
    assert json.loads(body) == {"k": "v"}


def test_a_redirect_to_an_unreachable_node_falls_back_to_the_others(nodes):
    nodes[0].redirect_to = f"http://127.0.0.1:{free_port()}"
    client = cluster_client([nodes[0].addr, nodes[1].addr])
    assert client.read("secret/data/p")["node"] == "b"


def test_no_node_reachable_is_vault_unavailable():
    client = cluster_client([f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"])
    with pytest.raises(VaultUnavailable, match="unreachable"), translate_errors("read"):
        client.read("secret/data/p")


@pytest.mark.parametrize("argument", ["cookies", "files", "auth", "hooks"])
def test_what_vault_never_needs_is_refused_before_anything_is_sent(nodes, argument):
    session, base = cluster_session([nodes[0].addr], TLSOptions())
    with pytest.raises(TypeError, match=argument):
        session.request("GET", f"{base}/v1/sys/health", **{argument: {"x": "y"}})
    with pytest.raises(TypeError, match="stream"):
        session.request("GET", f"{base}/v1/sys/health", stream=True)
    assert nodes[0].seen == []


def test_responses_are_requests_responses(nodes):
    session, base = cluster_session([nodes[0].addr], TLSOptions())
    answer = session.get(f"{base}/v1/sys/health", params={"standbyok": "true"}, timeout=5)
    assert isinstance(answer, requests.Response)
    assert answer.ok and answer.headers["content-type"] == "application/json"
    assert answer.json()["node"] == "a"
    assert nodes[0].seen[0][1] == "/v1/sys/health?standbyok=true"
