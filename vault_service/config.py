"""Settings from the environment (12-factor); required secrets raise at startup."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

ENVIRONMENTS = ("development", "testing", "production")


class ConfigError(RuntimeError):
    """The configuration cannot be used; each problem names a setting, never its value. The
    message is the problems, one per line (`vault-service` prints each on its own line)."""

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# While load_settings runs, every problem is collected here instead of raised, so that an
# operator sees them all at once rather than one per restart.
_collected: ContextVar[list[str] | None] = ContextVar("config_problems", default=None)


def _problem(message: str) -> None:
    """Record a configuration problem (or raise it, outside load_settings)."""
    problems = _collected.get()
    if problems is None:
        raise ConfigError(message)
    problems.append(message)


@contextmanager
def _collecting() -> Iterator[list[str]]:
    problems: list[str] = []
    token = _collected.set(problems)
    try:
        yield problems
    finally:
        _collected.reset(token)


@dataclass(frozen=True)
class ProviderSettings:
    """One inbound provider's VAULT_SERVICE_<NAME>_* settings; None means its own default."""

    # WEBHOOK_SECRET: several, whitespace-separated, for rotation (a vendor secret may hold a
    # comma, none holds a space).
    secrets: tuple[str, ...] = ()
    # CLOSE_STATUSES / REOPEN_STATUSES: comma-separated, compared case-insensitively (some
    # vendors' statuses hold spaces: Zammad's "pending close").
    close_statuses: frozenset[str] | None = None
    reopen_statuses: frozenset[str] | None = None
    # TIMESTAMP_TOLERANCE_SECONDS: how old a signed timestamp may be (schemes that sign one).
    tolerance_seconds: int | None = None


@dataclass(frozen=True)
class OidcSettings:
    """Agents' sign-in through an OpenID Connect provider (VAULT_SERVICE_OIDC_*); README "Signing
    in with an identity provider". An empty issuer turns it off."""

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    # The button's words: "Sign in with <provider_name>".
    provider_name: str = "your identity provider"
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    # Who may sign in: an email domain listed here (the email must be verified unless the
    # provider sends no email_verified at all) and/or a group mapped to a role.
    allowed_domains: tuple[str, ...] = ()
    groups_claim: str = ""
    role_map: tuple[tuple[str, str], ...] = ()
    # "jit": a permitted identity seen first becomes an agent; "existing": an admin binds it first.
    provisioning: str = "existing"
    # An `acr` value the provider sends for a login with a second factor (also `amr` mfa/otp/hwk).
    mfa_acr: str = ""
    timeout_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        """Whether OIDC sign-in is configured."""
        return bool(self.issuer)


