"""Agents signing in through an OpenID Connect provider: the authorization code flow with PKCE,
`state` and `nonce` (Authlib's OAuth2Session), ID tokens and back-channel logout tokens verified
against the provider's published keys (joserfc, the JOSE library Authlib itself verifies ID
tokens with, and Authlib's CodeIDToken claim rules), who may sign in and as what, and the
offboarding a provider's logout triggers. Every refusal is audited with its reason; the agent
sees only the generic login failure."""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..config import OidcSettings, Settings
from ..errors import BadRequest, Conflict, NotFound
from ..extensions import db
from ..models import Agent, Grant, OidcIdentity, OidcLogoutToken, OidcSession, new_uuid
from ..transactions import read_only, transaction
from ..vault import Vault
from ..vault.errors import VaultError
from . import audit
from .agents import USERNAME_PATTERN, actor_of, hash_password, lock_agent
from .authentication import is_locked

# Seconds of clock skew allowed between the provider and us (exp, iat).
LEEWAY_SECONDS = 60
# How long discovery and the key set are kept; an unknown key id refetches the keys at once.
METADATA_TTL_SECONDS = 300
# `amr` values (RFC 8176) that say the provider checked a second factor.
MFA_AMR = frozenset({"mfa", "otp", "hwk"})
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# A logout token older than this is refused: it bounds what a captured token can replay.
LOGOUT_TOKEN_MAX_AGE_SECONDS = 600
# The longest `jti` kept (the column's size); a longer one is refused, not truncated.
JTI_MAX_LENGTH = 255


class OidcFailure(Exception):
    """The sign-in is refused; `reason` goes to the audit trail, never to the browser."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery (`<issuer>/.well-known/openid-configuration`) told us."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: tuple[str, ...]


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and what the callback must match (kept in the signed session;
    the verifier is sent to the provider only by us, from the server)."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class VerifiedIdentity:
    """The claims of an ID token whose signature, issuer, audience, expiry and nonce held."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool | None
    preferred_username: str | None
    groups: tuple[str, ...]
    amr: tuple[str, ...]
    acr: str | None
    sid: str | None
    auth_time: int | None


@dataclass(frozen=True)
class OidcLogin:
    """A permitted identity: its agent, and whether the provider asserted a second factor."""

    agent: Agent
    provider_mfa: bool


@dataclass(frozen=True)
class LogoutResult:
    """What a back-channel logout ended."""

    agents: tuple[str, ...]
    grants_revoked: int


# --- the provider's metadata and keys ----------------------------------------------------------

_cache_lock = threading.Lock()
_metadata_cache: dict[str, tuple[float, ProviderMetadata]] = {}
_keys_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as error:
        raise OidcFailure(f"provider unreachable: {type(error).__name__}") from error
    if not isinstance(body, dict):
        raise OidcFailure("provider answered with no JSON object")
    return body


def provider_metadata(oidc: OidcSettings) -> ProviderMetadata:
    """The provider's discovery document (cached); its issuer must be exactly the configured one
    (OpenID Connect Discovery 1.0, section 4.3)."""
    now = time.monotonic()
    with _cache_lock:
        cached = _metadata_cache.get(oidc.issuer)
    if cached is not None and now - cached[0] < METADATA_TTL_SECONDS:
        return cached[1]
    body = _get_json(oidc.issuer + "/.well-known/openid-configuration", oidc.timeout_seconds)
    if body.get("issuer") != oidc.issuer:
        raise OidcFailure("discovery names another issuer")
    try:
        algorithms = [
            alg
            for alg in body.get("id_token_signing_alg_values_supported") or ["RS256"]
            # Only keys the provider publishes: never "none", never a MAC keyed by our secret.
            if isinstance(alg, str) and alg != "none" and not alg.startswith("HS")
        ]
        metadata = ProviderMetadata(
            issuer=body["issuer"],
            authorization_endpoint=str(body["authorization_endpoint"]),
            token_endpoint=str(body["token_endpoint"]),
            jwks_uri=str(body["jwks_uri"]),
            signing_algorithms=tuple(algorithms),
        )
    except KeyError as error:
        raise OidcFailure(f"discovery lacks {error.args[0]}") from error
    with _cache_lock:
        _metadata_cache[oidc.issuer] = (now, metadata)
    return metadata


