"""Typed SQLAlchemy 2.0 models. None of them holds a credential value: ids, kinds, times, hashes,
Vault token accessors, and Vault-transit ciphertext of tokens at most."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .clock import utcnow
from .extensions import Model


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC, return aware UTC: SQLite has no time zones, PostgreSQL keeps them."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime passed to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StatusType(TypeDecorator[StrEnum]):
    """A status column: a StrEnum in Python, its plain value in the database.

    Binding refuses a value that is not a member, so a misspelt status fails at the statement
    instead of being stored; loading gives the member back, so code compares enums, not strings.
    """

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_type: type[StrEnum]):
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_type(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum_type(value)


class TicketStatus(StrEnum):
    """A ticket's place in its life; transitions live in services/lifecycle.py."""

    OPEN = "open"
    CLOSING = "closing"  # close acknowledged, purge pending: nothing can be revealed any more
    PURGED = "purged"


class LeaseStatus(StrEnum):
    """One Vault generation of a ticket: provisioning -> active -> purging -> purged."""

    PROVISIONING = "provisioning"
    ACTIVE = "active"
    PURGING = "purging"
    PURGED = "purged"


# A lease in these states may still gain Vault material or serve reveals.
LIVE_LEASE_STATES = (LeaseStatus.PROVISIONING, LeaseStatus.ACTIVE)
# A lease in these states owns Vault material: live ones use it, a purging one has a purge job.
OWNED_LEASE_STATES = (*LIVE_LEASE_STATES, LeaseStatus.PURGING)


class LinkState(StrEnum):
    """A submission link's state, derived from its timestamps (services/lifecycle.py)."""

    OPEN = "open"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class GrantState(StrEnum):
    """An agent's grant's state, derived from its timestamps (services/lifecycle.py)."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


# A JSON column's Python value: an object with string keys.
JsonObject = dict[str, Any]


def new_uuid() -> str:
    """Opaque id used in Vault paths: reveals nothing about the ticket."""
    return str(uuid.uuid4())


uuid_pk = Annotated[str, mapped_column(String(36), primary_key=True, default=new_uuid)]
created_at = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow, nullable=False)]
timestamp = Annotated[datetime, mapped_column(UTCDateTime, nullable=False)]
optional_timestamp = Annotated[datetime | None, mapped_column(UTCDateTime, nullable=True)]


class Agent(UserMixin, Model):  # type: ignore[misc]  # flask-login ships no types
    """A support agent or admin who logs in."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    # Rotated on logout, disable and password change: the login cookie carries it, so every
    # session issued before the rotation stops working server-side.
    session_nonce: Mapped[str] = mapped_column(String(36), default=new_uuid)
    disabled_at: Mapped[optional_timestamp]
    created_at: Mapped[created_at]
    # Failed logins in a row; reaching the limit locks the account until locked_until.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[optional_timestamp]
    # The TOTP secret, Fernet-encrypted under a key derived from the app's secret key: a copy of
    # the database alone yields no second factor.
    totp_secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    totp_enrolled_at: Mapped[optional_timestamp]
    # The last TOTP time step accepted: a code of this step or an earlier one is never accepted
    # again, so an observed code cannot be replayed within its window.
    totp_last_step: Mapped[int | None] = mapped_column(Integer)

    def get_id(self) -> str:
        """flask-login identity: the id bound to the current session nonce."""
        return f"{self.id}:{self.session_nonce}"

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    @property
    def totp_enrolled(self) -> bool:
        """Whether the agent has a second factor; until then they may do nothing but enrol."""
        return self.totp_enrolled_at is not None and self.totp_secret_ciphertext is not None

    def __repr__(self) -> str:
        return f"<Agent {self.id} {self.username!r} role={self.role}>"