@dataclass(frozen=True)
class Settings:
    """Every knob the service reads, with its default; see README "Configuration"."""

    env: str = "production"
    database_url: str = "sqlite:///var/vault_service.db"
    secret_key: str = ""
    ticket_api_tokens: tuple[str, ...] = ()
    # Standard Webhooks keys; none configured disables that endpoint (404), for a ticket system
    # that sends its own vendor's webhooks instead.
    webhook_secrets: tuple[bytes, ...] = ()
    public_url: str = "http://127.0.0.1:8000"

    vault_addr: str = "http://127.0.0.1:8200"
    vault_token: str = ""
    vault_role_id: str = ""
    vault_secret_id: str = ""
    vault_timeout_seconds: float = 5.0
    vault_ca_cert: str = ""
    # This deployment's name in Vault (VAULT_SERVICE_DEPLOYMENT_ID): its KV folder and lease-key
    # suffix, so deployments sharing one OpenBao never see (or sweep) each other's material.
    # "default" outside production; production must choose one (see SECURITY.md).
    deployment_id: str = "default"

    link_ttl_seconds: int = 72 * 3600
    link_max_ttl_seconds: int = 30 * 24 * 3600
    grant_min_seconds: int = 60
    grant_default_seconds: int = 30 * 60
    grant_max_seconds: int = 4 * 3600
    # Agent sessions and authentication (seconds): idle and absolute session lifetimes, how recent
    # the last password+TOTP (or TOTP re-prompt) must be for an access request or a reveal, and how
    # long an account stays locked after too many failed logins.
    session_idle_seconds: int = 15 * 60
    session_absolute_seconds: int = 8 * 3600
    reauth_seconds: int = 5 * 60
    lockout_seconds: int = 15 * 60
    max_retention_seconds: int = 30 * 24 * 3600
    # How long a customer's status page keeps answering after its credentials were purged
    # (showing the receipt); after that it answers like an unknown token.
    status_page_retention_seconds: int = 30 * 24 * 3600
    max_request_bytes: int = 64 * 1024
    # Rate limits (Flask-Limiter strings, per client address); see vault_service/ratelimits.py.
    ratelimit_storage_url: str = "memory://"
    ratelimit_login: str = "10/minute"
    ratelimit_link: str = "30/minute"
    ratelimit_api: str = "300/minute"
    ratelimit_webhook: str = "600/minute"
    # Reverse proxies in front of the app whose X-Forwarded-For is believed; 0 ignores the header.
    trusted_proxies: int = 0
    webhook_tolerance_seconds: int = 300

    worker_poll_seconds: float = 2.0
    purge_backoff_max_seconds: int = 300
    embedded_worker: bool = False
    log_level: str = "INFO"
    # Who may read GET /metrics (CIDRs or addresses); everyone else gets a 404.
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1")
    vault_client_cert: str = ""
    vault_client_key: str = ""

    # Outbound events (services/events.py): the ticket system's receiver, unset = no events; one
    # Standard Webhooks signature per secret on every delivery, so the receiver can rotate.
    events_url: str = ""
    events_secrets: tuple[bytes, ...] = ()
    # A receiver that hangs holds one worker this long per attempt, never a request.
    events_timeout_seconds: float = 10.0
    events_backoff_max_seconds: int = 600
    # Native help-desk webhooks and write-back (services/providers/, services/connectors/).
    # Each registered provider's VAULT_SERVICE_<NAME>_* variables, read by one generic reader
    # (read_provider_settings), so a new vendor is one module and its tests.
    providers: dict[str, ProviderSettings] = field(default_factory=dict)
    zendesk_subdomain: str = ""
    zendesk_email: str = ""
    zendesk_api_token: str = ""
    # Defaults to https://<subdomain>.zendesk.com; set for a proxy (or the tests' local fake).
    zendesk_api_url: str = ""
    zammad_url: str = ""
    zammad_token: str = ""
    helpdesk_timeout_seconds: float = 10.0

    # What the customer's pages show of the organisation asking for credentials (a page asking for
    # a password must say whose it is): name, logo (a local image, served same-origin so the CSP
    # stays 'self'), support contact and privacy-policy URL. Empty hides each one.
    brand_name: str = ""
    brand_logo: str = ""
    support_contact: str = ""
    privacy_url: str = ""

    # Sign-in through an identity provider; VAULT_SERVICE_LOCAL_LOGIN=off then refuses the
    # password form to everyone but the break-glass admins named in BREAK_GLASS_ADMINS.
    oidc: OidcSettings = field(default_factory=OidcSettings)
    local_login: bool = True
    break_glass_admins: tuple[str, ...] = ()

    # Four-eyes approval (services/approvals.py): "required" turns an agent's access request into
    # a pending one that another agent with the admin role approves (only then is the grant token
    # minted in Vault) or denies; unapproved, it lapses after access_request_ttl_seconds.
    access_approval: str = "none"
    access_request_ttl_seconds: int = 30 * 60

    @property
    def approval_required(self) -> bool:
        """Whether an access request waits for an admin's approval."""
        return self.access_approval == "required"

    @property
    def vault_addresses(self) -> list[str]:
        """VAULT_ADDR may name several nodes of one cluster, comma- or space-separated."""
        return [address.rstrip("/") for address in _split(self.vault_addr)] or [Settings.vault_addr]

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """VAULT_SERVICE_SECRET_KEY may hold several keys (space- or comma-separated) for a
        rotation without a reset: the first signs and encrypts, every one verifies and decrypts."""
        return _split(self.secret_key)

    @property
    def signing_key(self) -> str:
        """The key everything new is signed, hashed and encrypted under: the first of the list."""
        keys = self.secret_keys
        return keys[0] if keys else ""

    @property
    def is_production(self) -> bool:
        """Production refuses missing secrets and root tokens."""
        return self.env == "production"


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        _problem(f"{name} must be an integer")
        return default
    if value < minimum:
        _problem(f"{name} must be at least {minimum}")
        return default
    return value