def _key_set(oidc: OidcSettings, metadata: ProviderMetadata, *, force: bool) -> KeySet:
    now = time.monotonic()
    with _cache_lock:
        cached = _keys_cache.get(metadata.jwks_uri)
    if force or cached is None or now - cached[0] >= METADATA_TTL_SECONDS:
        cached = (now, _get_json(metadata.jwks_uri, oidc.timeout_seconds))
        with _cache_lock:
            _keys_cache[metadata.jwks_uri] = cached
    try:
        return KeySet.import_key_set(cached[1])  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise OidcFailure("provider's key set unreadable") from error


def forget_provider_cache() -> None:
    """Drop the cached discovery documents and key sets (tests; a provider's key rotation is
    handled by refetching on an unknown key id)."""
    with _cache_lock:
        _metadata_cache.clear()
        _keys_cache.clear()


def _verified_jwt(oidc: OidcSettings, token: str) -> jwt.Token:
    """The token, its signature verified with the provider's published keys (a key id we do not
    know refetches them once: the provider rotated)."""
    metadata = provider_metadata(oidc)
    for force in (False, True):
        keys = _key_set(oidc, metadata, force=force)
        try:
            return jwt.decode(token, keys, algorithms=list(metadata.signing_algorithms))
        except JoseError as error:
            if force or "key" not in type(error).__name__.lower():
                raise OidcFailure(f"token signature: {error.error}") from error
        except (ValueError, TypeError) as error:
            raise OidcFailure("token malformed") from error
    raise OidcFailure("token signature")  # unreachable: the loop returns or raises


# --- the authorization code flow ---------------------------------------------------------------


def _client(oidc: OidcSettings, redirect_uri: str, state: str | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=oidc.client_id,
        client_secret=oidc.client_secret or None,
        # A public client (no secret) authenticates with PKCE alone.
        token_endpoint_auth_method="client_secret_basic" if oidc.client_secret else "none",
        scope=" ".join(oidc.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        state=state,
    )


def authorization_request(
    settings: Settings, redirect_uri: str, *, reauth: bool = False
) -> AuthorizationRequest:
    """A fresh authorization request: new state, nonce and PKCE verifier. For a re-authentication
    before a sensitive step, `prompt=login` and `max_age` make the provider ask again."""
    oidc = settings.oidc
    metadata = provider_metadata(oidc)
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(24)
    extra: dict[str, str] = {"nonce": nonce}
    if reauth:
        extra.update(prompt="login", max_age=str(settings.reauth_seconds))
    with _client(oidc, redirect_uri) as client:
        url, state = client.create_authorization_url(
            metadata.authorization_endpoint,
            state=secrets.token_urlsafe(24),
            code_verifier=verifier,
            **extra,
        )
    return AuthorizationRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)


def _describe(error: Exception) -> str:
    """A JOSE or Authlib error as the audit trail keeps it: its code and which claim."""
    code = getattr(error, "error", type(error).__name__)
    description = getattr(error, "description", None)
    return f"{code} ({description})" if description else str(code)


def _string_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def verify_id_token(
    oidc: OidcSettings,
    id_token: str,
    *,
    nonce: str,
    access_token: str | None = None,
    max_age: int | None = None,
) -> VerifiedIdentity:
    """Signature (provider's keys), issuer, audience (and azp), expiry, iat, nonce and at_hash,
    by Authlib's OpenID Connect Core rules; with `max_age`, an auth_time that recent."""
    token = _verified_jwt(oidc, id_token)
    params: dict[str, object] = {"nonce": nonce, "client_id": oidc.client_id}
    if access_token:
        params["access_token"] = access_token
    if max_age is not None:
        params["max_age"] = max_age
    claims = CodeIDToken(
        token.claims,
        token.header,
        {
            "iss": {"essential": True, "value": oidc.issuer},
            "aud": {"essential": True, "value": oidc.client_id},
        },
        params,
    )
    try:
        claims.validate(leeway=LEEWAY_SECONDS)
    except (JoseError, AuthlibBaseError) as error:
        raise OidcFailure(f"id token: {_describe(error)}") from error
    auth_time = claims.get("auth_time")
    if max_age is not None and (
        not isinstance(auth_time, int | float) or time.time() - auth_time > max_age + LEEWAY_SECONDS
    ):
        raise OidcFailure("id token: authentication not recent enough")
    groups = _string_tuple(claims.get(oidc.groups_claim)) if oidc.groups_claim else ()
    email = claims.get("email")
    verified = claims.get("email_verified")
    username = claims.get("preferred_username")
    acr = claims.get("acr")
    sid = claims.get("sid")
    return VerifiedIdentity(
        issuer=oidc.issuer,
        subject=str(claims["sub"]),
        email=email.strip().lower() if isinstance(email, str) else None,
        email_verified=verified if isinstance(verified, bool) else None,
        preferred_username=username if isinstance(username, str) else None,
        groups=groups,
        amr=_string_tuple(claims.get("amr")),
        acr=acr if isinstance(acr, str) else None,
        sid=sid if isinstance(sid, str) else None,
        auth_time=int(auth_time) if isinstance(auth_time, int | float) else None,
    )


