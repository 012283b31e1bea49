"""Deliver one outbound event to VAULT_SERVICE_EVENTS_URL (see services/events.py).

A POST of the event's body, signed per Standard Webhooks with every configured secret, under
the event's own webhook-id and the attempt's timestamp. Any 2xx is delivered; anything else (a
3xx too: deliveries go to the configured URL only, never where a redirect points), a timeout or
a refused connection is a failed attempt, retried by the queue with capped exponential backoff
while the ticket's later events wait behind it.

Logged: the outcome's fields (type, webhook-id, ticket, status, time), never a body.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal, TypedDict

import requests

from ...config import Settings
from ...models import Job
from ...vault import Vault
from .. import events
from ..jobs import JobFailed, JobKind
from ..providers.standard_webhooks import signed_headers

log = logging.getLogger(__name__)

# What is read of a receiver's answer: enough to keep the connection reusable, no more.
MAX_RESPONSE_BYTES = 64 * 1024

_local = threading.local()


class EventDeliveryFailed(JobFailed):
    """The receiver did not take the event; the message says how (never the body)."""


@dataclass(frozen=True)
class Delivery:
    """A delivered event: the receiver's status and how long it took."""

    status: int
    ms: float


class Delivered(TypedDict):
    """The job's result when the receiver took the event."""

    delivered: Literal[True]
    status: int
    ms: float


class Skipped(TypedDict):
    """The job's result when nothing was sent, and why."""

    delivered: Literal[False]
    skipped: str


def _http() -> requests.Session:
    """One session per worker thread, so deliveries reuse their connection to the receiver.

    trust_env is off: no proxy, netrc or CA bundle from the environment changes where an event
    goes or who may read it.
    """
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False
        _local.session = session
    return session


def deliver_event(settings: Settings, _vault: Vault, job: Job) -> Delivery | None:
    """POST the event to the receiver (no transaction open); None if events were turned off."""
    body = job.payload["body"]
    fields = {
        "event_type": body["type"],
        "webhook_id": job.payload["webhook_id"],
        "ticket_ref": body["data"]["ticket_ref"],
        "attempt": job.attempts,
    }
    if not settings.events_url:
        # Turned off after it was enqueued: completed undelivered (events-replay resends it).
        log.warning("event not delivered: events are off", extra={"fields": fields})
        return None
    data = events.encode_body(body)
    headers = signed_headers(settings.events_secrets, data, webhook_id=job.payload["webhook_id"])
    headers["User-Agent"] = "vault-service-events"
    started = time.perf_counter()
    try:
        with _http().post(
            settings.events_url,
            data=data,
            headers=headers,
            timeout=settings.events_timeout_seconds,
            allow_redirects=False,
            stream=True,
        ) as response:
            status = response.status_code
            read = 0
            for chunk in response.iter_content(8192):
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES:
                    break
    except requests.RequestException as error:
        fields["error"] = type(error).__name__
        log.warning("event delivery failed", extra={"fields": fields})
        raise EventDeliveryFailed(f"receiver unreachable ({type(error).__name__})") from None
    fields.update(status=status, ms=round((time.perf_counter() - started) * 1000, 1))
    if not 200 <= status < 300:
        log.warning("event delivery refused", extra={"fields": fields})
        raise EventDeliveryFailed(f"receiver answered HTTP {status}")
    log.info("event delivered", extra={"fields": fields})
    return Delivery(status, fields["ms"])


def record_delivery(_job: Job, delivery: Delivery | None) -> Delivered | Skipped:
    """The job's result: the receiver's status, or why nothing was sent."""
    if delivery is None:
        return {"delivered": False, "skipped": "events_disabled"}
    return {"delivered": True, "status": delivery.status, "ms": delivery.ms}


def _max_backoff_seconds(settings: Settings) -> int:
    return settings.events_backoff_max_seconds


KIND = JobKind(
    name=events.EVENT_DELIVERY_JOB,
    run=deliver_event,
    finish=record_delivery,
    max_backoff_seconds=_max_backoff_seconds,
)
