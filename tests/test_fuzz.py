"""Property-based tests: the API fuzzed from openapi.yaml (schemathesis, against the WSGI app and
the real OpenBao), and the submission validator and webhook parser fed random JSON (hypothesis).

What must hold for every generated request: no 5xx; the answer conforms to openapi.yaml (status,
media type, body schema, headers); requests that break the schema are refused; and a refused
request (any 4xx) changes no row of the tables a request could write. Budgets are small enough
for the whole file to finish in well under a minute, large enough to reach the deep branches:
half the link requests carry a real, usable link token and half the webhooks a valid signature.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from vault_service import create_app
from vault_service.config import Settings
from vault_service.errors import ServiceError
from vault_service.extensions import current_settings, current_vault, db
from vault_service.kinds import item_kinds
from vault_service.kinds.validation import validate_submission
from vault_service.models import (
    AuditEvent,
    CredentialItem,
    Job,
    Lease,
    SubmissionLink,
    Ticket,
    WebhookDelivery,
)
from vault_service.services import sweep
from vault_service.services.lifecycle import TICKET_REF_PATTERN as TICKET_REF
from vault_service.services.providers.standard_webhooks import parse_event, sign, verify_signature

from .conftest import TICKET_API_TOKEN, WEBHOOK_KEY

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.yaml"
TABLES = (Ticket, Lease, SubmissionLink, CredentialItem, Job, AuditEvent, WebhookDelivery)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
API_EXAMPLES = 40  # per operation; eight operations
FUZZ_SETTINGS = settings(
    max_examples=API_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def row_counts(app) -> dict[str, int]:
    with app.app_context():
        counts = {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in TABLES
        }
        db.session.rollback()
    return counts


class Fixtures:
    """Real state for the generated cases to reach past the first check: a usable link, a known
    open ticket, and a purged one with its receipt."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self._token: str | None = None
        self._open_ref: str | None = None
        self._purged_ref: str | None = None

    def _create_link(self, ticket_ref: str) -> str:
        response = self.client.post(
            f"/api/v1/tickets/{ticket_ref}/submission-links",
            headers={"Authorization": f"Bearer {TICKET_API_TOKEN}"},
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()["url"].rsplit("/", 1)[1]

    def usable_link_token(self) -> str:
        """A link that can still take a submission (a fresh one once a case has used it)."""
        if self._token is None or self.client.get(f"/s/{self._token}").status_code != 200:
            self._open_ref = f"FUZZ-{uuid.uuid4().hex[:8]}"
            self._token = self._create_link(self._open_ref)
        return self._token

    def open_ref(self) -> str:
        self.usable_link_token()
        assert self._open_ref is not None
        return self._open_ref

    def purged_ref(self) -> str:
        """A ticket that was filled, closed and purged: its status carries a purge receipt."""
        if self._purged_ref is None:
            ticket_ref = f"FUZZ-PURGED-{uuid.uuid4().hex[:8]}"
            token = self._create_link(ticket_ref)
            item = {"kind": "other", "label": "fuzz", "secret": "s3cret"}
            assert self.client.post(f"/s/{token}", json={"items": [item]}).status_code == 201
            body = json.dumps({"type": "ticket.closed", "data": {"ticket_ref": ticket_ref}})
            assert self._deliver(body.encode()).status_code == 202
            with self.app.app_context():
                report = sweep.sweep(current_settings(), current_vault(), orphans=False)
            assert report.jobs_completed["purge"] >= 1
            self._purged_ref = ticket_ref
        return self._purged_ref

    def _deliver(self, body: bytes):
        """A correctly signed webhook delivery of these exact bytes."""
        webhook_id, timestamp = f"msg_{uuid.uuid4().hex}", int(time.time())
        return self.client.post(
            "/api/v1/webhooks/ticket-events",
            data=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(WEBHOOK_KEY, webhook_id, timestamp, body),
            },
        )


def reach_deeper(case, fixtures: Fixtures) -> None:
    """Swap generated identifiers for real ones in a share of the cases (chosen from the
    generated data itself, so a failing example replays the same way)."""
    operation = case.operation.label
    path = dict(case.path_parameters or {})
    if "/api/v1/tickets/" in operation:
        # The ticket system's token on every call: without it every case would stop at 401.
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TICKET_API_TOKEN}"}
        ref = path.get("ticket_ref")
        if isinstance(ref, str) and TICKET_REF.fullmatch(ref):
            if len(ref) % 3 == 1:
                path["ticket_ref"] = fixtures.open_ref()
            elif len(ref) % 3 == 2:
                path["ticket_ref"] = fixtures.purged_ref()  # 409 for a link; a receipt
    if operation == "POST /s/{token}" or (
        operation == "GET /s/{token}" and len(str(path.get("token", ""))) % 2 == 0
    ):
        path["token"] = fixtures.usable_link_token()
    if path:
        case.path_parameters = path