def complete_authorization(
    settings: Settings,
    redirect_uri: str,
    callback_url: str,
    pending: AuthorizationRequest,
    *,
    max_age: int | None = None,
) -> VerifiedIdentity:
    """The callback: its state must be ours, the code is exchanged (with the PKCE verifier) for
    tokens, and the ID token verified. OidcFailure on anything else."""
    oidc = settings.oidc
    metadata = provider_metadata(oidc)
    with _client(oidc, redirect_uri, state=pending.state) as client:
        try:
            token = client.fetch_token(
                metadata.token_endpoint,
                authorization_response=callback_url,
                code_verifier=pending.code_verifier,
                timeout=oidc.timeout_seconds,
            )
        except AuthlibBaseError as error:
            # State mismatch, a provider's error answer, a refused (replayed) code.
            raise OidcFailure(f"code exchange: {error.error}") from error
        except (requests.RequestException, ValueError) as error:
            raise OidcFailure(f"code exchange: {type(error).__name__}") from error
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise OidcFailure("no id token")
    access_token = token.get("access_token")
    return verify_id_token(
        oidc,
        id_token,
        nonce=pending.nonce,
        access_token=access_token if isinstance(access_token, str) else None,
        max_age=max_age,
    )


# --- who may sign in, and as what --------------------------------------------------------------


def asserts_mfa(oidc: OidcSettings, identity: VerifiedIdentity) -> bool:
    """Whether the provider says it checked a second factor (`amr`, or the configured `acr`)."""
    if MFA_AMR.intersection(identity.amr):
        return True
    return bool(oidc.mfa_acr) and identity.acr == oidc.mfa_acr


def permitted_role(oidc: OidcSettings, identity: VerifiedIdentity) -> tuple[bool, str | None]:
    """(permitted, role from the groups or None). A mapped group grants its role (admin wins);
    otherwise a verified email in an allowed domain lets an existing agent in with their role."""
    roles = {role for group, role in oidc.role_map if group in identity.groups}
    if roles:
        return True, "admin" if "admin" in roles else "agent"
    if oidc.allowed_domains and identity.email and identity.email_verified is not False:
        domain = identity.email.rpartition("@")[2]
        if domain in oidc.allowed_domains:
            return True, None
    return False, None


def _new_username(identity: VerifiedIdentity) -> str:
    base = identity.preferred_username or (identity.email or "").partition("@")[0] or "agent"
    base = re.sub(r"[^a-z0-9._-]", "-", base.lower()).strip("._-")[:56] or "agent"
    if not base[0].isalnum():
        base = "a" + base
    candidate = base if len(base) >= 2 else base + "-1"
    suffix = 1
    while db.session.scalar(select(Agent.id).where(Agent.username == candidate)) is not None:
        suffix += 1
        candidate = f"{base}-{suffix}"
    if not USERNAME_PATTERN.fullmatch(candidate):
        raise OidcFailure("no usable username")
    return candidate


def _refuse(identity: VerifiedIdentity, reason: str, agent: Agent | None = None) -> None:
    # The subject, never the email: the audit trail names who, not their mailbox.
    audit.record(
        "agent.login",
        actor=actor_of(agent) if agent is not None else "anonymous",
        outcome="failure",
        method="oidc",
        reason=reason,
        issuer=identity.issuer,
        subject=identity.subject,
    )


def record_failure(reason: str) -> None:
    """Audit a sign-in refused before an identity was verified (bad state, token, provider)."""
    with transaction():
        audit.record(
            "agent.login", actor="anonymous", outcome="failure", method="oidc", reason=reason
        )