class OidcIdentity(Model):
    """An agent's identity at an OpenID Connect provider: (issuer, sub), never the email, which
    the provider may hand to someone else later (migration 0011)."""

    __tablename__ = "oidc_identities"
    __table_args__ = (
        UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[created_at]
    last_login_at: Mapped[optional_timestamp]


class OidcSession(Model):
    """A provider session id (`sid`) an agent signed in with: a back-channel logout may name
    only the sid."""

    __tablename__ = "oidc_sessions"

    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    sid: Mapped[str] = mapped_column(String(255), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[created_at]


class OidcLogoutToken(Model):
    """A back-channel logout token's `jti`, kept until the token could no longer be accepted, so
    a replayed token is refused (migration 0014)."""

    __tablename__ = "oidc_logout_tokens"

    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[timestamp] = mapped_column(index=True)


class RecoveryCode(Model):
    """One single-use recovery code of an agent, stored only as a SHA-256 hash.

    A code carries 120 random bits, so a plain hash is enough (no salt or slow hash needed): it
    cannot be guessed from its hash.
    """

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[created_at]
    used_at: Mapped[optional_timestamp]

    def __repr__(self) -> str:
        return f"<RecoveryCode {self.id} agent={self.agent_id} used={self.used_at is not None}>"


class AgentSetupLink(Model):
    """A one-time link on which a new agent chooses a password (migration 0015); the token
    itself is never stored, only its keyed hash."""

    __tablename__ = "agent_setup_links"

    id: Mapped[uuid_pk]
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[created_at]
    expires_at: Mapped[timestamp]
    # Set when the agent chose a password with it, or when a newer link replaced it.
    used_at: Mapped[optional_timestamp]

    def __repr__(self) -> str:
        return f"<AgentSetupLink {self.id} agent={self.agent_id}>"


class Ticket(Model):
    """A ticket of the ticket system; the unit whose close purges everything."""

    __tablename__ = "tickets"

    id: Mapped[uuid_pk]
    ref: Mapped[str] = mapped_column(String(64), unique=True)
    # open -> closing (close acknowledged, purge pending) -> purged; reopened -> open again.
    status: Mapped[TicketStatus] = mapped_column(
        StatusType(TicketStatus), default=TicketStatus.OPEN, index=True
    )
    created_at: Mapped[created_at]
    closed_at: Mapped[optional_timestamp]
    purged_at: Mapped[optional_timestamp]

    leases: Mapped[list[Lease]] = relationship(back_populates="ticket", order_by="Lease.created_at")

    def __repr__(self) -> str:
        return f"<Ticket {self.ref!r} {self.status}>"


class Lease(Model):
    """One generation of a ticket's Vault material: transit key, policies, lease token, KV items.

    Its id is the opaque UUID in every Vault path and name. A reopened ticket gets a new lease, so
    a purge in flight for the old one can never touch what the new one stores.
    """

    __tablename__ = "leases"

    id: Mapped[uuid_pk]
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    status: Mapped[LeaseStatus] = mapped_column(
        StatusType(LeaseStatus), default=LeaseStatus.PROVISIONING, index=True
    )
    created_at: Mapped[created_at]
    expires_at: Mapped[timestamp] = mapped_column(index=True)
    token_accessor: Mapped[str | None] = mapped_column(String(64))
    # The Vault identity entity bound to the lease token (its alias is named by this lease's id).
    entity_id: Mapped[str | None] = mapped_column(String(64))
    # The lease token, encrypted by the app's transit key; erased at purge.
    token_ciphertext: Mapped[str | None] = mapped_column(Text)
    purged_at: Mapped[optional_timestamp]

    ticket: Mapped[Ticket] = relationship(back_populates="leases")
    items: Mapped[list[CredentialItem]] = relationship(back_populates="lease")

    def __repr__(self) -> str:
        return f"<Lease {self.id} {self.status}>"


# The longest customer-facing message a link may carry (characters).
LINK_MESSAGE_MAX_LENGTH = 1000


class SubmissionLink(Model):
    """A one-time customer link; the token itself is never stored, only its keyed hash."""

    __tablename__ = "submission_links"
    # The sweep records expired, unused links once: index only the ones not yet recorded.
    __table_args__ = (
        Index(
            "ix_submission_links_unrecorded_expires_at",
            "expires_at",
            sqlite_where=text("consumed_at IS NULL AND expiry_recorded_at IS NULL"),
            postgresql_where=text("consumed_at IS NULL AND expiry_recorded_at IS NULL"),
        ),
    )

    id: Mapped[uuid_pk]
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[created_at]
    expires_at: Mapped[timestamp]
    consumed_at: Mapped[optional_timestamp]
    # When a sweep recorded this link's expiry (unused links only), so it is recorded once.
    expiry_recorded_at: Mapped[optional_timestamp]
    # When the ticket system revoked the link (unused links only): gone for the customer at once.
    revoked_at: Mapped[optional_timestamp]
    # The ticket system's plain-text note for the customer's form, and the form's language
    # (a BCP 47 tag). Never a secret: the API docs say the message is stored as sent.
    message: Mapped[str | None] = mapped_column(String(LINK_MESSAGE_MAX_LENGTH))
    locale: Mapped[str | None] = mapped_column(String(35))

    def __repr__(self) -> str:
        return f"<SubmissionLink {self.id}>"


class CredentialItem(Model):
    """Where one submitted credential lives in Vault, and of what kind; never its values."""

    __tablename__ = "credential_items"

    id: Mapped[uuid_pk]
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"), index=True)
    link_id: Mapped[str] = mapped_column(ForeignKey("submission_links.id"))
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[created_at]

    lease: Mapped[Lease] = relationship(back_populates="items")

    def __repr__(self) -> str:
        return f"<CredentialItem {self.id} {self.kind}>"


class StatusToken(Model):
    """The customer's status page capability for one submission: the token's keyed hash only,
    and what was received (item ids and kinds, never values), kept past the purge, which
    deletes the credential_items rows."""

    __tablename__ = "status_tokens"

    id: Mapped[uuid_pk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # One status page per submission, and a submission consumes its link: one per link.
    link_id: Mapped[str] = mapped_column(ForeignKey("submission_links.id"), unique=True)
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"), index=True)
    # [{"id": item id, "kind": kind name}, ...] in submission order.
    items: Mapped[list[JsonObject]] = mapped_column(JSON, default=list)
    created_at: Mapped[created_at]

    def __repr__(self) -> str:
        return f"<StatusToken {self.id}>"


class Grant(Model):
    """An agent's time-limited access: a Vault child token of the lease, TTL = the window."""

    __tablename__ = "grants"
    # The sweep looks for expired grants whose wrapped token is still stored: a handful among
    # every grant ever made. Indexing only those keeps the sweep flat as history grows.
    __table_args__ = (
        Index(
            "ix_grants_live_token_expires_at",
            "expires_at",
            sqlite_where=text("token_ciphertext IS NOT NULL"),
            postgresql_where=text("token_ciphertext IS NOT NULL"),
        ),
        # An agent's live grants (the dashboard, disabling an agent) among every grant they
        # ever had: by agent, then by end, so only the unexpired ones are read (migration 0016;
        # it serves lookups by agent alone too).
        Index("ix_grants_agent_id_expires_at", "agent_id", "expires_at"),
    )

    id: Mapped[uuid_pk]
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[created_at]
    expires_at: Mapped[timestamp]
    revoked_at: Mapped[optional_timestamp]
    token_accessor: Mapped[str] = mapped_column(String(64))
    # The grant token, encrypted by the app's transit key; erased at expiry sweep and purge.
    token_ciphertext: Mapped[str | None] = mapped_column(Text)

    lease: Mapped[Lease] = relationship()
    agent: Mapped[Agent] = relationship()

    def __repr__(self) -> str:
        return f"<Grant {self.id} agent={self.agent_id}>"


class AccessRequestStatus(StrEnum):
    """A four-eyes access request (VAULT_SERVICE_ACCESS_APPROVAL=required); transitions in
    services/approvals.py and, for a close, services/lifecycle.py."""

    PENDING = "pending"  # waiting for another agent with the admin role; nothing in Vault yet
    APPROVED = "approved"  # the grant was minted at approval (grant_id)
    DENIED = "denied"
    CLOSED = "closed"  # the ticket closed (or was purged) while it waited
    # Never stored: a pending request past its expires_at (lifecycle.access_request_state).
    EXPIRED = "expired"


class AccessRequest(Model):
    """An agent's request for a grant that another agent with the admin role must approve. It
    holds what the grant will be (reason, window); no Vault token exists until the approval."""

    __tablename__ = "access_requests"

    id: Mapped[uuid_pk]
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    # The window asked for; Vault counts it from the approval, when the token is minted.
    duration_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[AccessRequestStatus] = mapped_column(
        StatusType(AccessRequestStatus), default=AccessRequestStatus.PENDING, index=True
    )
    created_at: Mapped[created_at]
    # Unapproved by then, the request lapses (VAULT_SERVICE_ACCESS_REQUEST_TTL_SECONDS).
    expires_at: Mapped[timestamp]
    decided_at: Mapped[optional_timestamp]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("grants.id"))

    agent: Mapped[Agent] = relationship(foreign_keys=[agent_id])

    def __repr__(self) -> str:
        return f"<AccessRequest {self.id} agent={self.agent_id} {self.status}>"


class JobState(StrEnum):
    """A job's place in the queue, derived from its columns (services/jobs.py: job_state)."""

    PENDING = "pending"  # waiting for its first or next attempt
    RUNNING = "running"  # claimed: a worker holds its row lease (locked_until is ahead)
    FAILING = "failing"  # failed jobs.FAILING_AFTER_ATTEMPTS times or more; still retried
    DONE = "done"


class Job(Model):
    """A durable unit of work (transactional outbox), committed with the change that calls for
    it and run by the worker until done. What it does is its kind's (services/job_kinds/)."""

    __tablename__ = "jobs"
    __table_args__ = (
        # A kind that must not run twice for one thing (a purge per lease) says so by a dedupe key.
        UniqueConstraint("kind", "dedupe_key", name="uq_jobs_kind_dedupe_key"),
        # The worker's claim (services/jobs.py) reads unfinished jobs only: the due ones in
        # order, and for each the older unfinished jobs of its ordering key. Indexing only the
        # unfinished keeps every claim one short index walk however much history the table
        # holds and however many completions PostgreSQL has yet to vacuum (migration 0017).
        Index(
            "ix_jobs_unfinished_next_attempt_at",
            "next_attempt_at",
            sqlite_where=text("completed_at IS NULL"),
            postgresql_where=text("completed_at IS NULL"),
        ),
        Index(
            "ix_jobs_unfinished_ordering_key",
            "ordering_key",
            "created_at",
            "id",
            sqlite_where=text("completed_at IS NULL"),
            postgresql_where=text("completed_at IS NULL"),
        ),
    )

    id: Mapped[uuid_pk]
    kind: Mapped[str] = mapped_column(String(32))
    # Ids and reasons only, never a secret value: the row sits in the database in clear.
    payload: Mapped[JsonObject] = mapped_column(JSON, default=dict)
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(64))
    # Jobs sharing an ordering key run one at a time, oldest first (services/jobs.py).
    ordering_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[created_at]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[timestamp] = mapped_column(default=utcnow)
    locked_until: Mapped[optional_timestamp]
    last_error: Mapped[str | None] = mapped_column(String(200))
    completed_at: Mapped[optional_timestamp] = mapped_column(index=True)
    # What the finished job reports (a purge: its receipt).
    result: Mapped[JsonObject | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} attempts={self.attempts}>"


class Receipt(Model):
    """A purge's deletion receipt: its claims and, since migration 0007, the JWS that signs them
    (a Vault transit ed25519 key; services/receipts.py). One per purged lease, so a ticket
    reopened and closed again keeps every cycle's receipt."""

    __tablename__ = "receipts"

    id: Mapped[uuid_pk]
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    # The signed claims exactly as in the JWS payload (ids, counts, times, agent names, reasons).
    payload: Mapped[JsonObject] = mapped_column(JSON)
    # The compact JWS; NULL only for receipts of purges completed before receipts were signed.
    jws: Mapped[str | None] = mapped_column(Text)
    # The hash of the purge's audit record, written in the same transaction (so not signed).
    audit_record_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[created_at]

    def __repr__(self) -> str:
        return f"<Receipt {self.id} lease={self.lease_id} {self.reason}>"


class WebhookDelivery(Model):
    """A processed webhook-id, so a redelivery is acknowledged without acting twice."""

    __tablename__ = "webhook_deliveries"

    webhook_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[created_at]


class AuditEvent(Model):
    """Append-only, hash-chained record of a security-relevant event. Never holds a secret."""

    __tablename__ = "audit_events"
    # The admin console filters the trail by who acted and when (services/audit_trail.py): a
    # rare actor or an old time range would otherwise scan the whole trail (migration 0015).
    __table_args__ = (
        Index("ix_audit_events_actor", "actor"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    occurred_at: Mapped[created_at]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    ticket_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    details: Mapped[JsonObject] = mapped_column(JSON, default=dict)
    # Unique: two writers racing on the same chain head cannot both append (no fork).
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.action} {self.outcome}>"


class DatabaseIdentity(Model):
    """This database's own random id, written once: the deployment marker in Vault names it, so a
    second database claiming the same VAULT_SERVICE_DEPLOYMENT_ID is recognised and refused."""

    __tablename__ = "database_identity"

    # Always 1: a second row cannot exist, so two processes racing to write it cannot both win.
    singleton: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    database_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[created_at]


# Core table handles for the set-based UPDATE/INSERT statements the services run: one home, typed
# (a declarative class's __table__ is typed as a plain FromClause, which insert()/update() refuse).
# Imported here rather than at the top to keep this block self-contained for the merge.
from typing import cast  # noqa: E402

from sqlalchemy import Table  # noqa: E402

TICKETS: Table = cast(Table, Ticket.__table__)
LEASES: Table = cast(Table, Lease.__table__)
LINKS: Table = cast(Table, SubmissionLink.__table__)
ITEMS: Table = cast(Table, CredentialItem.__table__)
STATUS_TOKENS: Table = cast(Table, StatusToken.__table__)
GRANTS: Table = cast(Table, Grant.__table__)
EVENTS: Table = cast(Table, AuditEvent.__table__)
JOBS: Table = cast(Table, Job.__table__)