@pytest.fixture
def fuzz_app(make_settings):
    """The app with limits far above the budget: this fuzzes the API, not the rate limiter."""
    app = create_app(
        make_settings(
            ratelimit_link="100000/minute",
            ratelimit_api="100000/minute",
            ratelimit_webhook="100000/minute",
        )
    )
    from vault_service import schema as migrations

    with app.app_context():
        migrations.upgrade(db.engine)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# A request that breaks the schema must be refused. 410 counts: an unknown link answers 410
# before its body is read, on purpose (the same answer for every dead link).
REJECTED = ["400", "401", "404", "405", "409", "410", "413", "415", "422", "429"]
schema = schemathesis.openapi.from_path(
    OPENAPI,
    config=schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}}
    ),
)


@pytest.mark.usefixtures("openbao")
@schema.parametrize()
@FUZZ_SETTINGS
def test_the_api_keeps_its_contract_under_generated_requests(case, fuzz_app):
    fixtures = fuzz_app.extensions.setdefault("fuzz_fixtures", Fixtures(fuzz_app))
    reach_deeper(case, fixtures)
    before = row_counts(fuzz_app)
    response = case.call(app=fuzz_app)
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert row_counts(fuzz_app) == before, (case.operation.label, response.status_code)

    if "webhooks" in case.operation.label and isinstance(case.body, dict | list | str | int):
        # The same body again, correctly signed: now the parser and the handler see it.
        before = row_counts(fuzz_app)
        signed = fixtures._deliver(json.dumps(case.body).encode())
        assert signed.status_code in (200, 202, 400), signed.get_data(as_text=True)
        assert signed.mimetype == "application/json"
        if signed.status_code == 400:
            assert row_counts(fuzz_app) == before


# -- the validators themselves, with random JSON ----------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
KINDS = {kind.name: kind for kind in item_kinds()}
FIELD_NAMES = sorted({field.name for kind in KINDS.values() for field in kind.fields})
field_values = (
    json_values
    | st.text(max_size=300)
    | st.sampled_from(["", " ", "22", "²", "٢٢", "0", "65536", "http://[::1", "https://x/ y"])
    | st.sampled_from(["files.example.test", "10.0.0.1", "[::1]", "https://shop.example/a?b"])
)
# Close to valid, so the field checks (not just the shape checks) run on odd values.
near_valid_items = st.fixed_dictionaries(
    {"kind": st.sampled_from([*KINDS, "notes", "", None, 1])},
    optional={name: field_values for name in [*FIELD_NAMES, "extra"]},
)
submissions = json_values | st.fixed_dictionaries(
    {"items": st.lists(near_valid_items, max_size=4) | json_values},
    optional={"notes": json_values | st.text(max_size=50), "other": json_values},
)


@settings(max_examples=400, deadline=None, database=None)
@given(payload=submissions)
def test_the_submission_validator_accepts_or_refuses_and_never_crashes(payload):
    try:
        result = validate_submission(payload)
    except ServiceError as error:
        assert error.status == 422
        return
    # Accepted: every value is text, and each item has its kind's required fields and no other.
    assert 1 <= len(result.items) <= 20
    for item in result.items:
        fields = KINDS[item.kind].fields
        assert {field.name for field in fields if field.required} <= set(item.fields)
        assert set(item.fields) <= {field.name for field in fields}
        assert all(isinstance(value, str) and value for value in item.fields.values())
    assert isinstance(result.notes, str)


webhook_bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(["ticket.closed", "ticket.reopened", "ticket.other"])
            | json_values,
            "data": st.fixed_dictionaries({}, optional={"ticket_ref": json_values | st.text()})
            | json_values,
        }
    ).map(lambda value: json.dumps(value).encode())
)


@settings(max_examples=400, deadline=None, database=None)
@given(body=webhook_bodies)
def test_the_webhook_parser_returns_an_event_or_a_bad_request_and_never_crashes(body):
    try:
        event_type, ticket_ref = parse_event(body)
    except ServiceError as error:
        assert error.status == 400
        return
    assert event_type in ("ticket.closed", "ticket.reopened")
    assert isinstance(ticket_ref, str) and 1 <= len(ticket_ref) <= 64


header_values = st.text(max_size=60) | st.sampled_from(["", "v1,", "v1,AAAA", "0", "-1", "1e3"])


@settings(max_examples=300, deadline=None, database=None)
@given(
    headers=st.fixed_dictionaries(
        {},
        optional={
            "webhook-id": header_values,
            "webhook-timestamp": header_values | st.integers().map(str),
            "webhook-signature": header_values,
        },
    ),
    body=st.binary(max_size=100),
)
def test_webhook_signature_checks_refuse_anything_unsigned_and_never_crash(headers, body):
    settings_ = Settings(webhook_secrets=(WEBHOOK_KEY,))
    with pytest.raises(ServiceError) as refused:
        verify_signature(settings_, headers, body, _now())
    assert refused.value.status == 401


def _now():
    from vault_service.clock import utcnow

    return utcnow()