def _split(raw: str) -> tuple[str, ...]:
    """Several values, separated by spaces or commas, so secrets can be rotated without downtime."""
    return tuple(part for part in raw.replace(",", " ").split() if part)


def parse_webhook_secret(raw: str, name: str = "VAULT_SERVICE_WEBHOOK_SECRET") -> bytes:
    """Decode a Standard Webhooks secret (`whsec_<base64>`) into the HMAC key."""
    encoded = raw.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        _problem(f"{name} must be whsec_<base64>")
        return b""
    if len(key) < 24:
        _problem(f"{name} must carry at least 24 bytes of key")
    return key


def _statuses(raw: str | None) -> frozenset[str] | None:
    if raw is None or not raw.strip():
        return None
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


# VAULT_SERVICE_<NAME>_<SETTING> of an inbound help desk (services/providers/<name>.py). Read by
# name, not from the provider registry, so that configuration stays below the services; create_app
# refuses a <NAME> no registered provider has (providers.check_configured).
_PROVIDER_SETTING = re.compile(
    r"^VAULT_SERVICE_([A-Z0-9]+(?:_[A-Z0-9]+)*?)_"
    r"(WEBHOOK_SECRET|CLOSE_STATUSES|REOPEN_STATUSES|TIMESTAMP_TOLERANCE_SECONDS)$"
)


def read_provider_settings(environ: Mapping[str, str]) -> dict[str, ProviderSettings]:
    """VAULT_SERVICE_<NAME>_{WEBHOOK_SECRET,CLOSE_STATUSES,REOPEN_STATUSES,
    TIMESTAMP_TOLERANCE_SECONDS} for every help desk named in the environment (Standard Webhooks
    keeps its own VAULT_SERVICE_WEBHOOK_SECRET, which has no <NAME>)."""
    names = sorted(
        {match.group(1) for key in environ if (match := _PROVIDER_SETTING.match(key)) is not None}
    )
    found = {}
    for upper in names:
        prefix = f"VAULT_SERVICE_{upper}_"
        found[upper.lower().replace("_", "-")] = ProviderSettings(
            secrets=tuple(environ.get(prefix + "WEBHOOK_SECRET", "").split()),
            close_statuses=_statuses(environ.get(prefix + "CLOSE_STATUSES")),
            reopen_statuses=_statuses(environ.get(prefix + "REOPEN_STATUSES")),
            tolerance_seconds=(
                _int(environ, prefix + "TIMESTAMP_TOLERANCE_SECONDS", 0)
                if environ.get(prefix + "TIMESTAMP_TOLERANCE_SECONDS")
                else None
            ),
        )
    return found


def _secret_or_file(environ: Mapping[str, str], name: str) -> str:
    """NAME, or the content of the file NAME_FILE names (a mounted secret), stripped."""
    path = environ.get(name + "_FILE", "").strip()
    if not path:
        return environ.get(name, "").strip()
    try:
        return Path(path).read_text().strip()
    except OSError:
        _problem(f"{name}_FILE names a file that cannot be read")
        return ""