def sign_in(settings: Settings, identity: VerifiedIdentity) -> OidcLogin | None:
    """The agent a verified identity signs in as, or None (refused, audited): not permitted,
    not provisioned (with provisioning=existing), disabled or locked."""
    oidc = settings.oidc
    now = utcnow()
    permitted, role = permitted_role(oidc, identity)
    mfa = asserts_mfa(oidc, identity)
    with transaction() as session:
        if not permitted:
            _refuse(identity, "identity not permitted")
            return None
        binding = session.scalar(
            select(OidcIdentity).where(
                OidcIdentity.issuer == identity.issuer, OidcIdentity.subject == identity.subject
            )
        )
        agent: Agent | None
        if binding is None:
            if oidc.provisioning != "jit":
                _refuse(identity, "not provisioned")
                return None
            username = _new_username(identity)
            # Nobody knows this password: the agent signs in through the provider only.
            agent = Agent(
                username=username,
                password_hash=hash_password(secrets.token_urlsafe(32)),
                role=role or "agent",
            )
            session.add(agent)
            session.flush()
            binding = OidcIdentity(
                agent_id=agent.id, issuer=identity.issuer, subject=identity.subject
            )
            session.add(binding)
            audit.record(
                "agent.created",
                actor="oidc",
                agent=username,
                role=agent.role,
                issuer=identity.issuer,
                subject=identity.subject,
            )
        else:
            agent = lock_agent(binding.agent_id)
        if agent is None or not agent.is_active:
            # Offboarding: a disabled agent stays out, whatever the provider says.
            _refuse(identity, "disabled", agent)
            return None
        if is_locked(agent, now):
            _refuse(identity, "locked", agent)
            return None
        if role is not None and role != agent.role:
            audit.record(
                "agent.role_changed",
                actor="oidc",
                agent=agent.username,
                role=role,
                previous=agent.role,
                groups_claim=oidc.groups_claim,
            )
            agent.role = role
        binding.last_login_at = now
        if identity.sid and session.get(OidcSession, (identity.issuer, identity.sid)) is None:
            session.add(OidcSession(issuer=identity.issuer, sid=identity.sid, agent_id=agent.id))
        audit.record(
            "agent.login",
            actor=actor_of(agent),
            method="oidc",
            provider_mfa=mfa,
            second_factor="provider" if mfa else "pending",
        )
        return OidcLogin(agent, mfa)


def is_bound_to(agent: Agent, identity: VerifiedIdentity) -> bool:
    """Whether this identity is the agent's (a re-authentication must be the same person)."""
    with read_only() as session:
        found = session.scalar(
            select(OidcIdentity.agent_id).where(
                OidcIdentity.issuer == identity.issuer, OidcIdentity.subject == identity.subject
            )
        )
    return found == agent.id


def bind_identity(username: str, issuer: str, subject: str, *, actor: str) -> None:
    """An admin binds a provider identity to an existing agent (provisioning=existing)."""
    with transaction() as session:
        agent = session.scalar(select(Agent).where(Agent.username == username.strip().lower()))
        if agent is None:
            raise NotFound("No agent with that username.")
        if not issuer or not subject:
            raise BadRequest("Issuer and subject are required.")
        taken = session.scalar(
            select(OidcIdentity).where(
                OidcIdentity.issuer == issuer, OidcIdentity.subject == subject
            )
        )
        if taken is not None:
            raise Conflict("That identity is bound to an agent already.")
        session.add(OidcIdentity(agent_id=agent.id, issuer=issuer, subject=subject))
        audit.record(
            "agent.oidc_bound", actor=actor, agent=agent.username, issuer=issuer, subject=subject
        )


# --- back-channel logout -----------------------------------------------------------------------


@dataclass(frozen=True)
class LogoutClaims:
    """What a verified logout token names, and until when it could be accepted (its jti is
    kept that long, so a replay is refused)."""

    sub: str | None
    sid: str | None
    jti: str
    acceptable_until: datetime