def test_the_api_description_is_not_served(client):
    """openapi.yaml ships in the repository; the app exposes no documentation endpoint."""
    for path in ("/openapi.yaml", "/openapi.json", "/docs", "/swagger.json", "/api/v1/openapi"):
        assert client.get(path).status_code == 404, path


# -- hostile values in every parameter, through HTTP ------------------------------------------
# What the property tests above never generated, and what an attacker's afternoon found: deep
# nesting (the parser's recursion), lone surrogates (valid JSON escapes, not text) and control
# characters (CR/LF in a redirect target), each in every parameter a client controls.

hostile_text = st.sampled_from(
    ["\ud800", "a\udfffb", "\r\n", "/\r\nSet-Cookie: x=1", "\x00", "\x1b[2J", "\u202e", "\x7f"]
) | st.text(
    alphabet=st.characters(categories=["Cc", "Cs", "Cf", "Zl", "Zp"]), min_size=1, max_size=8
)
deep_json = st.integers(min_value=1_000, max_value=30_000).map(lambda n: "[" * n + "]" * n)


def _form_body(fields: dict[str, str]) -> bytes:
    """URL-encoded as a hostile client would: lone surrogates as their (invalid) UTF-8 bytes."""
    from urllib.parse import quote

    return "&".join(
        f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in fields.items()
    ).encode()


def _json_body(value: object) -> bytes:
    """JSON as sent on the wire: ensure_ascii escapes a lone surrogate as \\ud800."""
    return json.dumps(value).encode()


def _csrf_token(client, path: str) -> str:
    """The CSRF token of a page's form (the client keeps the session it belongs to)."""
    page = client.get(path).get_data(as_text=True)
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


LINK_FIELDS = ("label", "secret", "notes", "kind")
LOGIN_FIELDS = ("username", "password", "code", "next")


@pytest.mark.usefixtures("openbao")
@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    site=st.sampled_from(
        [*(f"submission:{f}" for f in LINK_FIELDS), *(f"form:{f}" for f in LINK_FIELDS)]
        + [*(f"login:{f}" for f in LOGIN_FIELDS), "login-page:next", "api:ttl_seconds"]
        + ["deep:link", "deep:unknown-link", "deep:api", "deep:webhook", "webhook:ticket_ref"]
    ),
    value=hostile_text,
    deep=deep_json,
)
def test_hostile_values_in_every_parameter_get_a_4xx_and_change_nothing(
    fuzz_app, site, value, deep
):
    fixtures = fuzz_app.extensions.setdefault("fuzz_fixtures", Fixtures(fuzz_app))
    client, kind, name = fixtures.client, *site.split(":")
    api_auth = {"Authorization": f"Bearer {TICKET_API_TOKEN}"}
    json_type = {"Content-Type": "application/json"}
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    token = fixtures.usable_link_token()
    before = row_counts(fuzz_app)
    if kind == "submission":
        item = {"kind": "other", "label": "fuzz", "secret": "s3cret"}
        body = {"items": [item], "notes": ""}
        if name == "notes":
            body["notes"] = value
        else:
            item[name] = value
        response = client.post(f"/s/{token}", data=_json_body(body), headers=json_type)
    elif kind == "form":
        fields = {"ot_label": "fuzz", "ot_secret": "s3cret", "notes": ""}
        fields["csrf_token"] = _csrf_token(client, f"/s/{token}")
        fields[name if name == "notes" else f"ot_{name}"] = value
        response = client.post(f"/s/{token}", data=_form_body(fields), headers=form_type)
    elif kind == "login":
        fields = {"username": "alice", "password": "x" * 12, "code": "123456", "next": "/"}
        fields["csrf_token"] = _csrf_token(client, "/login")
        fields[name] = value
        response = client.post("/login", data=_form_body(fields), headers=form_type)
    elif kind == "login-page":
        response = client.get("/login?next=" + _form_body({"": value}).decode()[1:])
    elif kind == "api":
        response = client.post(
            f"/api/v1/tickets/{fixtures.open_ref()}/submission-links",
            data=_json_body({"ttl_seconds": value}),
            headers={**api_auth, **json_type},
        )
    elif kind == "webhook":
        body = _json_body({"type": "ticket.closed", "data": {"ticket_ref": value}})
        response = fixtures._deliver(body)
    else:
        target = {
            "link": (f"/s/{token}", {}),
            "unknown-link": ("/s/no-such-token", {}),
            "api": (f"/api/v1/tickets/{fixtures.open_ref()}/submission-links", api_auth),
        }.get(name)
        if target is None:
            response = fixtures._deliver(deep.encode())
        else:
            response = client.post(target[0], data=deep, headers={**target[1], **json_type})
    assert response.status_code < 500, (site, repr(value), response.get_data(as_text=True))
    if 400 <= response.status_code < 500 and kind != "login":
        # A refused login writes its failure record, by design; nothing else may change.
        assert row_counts(fuzz_app) == before, (site, repr(value), response.status_code)
    if kind in ("login", "login-page") and "Location" in response.headers:
        assert response.headers["Location"].isprintable()