def read_oidc_settings(environ: Mapping[str, str]) -> OidcSettings:
    """VAULT_SERVICE_OIDC_*; checked here so that a half-configured provider stops the start."""
    prefix = "VAULT_SERVICE_OIDC_"
    issuer = environ.get(prefix + "ISSUER", "").strip().rstrip("/")
    role_map: list[tuple[str, str]] = []
    for pair in _split(environ.get(prefix + "ROLE_MAP", "")):
        group, _, role = pair.partition("=")
        if not group or role not in ("agent", "admin"):
            _problem(f"{prefix}ROLE_MAP must be group=agent or group=admin pairs")
            continue
        role_map.append((group, role))
    provisioning = environ.get(prefix + "PROVISIONING", "existing").strip().lower()
    if provisioning not in ("jit", "existing"):
        _problem(f"{prefix}PROVISIONING must be jit or existing")
    oidc = OidcSettings(
        issuer=issuer,
        client_id=_secret_or_file(environ, prefix + "CLIENT_ID"),
        client_secret=_secret_or_file(environ, prefix + "CLIENT_SECRET"),
        provider_name=environ.get(prefix + "PROVIDER_NAME", "").strip()
        or OidcSettings.provider_name,
        scopes=_split(environ.get(prefix + "SCOPES", "")) or OidcSettings.scopes,
        allowed_domains=tuple(
            d.lower().lstrip("@") for d in _split(environ.get(prefix + "ALLOWED_DOMAINS", ""))
        ),
        groups_claim=environ.get(prefix + "GROUPS_CLAIM", "").strip(),
        role_map=tuple(role_map),
        provisioning=provisioning,
        mfa_acr=environ.get(prefix + "MFA_ACR", "").strip(),
        timeout_seconds=float(_int(environ, prefix + "TIMEOUT_SECONDS", 10)),
    )
    if issuer:
        if not oidc.client_id:
            _problem(f"{prefix}CLIENT_ID (or {prefix}CLIENT_ID_FILE) is required with the issuer")
        if not oidc.allowed_domains and not oidc.role_map:
            # Otherwise anyone with an account at the provider (a Google account!) could sign in.
            _problem(f"{prefix}ALLOWED_DOMAINS or {prefix}ROLE_MAP must say who may sign in")
        if oidc.role_map and not oidc.groups_claim:
            _problem(f"{prefix}ROLE_MAP needs {prefix}GROUPS_CLAIM")
    return oidc


