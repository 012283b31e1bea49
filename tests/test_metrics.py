"""GET /metrics: Prometheus text that a real parser reads, counters that move with the story, job
gauges read from the table, an address allow-list, and every gunicorn worker added up."""

from __future__ import annotations

import re
import shutil
import threading
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from vault_service import create_app
from vault_service.devtools import processes
from vault_service.devtools.processes import free_port
from vault_service.extensions import db
from vault_service.models import Job
from vault_service.vault import VaultRequestFailed

from .helpers import ROOT, app_environment, run_worker_pass

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels), through prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    return sum(
        v
        for (sample_name, sample_labels), v in samples.items()
        if sample_name == name and set(labels.items()) <= set(sample_labels)
    )


def scrape(client, **environ) -> Samples:
    response = client.get("/metrics", environ_base=environ)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def test_a_lifecycle_moves_the_request_vault_reveal_and_grant_counters_and_the_purge_gauge(
    app, client, ticket_system, agent, submitted_ticket
):
    before = scrape(client)
    assert agent.login().status_code == 302
    assert agent.request_access(submitted_ticket).status_code == 302
    assert agent.reveal(submitted_ticket).status_code == 200
    assert ticket_system.close(submitted_ticket).status_code == 202
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    after = parse(text)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("vault_service_reveals_total", outcome="success") == 1
    assert moved("vault_service_grants_total", outcome="success") == 1
    assert moved("vault_service_audit_events_total", action="credentials.revealed") == 1
    # Requests by route pattern, method and status class; the ticket's ref is in no label.
    reveal = {"route": "/tickets/<ticket_ref>/reveal", "method": "POST", "status": "2xx"}
    assert moved("vault_service_http_request_duration_seconds_count", **reveal) == 1
    webhook = {"route": "/api/v1/webhooks/<provider>", "method": "POST", "status": "2xx"}
    assert moved("vault_service_http_request_duration_seconds_count", **webhook) == 1
    assert submitted_ticket not in text
    # The reveal read the items with the grant token: one KV read per item, timed.
    assert moved("vault_service_vault_call_duration_seconds_count") >= 3
    assert (
        moved("vault_service_vault_call_duration_seconds_count", operation="mint grant token") == 1
    )
    # The close queued the purge; nothing has failed.
    assert value(after, "vault_service_jobs_queued", kind="purge") == 1
    assert value(after, "vault_service_jobs_failing", kind="purge") == 0
    assert value(after, "vault_service_jobs_read_ok") == 1

    # A purge that has failed again and again shows as failing; once done, the queue is empty.
    with app.app_context():
        db.session.execute(update(Job).values(attempts=7))
        db.session.commit()
    failing = scrape(client)
    assert value(failing, "vault_service_jobs_failing", kind="purge") == 1
    with app.app_context():
        db.session.execute(update(Job).values(attempts=0))
        db.session.commit()
    run_worker_pass(app)
    done = scrape(client)
    assert value(done, "vault_service_jobs_queued", kind="purge") == 0
    assert value(done, "vault_service_jobs_failing", kind="purge") == 0


def test_a_failed_vault_call_is_counted_by_operation_and_error(app, client, vault):
    name = "vault_service_vault_call_errors_total"
    before = scrape(client)
    with app.app_context(), pytest.raises(VaultRequestFailed):
        vault.decrypt_token("vault:v1:bm90IGEgY2lwaGVydGV4dA==")
    after = scrape(client)
    labels = {"operation": "decrypt token", "error": "VaultRequestFailed"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1
    timed = "vault_service_vault_call_duration_seconds_count"
    assert value(after, timed, operation="decrypt token") > value(
        before, timed, operation="decrypt token"
    )


def test_a_refused_reveal_is_counted_by_its_outcome(client, agent, submitted_ticket):
    before = scrape(client)
    assert agent.login().status_code == 302
    # No grant: the reveal is refused (and audited as such).
    agent.post(
        f"/tickets/{submitted_ticket}/reveal",
        {"grant_id": str(uuid.uuid4())},
        f"/tickets/{submitted_ticket}",
    )
    after = scrape(client)
    name = "vault_service_reveals_total"
    assert total(after, name) - total(before, name) == 1
    assert total(after, name, outcome="success") == total(before, name, outcome="success")


def test_metrics_answer_only_the_allowed_addresses_and_404_elsewhere(make_settings):
    app = create_app(make_settings())  # the default: loopback only
    client = app.test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    outsider = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert outsider.status_code == 404
    assert "metrics" not in outsider.get_data(as_text=True).lower()

    app = create_app(make_settings(metrics_allow=("10.1.0.0/16",), trusted_proxies=1))
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics").status_code == 404  # loopback is no longer listed
    # Behind the trusted proxy, the client's address is what counts, not the proxy's.
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    environ = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", headers=forwarded, environ_base=environ).status_code == 404
    forwarded = {"X-Forwarded-For": "10.1.9.9"}
    environ = {"REMOTE_ADDR": "192.0.2.1"}
    assert client.get("/metrics", headers=forwarded, environ_base=environ).status_code == 200


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-an-address"])
def test_a_malformed_allow_list_is_a_configuration_error(make_settings, bad):
    from vault_service.config import ConfigError

    with pytest.raises(ConfigError, match="VAULT_SERVICE_METRICS_ALLOW"):
        make_settings(metrics_allow=(bad,))


def test_under_gunicorn_every_worker_is_counted(
    tmp_path, openbao, app_token, migrated_sqlite_template
):
    """Two workers answer; /metrics (whichever worker serves it) adds up both."""
    database = tmp_path / "db.sqlite"
    shutil.copyfile(migrated_sqlite_template, database)
    metrics_dir = tmp_path / "metrics"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **app_environment(openbao, app_token, database, base),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    process = processes.start_gunicorn(
        ["-c", "python:vault_service.gunicorn_conf", "--workers", "2", "vault_service.wsgi:app"],
        port=port,
        log_path=tmp_path / "gunicorn.log",
        env=env,
        cwd=ROOT,
    )
    try:
        sent = 0
        lock = threading.Lock()

        def hit(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                # A new connection each time, so that either worker may accept it.
                response = requests.get(
                    f"{base}/readyz", headers={"Connection": "close"}, timeout=10
                )
                assert response.status_code == 200, response.text
                with lock:
                    sent += 1

        pids: set[str] = set()
        for _ in range(10):
            threads = [threading.Thread(target=hit, args=(10,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            pids = {
                match.group(1)
                for path in metrics_dir.glob("histogram_*.db")
                if (match := re.fullmatch(r"histogram_(\d+)\.db", path.name))
            }
            if len(pids) >= 2:
                break
        assert len(pids) == 2, f"only workers {pids} answered {sent} requests"

        samples = parse(requests.get(f"{base}/metrics", timeout=10).text)
        readyz = {"route": "/readyz", "method": "GET", "status": "2xx"}
        assert value(samples, "vault_service_http_request_duration_seconds_count", **readyz) == sent
        # Each /readyz asked Vault for its health, in whichever worker answered it.
        assert (
            value(samples, "vault_service_vault_call_duration_seconds_count", operation="health")
            >= sent
        )
        assert value(samples, "vault_service_jobs_queued", kind="purge") == 0
        # Not from an address outside the allow-list (gunicorn gives the app the peer's address).
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 200
    finally:
        process.stop()
    assert not process.log_tail().count("Traceback"), process.log_tail()
