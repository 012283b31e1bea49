"""Prometheus metrics: `GET /metrics`, for the addresses in VAULT_SERVICE_METRICS_ALLOW only.

Under gunicorn every worker is its own process, so the counters live in prometheus_client's
multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by vault_service/gunicorn_conf.py before any
worker is forked) and a scrape, whichever worker answers it, adds up every worker's files. Without
that variable (the dev server, the tests, the `worker` command) the process's own registry is
served. The job queue gauges are not kept anywhere: they are one read of the jobs table per scrape,
so they can never drift from the truth.

Labels are bounded sets only: the route pattern (never the path: a path can hold a link token),
the method, the status class, a Vault operation name (code constants) and an audit action.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The metrics of this process (or, in multiprocess mode, the files of this worker). Not the
# library's global REGISTRY: that one would add process and GC series that mean nothing summed
# over workers.
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUEST_SECONDS = Histogram(
    "vault_service_http_request_duration_seconds",
    "Time to answer a request, by route pattern, method and status class.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
VAULT_CALL_SECONDS = Histogram(
    "vault_service_vault_call_duration_seconds",
    "Time of one call to Vault, by operation (failed calls included).",
    ["operation"],
    registry=REGISTRY,
)
VAULT_CALL_ERRORS = Counter(
    "vault_service_vault_call_errors",
    "Calls to Vault that failed, by operation and our error class.",
    ["operation", "error"],
    registry=REGISTRY,
)
AUDIT_EVENTS = Counter(
    "vault_service_audit_events",
    "Audit records written, by action and outcome (counted when written, before the commit).",
    ["action", "outcome"],
    registry=REGISTRY,
)
REVEALS = Counter(
    "vault_service_reveals",
    "Reveals of a ticket's credentials to an agent, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
GRANTS = Counter(
    "vault_service_grants",
    "Access grants to a ticket's credentials, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)

# The audit actions that have a counter of their own, for the dashboards' two questions.
_ACTION_COUNTERS = {"credentials.revealed": REVEALS, "access.granted": GRANTS}

bp = Blueprint("metrics", __name__)


def status_class(status: int) -> str:
    """`2xx`, `4xx`, ...: the exact code would multiply the series for little insight."""
    return f"{status // 100}xx"


def observe_vault_call(operation: str, seconds: float, error: BaseException | None) -> None:
    """The Vault gateway's observer: one call's duration, and its failure if it failed."""
    VAULT_CALL_SECONDS.labels(operation).observe(seconds)
    if error is not None:
        VAULT_CALL_ERRORS.labels(operation, type(error).__name__).inc()


def count_audit_event(action: str, outcome: str) -> None:
    """Called where the audit record is written (services/audit.record)."""
    AUDIT_EVENTS.labels(action, outcome).inc()
    counter = _ACTION_COUNTERS.get(action)
    if counter is not None:
        counter.labels(outcome).inc()


class JobQueueCollector:
    """Unfinished and failing jobs by kind, read from the jobs table at each scrape."""

    def collect(self) -> Iterator[Metric]:
        # The app hands in how to count (services/readiness.py): this module stays below the
        # services, which count what they do through it.
        job_queue_counts = current_app.extensions["vault_service.job_queue_counts"]
        queued = GaugeMetricFamily(
            "vault_service_jobs_queued",
            "Unfinished jobs (due, waiting or running), by kind.",
            labels=["kind"],
        )
        failing = GaugeMetricFamily(
            "vault_service_jobs_failing",
            "Unfinished jobs that have failed too often to be a passing fault, by kind.",
            labels=["kind"],
        )
        up = GaugeMetricFamily(
            "vault_service_jobs_read_ok", "1 if the jobs table could be read for this scrape."
        )
        try:
            counts = job_queue_counts()
        except Exception:  # noqa: BLE001 - a scrape reports a database outage, it does not 500
            up.add_metric([], 0)
            yield up
            return
        for kind, (unfinished, failing_count) in sorted(counts.items()):
            queued.add_metric([kind], unfinished)
            failing.add_metric([kind], failing_count)
        up.add_metric([], 1)
        yield from (queued, failing, up)


class _Collectors:
    """Several collectors served as one."""

    def __init__(self, collectors: Iterable[object]):
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()  # type: ignore[attr-defined]


def render() -> bytes:
    """The whole exposition: every worker's counters (or this process's), then the job gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        # prometheus_client leaves this constructor unannotated.
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        registry.register(JobQueueCollector())
    else:
        registry.register(_Collectors([REGISTRY, JobQueueCollector()]))
    return generate_latest(registry)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_list(raw: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses); raises ValueError naming the bad entry."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in raw)


def _allowed(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack listener
    return any(ip in network for network in networks)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; 404 from anywhere else, so the endpoint does not advertise itself."""
    networks = current_app.extensions["vault_service.metrics_allow"]
    if not _allowed(request.remote_addr, networks):
        abort(404)
    response = Response(render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(
    app: Flask,
    allow: Iterable[str],
    job_queue_counts: Callable[[], Mapping[str, tuple[int, int]]],
) -> None:
    """The /metrics route, the request timer, and how the job gauges are counted at a scrape."""
    app.extensions["vault_service.metrics_allow"] = parse_allow_list(allow)
    app.extensions["vault_service.job_queue_counts"] = job_queue_counts
    app.register_blueprint(bp)

    @app.before_request
    def start_metrics_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def observe_request(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            # The route pattern, not the path: a link token in the URL never becomes a label.
            route = request.url_rule.rule if request.url_rule else "<unmatched>"
            HTTP_REQUEST_SECONDS.labels(
                route, request.method, status_class(response.status_code)
            ).observe(time.perf_counter() - started)
        return response