def _default_database_url(environ: Mapping[str, str]) -> str:
    # A relative sqlite path would depend on the working directory of whoever starts the process.
    var_dir = Path(environ.get("VAULT_SERVICE_VAR_DIR", "var")).resolve()
    return f"sqlite:///{var_dir / 'vault_service.db'}"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from the environment, apply overrides (tests), and validate them; every
    problem found is reported at once, in one ConfigError."""
    with _collecting() as problems:
        settings = _load_settings(os.environ if environ is None else environ, overrides)
    if problems:
        raise ConfigError(*problems)
    return settings  # type: ignore[return-value]


def _load_settings(environ: Mapping[str, str], overrides: dict[str, object]) -> Settings | None:
    env = environ.get("VAULT_SERVICE_ENV", "production")
    if env not in ENVIRONMENTS:
        _problem(f"VAULT_SERVICE_ENV must be one of {', '.join(ENVIRONMENTS)}")
        env = "production"  # judge the rest by the strictest rules

    webhook_raw = _split(environ.get("VAULT_SERVICE_WEBHOOK_SECRET", ""))
    values: dict[str, object] = {
        "env": env,
        "database_url": environ.get("VAULT_SERVICE_DATABASE_URL") or _default_database_url(environ),
        "secret_key": environ.get("VAULT_SERVICE_SECRET_KEY", ""),
        "ticket_api_tokens": _split(environ.get("VAULT_SERVICE_TICKET_API_TOKEN", "")),
        "webhook_secrets": tuple(parse_webhook_secret(s) for s in webhook_raw),
        "public_url": environ.get("VAULT_SERVICE_PUBLIC_URL", Settings.public_url).rstrip("/"),
        "vault_addr": environ.get("VAULT_ADDR", Settings.vault_addr),
        "vault_token": environ.get("VAULT_SERVICE_VAULT_TOKEN", ""),
        "vault_role_id": environ.get("VAULT_SERVICE_VAULT_ROLE_ID", ""),
        "vault_secret_id": environ.get("VAULT_SERVICE_VAULT_SECRET_ID", ""),
        "vault_ca_cert": environ.get("VAULT_SERVICE_VAULT_CA_CERT", ""),
        "deployment_id": environ.get("VAULT_SERVICE_DEPLOYMENT_ID", "").strip()
        or ("" if env == "production" else Settings.deployment_id),
        "vault_timeout_seconds": float(
            _int(
                environ, "VAULT_SERVICE_VAULT_TIMEOUT_SECONDS", int(Settings.vault_timeout_seconds)
            )
        ),
        "link_ttl_seconds": _int(
            environ, "VAULT_SERVICE_LINK_TTL_SECONDS", Settings.link_ttl_seconds
        ),
        "grant_min_seconds": _int(
            environ, "VAULT_SERVICE_GRANT_MIN_SECONDS", Settings.grant_min_seconds
        ),
        "grant_default_seconds": _int(
            environ, "VAULT_SERVICE_GRANT_DEFAULT_SECONDS", Settings.grant_default_seconds
        ),
        "grant_max_seconds": _int(
            environ, "VAULT_SERVICE_GRANT_MAX_SECONDS", Settings.grant_max_seconds
        ),
        "session_idle_seconds": _int(
            environ, "VAULT_SERVICE_SESSION_IDLE_SECONDS", Settings.session_idle_seconds
        ),
        "session_absolute_seconds": _int(
            environ, "VAULT_SERVICE_SESSION_ABSOLUTE_SECONDS", Settings.session_absolute_seconds
        ),
        "reauth_seconds": _int(environ, "VAULT_SERVICE_REAUTH_SECONDS", Settings.reauth_seconds),
        "lockout_seconds": _int(environ, "VAULT_SERVICE_LOCKOUT_SECONDS", Settings.lockout_seconds),
        "max_retention_seconds": _int(
            environ, "VAULT_SERVICE_MAX_RETENTION_SECONDS", Settings.max_retention_seconds
        ),
        "status_page_retention_seconds": _int(
            environ,
            "VAULT_SERVICE_STATUS_PAGE_RETENTION_SECONDS",
            Settings.status_page_retention_seconds,
        ),
        "max_request_bytes": _int(
            environ, "VAULT_SERVICE_MAX_REQUEST_BYTES", Settings.max_request_bytes
        ),
        "ratelimit_storage_url": environ.get("VAULT_SERVICE_RATELIMIT_STORAGE_URL")
        or Settings.ratelimit_storage_url,
        "ratelimit_login": environ.get("VAULT_SERVICE_RATELIMIT_LOGIN") or Settings.ratelimit_login,
        "ratelimit_link": environ.get("VAULT_SERVICE_RATELIMIT_LINK") or Settings.ratelimit_link,
        "ratelimit_api": environ.get("VAULT_SERVICE_RATELIMIT_API") or Settings.ratelimit_api,
        "ratelimit_webhook": environ.get("VAULT_SERVICE_RATELIMIT_WEBHOOK")
        or Settings.ratelimit_webhook,
        "trusted_proxies": _int(
            environ, "VAULT_SERVICE_TRUSTED_PROXIES", Settings.trusted_proxies, minimum=0
        ),
        "embedded_worker": environ.get("VAULT_SERVICE_EMBEDDED_WORKER", "") in ("1", "true"),
        "log_level": environ.get("VAULT_SERVICE_LOG_LEVEL", "INFO").upper(),
        "events_url": environ.get("VAULT_SERVICE_EVENTS_URL", "").strip(),
        "events_secrets": tuple(
            parse_webhook_secret(s, "VAULT_SERVICE_EVENTS_SECRET")
            for s in _split(environ.get("VAULT_SERVICE_EVENTS_SECRET", ""))
        ),
        "events_timeout_seconds": float(
            _int(
                environ,
                "VAULT_SERVICE_EVENTS_TIMEOUT_SECONDS",
                int(Settings.events_timeout_seconds),
            )
        ),
        "events_backoff_max_seconds": _int(
            environ, "VAULT_SERVICE_EVENTS_BACKOFF_MAX_SECONDS", Settings.events_backoff_max_seconds
        ),
        "providers": read_provider_settings(environ),
        "zendesk_subdomain": environ.get("VAULT_SERVICE_ZENDESK_SUBDOMAIN", ""),
        "zendesk_email": environ.get("VAULT_SERVICE_ZENDESK_EMAIL", ""),
        "zendesk_api_token": environ.get("VAULT_SERVICE_ZENDESK_API_TOKEN", ""),
        "zendesk_api_url": environ.get("VAULT_SERVICE_ZENDESK_API_URL", "").rstrip("/"),
        "zammad_url": environ.get("VAULT_SERVICE_ZAMMAD_URL", "").rstrip("/"),
        "zammad_token": environ.get("VAULT_SERVICE_ZAMMAD_TOKEN", ""),
        "helpdesk_timeout_seconds": float(
            _int(environ, "VAULT_SERVICE_HELPDESK_TIMEOUT_SECONDS", 10)
        ),
        "metrics_allow": _split(environ.get("VAULT_SERVICE_METRICS_ALLOW", ""))
        or Settings.metrics_allow,
        "vault_client_cert": environ.get("VAULT_SERVICE_VAULT_CLIENT_CERT", ""),
        "vault_client_key": environ.get("VAULT_SERVICE_VAULT_CLIENT_KEY", ""),
        "brand_name": environ.get("VAULT_SERVICE_BRAND_NAME", "").strip(),
        "brand_logo": environ.get("VAULT_SERVICE_BRAND_LOGO", "").strip(),
        "support_contact": environ.get("VAULT_SERVICE_SUPPORT_CONTACT", "").strip(),
        "privacy_url": environ.get("VAULT_SERVICE_PRIVACY_URL", "").strip(),
        "oidc": read_oidc_settings(environ),
        "local_login": environ.get("VAULT_SERVICE_LOCAL_LOGIN", "on").strip().lower()
        not in ("off", "0", "false", "no"),
        "break_glass_admins": tuple(
            name.lower() for name in _split(environ.get("VAULT_SERVICE_BREAK_GLASS_ADMINS", ""))
        ),
        "access_approval": environ.get("VAULT_SERVICE_ACCESS_APPROVAL", "").strip().lower()
        or Settings.access_approval,
        "access_request_ttl_seconds": _int(
            environ,
            "VAULT_SERVICE_ACCESS_REQUEST_TTL_SECONDS",
            Settings.access_request_ttl_seconds,
            minimum=60,
        ),
    }
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        _problem(f"unknown settings: {', '.join(sorted(unknown))}")
        return None
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    validate_settings(settings)
    return settings


def validate_settings(settings: Settings) -> None:
    """Refuse to start with a configuration that would weaken a guarantee."""
    if not settings.local_login and not settings.oidc.enabled:
        _problem("VAULT_SERVICE_LOCAL_LOGIN=off needs VAULT_SERVICE_OIDC_ISSUER")
    missing = [
        name
        for name, present in (
            (
                "VAULT_SERVICE_SECRET_KEY",
                bool(settings.secret_keys) and all(len(k) >= 32 for k in settings.secret_keys),
            ),
            ("VAULT_SERVICE_TICKET_API_TOKEN", bool(settings.ticket_api_tokens)),
            (
                "VAULT_SERVICE_VAULT_TOKEN or VAULT_SERVICE_VAULT_ROLE_ID/SECRET_ID",
                bool(settings.vault_token or (settings.vault_role_id and settings.vault_secret_id)),
            ),
        )
        if not present
    ]
    if missing:
        _problem(
            "missing or too short: "
            + ", ".join(missing)
            + " (each secret key needs 32+ characters)"
        )
    if any(len(token) < 32 for token in settings.ticket_api_tokens):
        _problem("VAULT_SERVICE_TICKET_API_TOKEN values need at least 32 characters")
    if not settings.grant_min_seconds <= settings.grant_default_seconds:
        _problem("VAULT_SERVICE_GRANT_DEFAULT_SECONDS is below the grant minimum")
    if settings.grant_default_seconds > settings.grant_max_seconds:
        _problem("VAULT_SERVICE_GRANT_DEFAULT_SECONDS exceeds the grant maximum")
    if settings.grant_max_seconds > settings.max_retention_seconds:
        _problem("VAULT_SERVICE_GRANT_MAX_SECONDS exceeds the maximum retention")
    if settings.is_production and not settings.public_url.startswith("https://"):
        _problem("VAULT_SERVICE_PUBLIC_URL must be https:// in production")
    if settings.log_level not in logging.getLevelNamesMapping():
        _problem("VAULT_SERVICE_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    for entry in settings.metrics_allow:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            _problem("VAULT_SERVICE_METRICS_ALLOW must list CIDRs such as 10.0.0.0/8")
            break
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", settings.deployment_id):
        # The same pattern as vault/layout.py's DEPLOYMENT_ID_PATTERN (config imports no vault).
        _problem(
            "VAULT_SERVICE_DEPLOYMENT_ID must be set"
            + (" in production" if settings.is_production else "")
            + ": 1-32 of a-z, 0-9 and '-', starting with a letter or digit, one per database"
        )
    if bool(settings.vault_client_cert) != bool(settings.vault_client_key):
        _problem("VAULT_SERVICE_VAULT_CLIENT_CERT and _KEY go together: set both or neither")
    validate_events(settings)
    validate_approval(settings)
    validate_rate_limits(settings)
    validate_branding(settings)


# The image types a logo may be, with the type it is served as. An SVG is fine: shown through
# <img>, its scripts never run, and the page's CSP covers it when opened directly.
LOGO_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
MAX_LOGO_BYTES = 512 * 1024


def validate_branding(settings: Settings) -> None:
    """The branding must be what a customer can trust: an https privacy page, a local image."""
    if settings.privacy_url and not settings.privacy_url.startswith("https://"):
        raise ConfigError("VAULT_SERVICE_PRIVACY_URL must be an https:// URL")
    for name, value, limit in (
        ("VAULT_SERVICE_BRAND_NAME", settings.brand_name, 100),
        ("VAULT_SERVICE_SUPPORT_CONTACT", settings.support_contact, 200),
        ("VAULT_SERVICE_PRIVACY_URL", settings.privacy_url, 2048),
    ):
        if len(value) > limit or any(ord(ch) < 32 for ch in value):
            raise ConfigError(f"{name} must be one line of at most {limit} characters")
    if settings.brand_logo:
        logo = Path(settings.brand_logo)
        if logo.suffix.lower() not in LOGO_TYPES:
            raise ConfigError(
                "VAULT_SERVICE_BRAND_LOGO must be a " + ", ".join(sorted(LOGO_TYPES)) + " file"
            )
        if not logo.is_file() or logo.stat().st_size > MAX_LOGO_BYTES:
            raise ConfigError(
                "VAULT_SERVICE_BRAND_LOGO must name a readable file of at most "
                f"{MAX_LOGO_BYTES} bytes"
            )


def validate_events(settings: Settings) -> None:
    """An events URL must be absolute (https in production) and come with a signing secret."""
    if not settings.events_url:
        return
    url = urlsplit(settings.events_url)
    schemes = ("https",) if settings.is_production else ("https", "http")
    if url.scheme not in schemes or not url.hostname:
        _problem(
            "VAULT_SERVICE_EVENTS_URL must be an https:// URL"
            + ("" if settings.is_production else " (or http:// outside production)")
        )
    if url.username or url.password:
        # Credentials in the URL would reach logs and error messages; the signature authenticates.
        _problem("VAULT_SERVICE_EVENTS_URL must not carry a user or password")
    if not settings.events_secrets:
        # Unsigned events would let anyone who can reach the receiver forge a purge notice.
        _problem("VAULT_SERVICE_EVENTS_SECRET is required with VAULT_SERVICE_EVENTS_URL")


# The values of VAULT_SERVICE_ACCESS_APPROVAL.
ACCESS_APPROVAL_MODES = ("none", "required")


def validate_approval(settings: Settings) -> None:
    """Four-eyes approval is on or off: a misspelt value must not silently mean off."""
    if settings.access_approval not in ACCESS_APPROVAL_MODES:
        _problem("VAULT_SERVICE_ACCESS_APPROVAL must be none or required")
    if settings.access_request_ttl_seconds < 60:
        _problem("VAULT_SERVICE_ACCESS_REQUEST_TTL_SECONDS must be at least 60")


def validate_rate_limits(settings: Settings) -> None:
    """Each limit must parse, and the storage must be one the limits library can use."""
    from limits import parse_many

    # The registry of storage schemes: public in use, but not listed in the module's __all__.
    from limits.storage import SCHEMES  # type: ignore[attr-defined]

    for name in ("LOGIN", "LINK", "API", "WEBHOOK"):
        try:
            parse_many(getattr(settings, f"ratelimit_{name.lower()}"))
        except ValueError:
            _problem(f"VAULT_SERVICE_RATELIMIT_{name} must be a rate limit such as 10/minute")
    scheme = settings.ratelimit_storage_url.partition("://")[0]
    if scheme not in SCHEMES or scheme.startswith("async+"):
        _problem(
            "VAULT_SERVICE_RATELIMIT_STORAGE_URL must be memory:// or a storage URL such as "
            "redis://host:6379/0"
        )