def verify_logout_token(oidc: OidcSettings, logout_token: str) -> LogoutClaims:
    """The claims of a logout token (OpenID Connect Back-Channel Logout 1.0, section 2.6):
    signature, iss, aud, iat (recent), exp, jti, the back-channel event, sub or sid, no nonce."""
    token = _verified_jwt(oidc, logout_token)
    claims = token.claims
    registry = JWTClaimsRegistry(
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": oidc.issuer},
        aud={"essential": True, "value": oidc.client_id},
        iat={"essential": True},
        # Section 2.4 requires exp; jti makes a replay detectable (section 2.6).
        exp={"essential": True},
        jti={"essential": True},
        events={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as error:
        raise OidcFailure(f"logout token: {_describe(error)}") from error
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise OidcFailure("logout token: no back-channel logout event")
    if "nonce" in claims:
        raise OidcFailure("logout token: carries a nonce")
    iat, exp, jti = claims["iat"], claims["exp"], claims["jti"]
    if not isinstance(iat, int | float) or time.time() - iat > LOGOUT_TOKEN_MAX_AGE_SECONDS:
        raise OidcFailure("logout token: too old")
    if not isinstance(jti, str) or not jti or len(jti) > JTI_MAX_LENGTH:
        raise OidcFailure("logout token: unusable jti")
    sub, sid = claims.get("sub"), claims.get("sid")
    sub = sub if isinstance(sub, str) and sub else None
    sid = sid if isinstance(sid, str) and sid else None
    if sub is None and sid is None:
        raise OidcFailure("logout token: neither sub nor sid")
    # The first moment this token is refused anyway: too old, or expired (with the leeway).
    until = min(iat + LOGOUT_TOKEN_MAX_AGE_SECONDS, exp + LEEWAY_SECONDS)
    return LogoutClaims(sub, sid, jti, datetime.fromtimestamp(until, UTC))


def _spend_logout_token(session: Session, issuer: str, claims: LogoutClaims) -> None:
    """Record the token's jti, or refuse it as a replay; forget the jtis of tokens that can no
    longer be accepted. The primary key decides between two deliveries racing on two workers:
    the second insert fails, its transaction rolls back, nothing of it happens."""
    session.execute(delete(OidcLogoutToken).where(OidcLogoutToken.expires_at <= utcnow()))
    if session.get(OidcLogoutToken, (issuer, claims.jti)) is not None:
        raise OidcFailure("logout token: replayed")
    session.add(OidcLogoutToken(issuer=issuer, jti=claims.jti, expires_at=claims.acceptable_until))
    session.flush()


def backchannel_logout(settings: Settings, vault: Vault, logout_token: str) -> LogoutResult:
    """End every session of the agent the provider logged out, and revoke their live grants in
    Vault. OidcFailure for a token that does not verify (nothing changes)."""
    oidc = settings.oidc
    claims = verify_logout_token(oidc, logout_token)
    sub, sid = claims.sub, claims.sid
    now = utcnow()
    ended: list[str] = []
    accessors: list[tuple[str, str]] = []
    try:
        with transaction() as session:
            _spend_logout_token(session, oidc.issuer, claims)
            agent_ids: set[int] = set()
            if sub is not None:
                agent_ids.update(
                    session.scalars(
                        select(OidcIdentity.agent_id).where(
                            OidcIdentity.issuer == oidc.issuer, OidcIdentity.subject == sub
                        )
                    )
                )
            if sid is not None:
                found = session.get(OidcSession, (oidc.issuer, sid))
                if found is not None:
                    agent_ids.add(found.agent_id)
                    session.delete(found)
            for agent_id in sorted(agent_ids):
                agent = lock_agent(agent_id)
                if agent is None:
                    continue
                # The login cookie carries the nonce: every session of the agent ends here.
                agent.session_nonce = new_uuid()
                ended.append(agent.username)
                audit.record(
                    "agent.logout", actor="oidc", agent=agent.username, via="backchannel", sid=sid
                )
                live = session.scalars(
                    select(Grant).where(
                        Grant.agent_id == agent.id,
                        Grant.revoked_at.is_(None),
                        Grant.expires_at > now,
                        Grant.token_ciphertext.is_not(None),
                    )
                )
                accessors.extend((grant.id, grant.token_accessor) for grant in live)
    except IntegrityError as error:
        # Another worker spent the same jti between our check and our insert.
        raise OidcFailure("logout token: replayed") from error
    revoked = 0
    # Vault is called with no transaction open; each grant is marked revoked once Vault agreed.
    for grant_id, accessor in accessors:
        try:
            vault.revoke_accessor(accessor)
        except VaultError as error:
            with transaction():
                audit.record(
                    "access.revoked",
                    actor="oidc",
                    outcome="failure",
                    grant_id=grant_id,
                    reason="vault unavailable",
                    error=str(error),
                )
            continue
        with transaction() as session:
            grant = session.get(Grant, grant_id)
            if grant is not None and grant.revoked_at is None:
                grant.revoked_at = utcnow()
                grant.token_ciphertext = None
                revoked += 1
                audit.record(
                    "access.revoked",
                    actor="oidc",
                    grant_id=grant_id,
                    agent_id=grant.agent_id,
                    reason="backchannel logout",
                )
    return LogoutResult(agents=tuple(ended), grants_revoked=revoked)
