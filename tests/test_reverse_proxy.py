"""Slowloris (issue 13 item 4): ten half-sent headers stall gunicorn served directly, but not the
shipped nginx configuration (deploy/nginx/vault-service.conf) in front of it, which reads each
request whole before anything reaches gunicorn. Timings are measured and reported, with generous
bounds: the point is "answers" against "stalls", not a number."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import pytest
import requests

from vault_service.devtools.processes import Process, free_port

from .helpers import NGINX, loopback_nginx_config

SLOW_CLIENTS = 10
# Far above what an answering server takes (milliseconds), far below a stall (20 s and more).
ANSWERS_WITHIN = 3.0

pytestmark = pytest.mark.skipif(
    NGINX is None,
    reason="nginx is not installed (scripts/run_tests.py installs Debian's nginx-light as root)",
)


def half_sent_headers(port: int, stack: ExitStack) -> None:
    """SLOW_CLIENTS connections, each with a request line and one header, never finished."""
    for index in range(SLOW_CLIENTS):
        connection = stack.enter_context(socket.create_connection(("127.0.0.1", port), 5))
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-{index}: a".encode())
    time.sleep(0.5)  # let the server accept them all


def time_healthz(port: int, timeout: float = 8.0) -> float:
    """Seconds /healthz takes to answer 200, or infinity if it does not within `timeout`."""
    started = time.monotonic()
    try:
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=timeout)
    except requests.RequestException:
        return float("inf")
    assert response.status_code == 200
    return time.monotonic() - started


def test_the_shipped_proxy_keeps_healthz_answering_under_ten_half_sent_headers(
    start_gunicorn,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    server = start_gunicorn()
    proxy_port = free_port()
    directory = tmp_path / "nginx"
    directory.mkdir()
    config = loopback_nginx_config(directory, proxy_port, [server.port])
    nginx = Process(
        "nginx",
        [NGINX, "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
        directory / "stdout.log",
    )
    try:
        nginx.wait_for_url(f"http://127.0.0.1:{proxy_port}/healthz", 15)
        with ExitStack() as stack:
            half_sent_headers(proxy_port, stack)
            through_proxy = time_healthz(proxy_port)
        with ExitStack() as stack:
            half_sent_headers(server.port, stack)
            direct = time_healthz(server.port)
    finally:
        nginx.stop()
    print(
        f"/healthz under {SLOW_CLIENTS} half-sent headers: through nginx {through_proxy:.3f}s, "
        f"gunicorn directly {direct:.3f}s"
    )
    assert through_proxy < ANSWERS_WITHIN, through_proxy
    # The control: without the proxy the same ten connections stall gunicorn.
    assert direct > ANSWERS_WITHIN, direct
    # The proxy logged no request path (link tokens are credentials) and passed its request id.
    access = (directory / "vault-service.access.log").read_text()
    assert '"request_id":"' in access and "/healthz" not in access
