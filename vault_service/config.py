"""Settings from the environment (12-factor); required secrets raise at startup.

How to add a setting: add ONE field to `Settings` (or to `OidcSettings` for VAULT_SERVICE_OIDC_*),
a name, a type and a default. Its variable is VAULT_SERVICE_<NAME IN CAPITALS> (a
`validation_alias` names it otherwise). The type parses the text: int, float, bool (true/false,
yes/no, on/off, 1/0, in any case), `Words` (a space- or comma-separated list); `Field(ge=...)`
bounds it; typed `Secret` (or `SecretWords`) it also accepts <VARIABLE>_FILE and stays out of
reprs. A rule between settings goes in validate_settings. Then give it a row in README
"Configuration" and a line in deploy/vault-service.env.example: tests/test_config.py checks that
every setting is in the README and that the docs name no variable the loader would refuse.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENVIRONMENTS = ("development", "testing", "production")
PREFIX = "VAULT_SERVICE_"

# VAULT_SERVICE_* variables of this project that are not settings of the app, so that naming them
# is no error: read elsewhere in the package, or by the tests, the benchmark and the dev scripts.
OTHER_VARIABLES = frozenset(
    {
        "VAULT_SERVICE_VAR_DIR",  # development's files (scripts/dev.py), the default database's
        "VAULT_SERVICE_BOOTSTRAP_TOKEN",  # bootstrap-vault's admin token (cli.py)
        "VAULT_SERVICE_FAILPOINTS",  # crash points the fault tests arm (failpoints.py)
        "VAULT_SERVICE_TEST_DATABASE_URL",  # the test suite's PostgreSQL
        "VAULT_SERVICE_BENCH_DATABASE_URL",  # the benchmark's PostgreSQL
        "VAULT_SERVICE_SCREENSHOTS",  # where browser tests leave their screenshots
    }
)


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


# The types a field may have. Each parses the variable's text; a value the code passes (tests,
# overrides) is already parsed and kept as it is. A ValueError's words follow the variable's name
# in the problem reported ("<variable> must be ..."), so they never quote the value.


def _split(raw: str) -> tuple[str, ...]:
    """Several values, separated by spaces or commas, so secrets can be rotated without downtime."""
    return tuple(part for part in raw.replace(",", " ").split() if part)


def _words(value: object) -> object:
    return _split(value) if isinstance(value, str) else value


def _whitespace_words(value: object) -> object:
    # A vendor's webhook secret may hold a comma; none holds a space.
    return tuple(value.split()) if isinstance(value, str) else value


def _webhook_key(raw: str) -> bytes:
    """Decode a Standard Webhooks secret (`whsec_<base64>`) into the HMAC key."""
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be whsec_<base64>") from None
    if len(key) < 24:
        raise ValueError("must carry at least 24 bytes of key")
    return key


def _webhook_keys(value: object) -> object:
    return tuple(_webhook_key(part) for part in _split(value)) if isinstance(value, str) else value


def _statuses(value: object) -> object:
    if not isinstance(value, str):
        return value
    found = frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    return found or None


def _url(value: str) -> str:
    return value.strip().rstrip("/")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _networks(value: tuple[str, ...]) -> tuple[str, ...]:
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError("must list CIDRs such as 10.0.0.0/8") from None
    return value


def _rate_limit(value: str) -> str:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError("must be a rate limit such as 10/minute") from None
    return value


def _rate_limit_storage(value: str) -> str:
    # The registry of storage schemes: public in use, but not listed in the module's __all__.
    from limits.storage import SCHEMES  # type: ignore[attr-defined]

    scheme = value.partition("://")[0]
    if scheme not in SCHEMES or scheme.startswith("async+"):
        raise ValueError("must be memory:// or a storage URL such as redis://host:6379/0")
    return value


def _role_map(value: object) -> object:
    if not isinstance(value, str):
        return value
    pairs = []
    for pair in _split(value):
        group, _, role = pair.partition("=")
        if not group or role not in ("agent", "admin"):
            raise ValueError("must be group=agent or group=admin pairs")
        pairs.append((group, role))
    return tuple(pairs)


def _domains(value: object) -> object:
    if not isinstance(value, str):
        return value
    return tuple(domain.lower().lstrip("@") for domain in _split(value))


class _Secret:
    """Marks a secret: <VARIABLE>_FILE may name a file holding it, and no repr shows it."""


SECRET = _Secret()


class _Fixed:
    """Marks a field the environment does not set: a constant of the design (the webhook
    tolerance of the contract, the worker's pace) that tests may override in code."""


FIXED = _Fixed()

Text = Annotated[str, AfterValidator(str.strip)]
Url = Annotated[str, AfterValidator(_url)]
Seconds = Annotated[int, Field(ge=1)]
# A timeout may be fractional (0.5 s); a zero or negative one would fail every call.
Timeout = Annotated[float, Field(gt=0)]
Words = Annotated[tuple[str, ...], BeforeValidator(_words)]
RateLimit = Annotated[str, AfterValidator(_rate_limit)]
Secret = Annotated[str, Field(repr=False), SECRET]
SecretWords = Annotated[tuple[str, ...], BeforeValidator(_words), Field(repr=False), SECRET]
WebhookKeys = Annotated[
    tuple[bytes, ...], BeforeValidator(_webhook_keys), Field(repr=False), SECRET
]
Statuses = Annotated[frozenset[str] | None, BeforeValidator(_statuses)]


class _Section(BaseSettings):
    """What every group of settings shares."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_prefix_target="all",  # an alias names the variable after the prefix
        env_ignore_empty=True,  # VAR= means "the default", as it always has
        enable_decoding=False,  # a list is words (see Words), never JSON
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the code passes: load_settings alone reads the environment (after checking
        # its names and _FILE variants), so Settings(...) in the code and tests is what it says.
        return (init_settings,)


class ProviderSettings(_Section):
    """One inbound provider's VAULT_SERVICE_<NAME>_* settings; None means its own default."""

    # WEBHOOK_SECRET: several, whitespace-separated, for rotation.
    secrets: Annotated[
        tuple[str, ...], BeforeValidator(_whitespace_words), Field(repr=False), SECRET
    ] = Field(default=(), validation_alias="WEBHOOK_SECRET")
    # CLOSE_STATUSES / REOPEN_STATUSES: comma-separated, compared case-insensitively (some
    # vendors' statuses hold spaces: Zammad's "pending close").
    close_statuses: Statuses = None
    reopen_statuses: Statuses = None
    # TIMESTAMP_TOLERANCE_SECONDS: how old a signed timestamp may be (schemes that sign one).
    tolerance_seconds: int | None = Field(
        default=None, ge=1, validation_alias="TIMESTAMP_TOLERANCE_SECONDS"
    )


class OidcSettings(_Section):
    """Agents' sign-in through an OpenID Connect provider (VAULT_SERVICE_OIDC_*); README "Signing
    in with an identity provider". An empty issuer turns it off."""

    model_config = SettingsConfigDict(env_prefix=PREFIX + "OIDC_")

    issuer: Url = ""
    client_id: Secret = ""
    client_secret: Secret = ""
    # The button's words: "Sign in with <provider_name>".
    provider_name: Text = "your identity provider"
    scopes: Words = ("openid", "email", "profile")
    # Who may sign in: an email domain listed here (the email must be verified unless the
    # provider sends no email_verified at all) and/or a group mapped to a role.
    allowed_domains: Annotated[tuple[str, ...], BeforeValidator(_domains)] = ()
    groups_claim: Text = ""
    role_map: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_role_map)] = ()
    # "jit": a permitted identity seen first becomes an agent; "existing": an admin binds it first.
    provisioning: Annotated[
        Literal["jit", "existing"], BeforeValidator(lambda v: v.strip().lower())
    ] = "existing"
    # An `acr` value the provider sends for a login with a second factor (also `amr` mfa/otp/hwk).
    mfa_acr: Text = ""
    timeout_seconds: Timeout = 10.0

    @property
    def enabled(self) -> bool:
        """Whether OIDC sign-in is configured."""
        return bool(self.issuer)


DEFAULT_VAULT_ADDR = "http://127.0.0.1:8200"


class Settings(_Section):
    """Every knob the service reads, with its default; see README "Configuration"."""

    env: Literal["development", "testing", "production"] = "production"
    # May carry the database's password: a secret.
    database_url: Secret = "sqlite:///var/vault_service.db"
    secret_key: Secret = ""
    ticket_api_tokens: SecretWords = Field(default=(), validation_alias="TICKET_API_TOKEN")
    # Standard Webhooks keys; none configured disables that endpoint (404), for a ticket system
    # that sends its own vendor's webhooks instead.
    webhook_secrets: WebhookKeys = Field(default=(), validation_alias="WEBHOOK_SECRET")
    public_url: Url = "http://127.0.0.1:8000"

    # Vault's own variable, as its CLI reads it: the one setting without our prefix (_read).
    vault_addr: str = Field(default=DEFAULT_VAULT_ADDR, validation_alias="VAULT_ADDR")
    vault_token: Secret = ""
    # Not a secret by Vault's book, but often delivered as a file next to the secret id.
    vault_role_id: Secret = ""
    vault_secret_id: Secret = ""
    vault_timeout_seconds: Timeout = 5.0
    vault_ca_cert: str = ""
    # This deployment's name in Vault (VAULT_SERVICE_DEPLOYMENT_ID): its KV folder and lease-key
    # suffix, so deployments sharing one OpenBao never see (or sweep) each other's material.
    # "default" outside production; production must choose one (see SECURITY.md).
    deployment_id: Text = "default"

    link_ttl_seconds: Seconds = 72 * 3600
    link_max_ttl_seconds: Annotated[Seconds, FIXED] = 30 * 24 * 3600
    grant_min_seconds: Seconds = 60
    grant_default_seconds: Seconds = 30 * 60
    grant_max_seconds: Seconds = 4 * 3600
    # Agent sessions and authentication (seconds): idle and absolute session lifetimes, how recent
    # the last password+TOTP (or TOTP re-prompt) must be for an access request or a reveal, and how
    # long an account stays locked after too many failed logins.
    session_idle_seconds: Seconds = 15 * 60
    session_absolute_seconds: Seconds = 8 * 3600
    reauth_seconds: Seconds = 5 * 60
    lockout_seconds: Seconds = 15 * 60
    max_retention_seconds: Seconds = 30 * 24 * 3600
    # How long a customer's status page keeps answering after its credentials were purged
    # (showing the receipt); after that it answers like an unknown token.
    status_page_retention_seconds: Seconds = 30 * 24 * 3600
    max_request_bytes: Seconds = 64 * 1024
    # Rate limits (Flask-Limiter strings, per client address); see vault_service/ratelimits.py.
    # The storage URL may carry Redis's password: a secret.
    ratelimit_storage_url: Annotated[Secret, AfterValidator(_rate_limit_storage)] = "memory://"
    ratelimit_login: RateLimit = "10/minute"
    ratelimit_link: RateLimit = "30/minute"
    ratelimit_api: RateLimit = "300/minute"
    ratelimit_webhook: RateLimit = "600/minute"
    # Reverse proxies in front of the app whose X-Forwarded-For is believed; 0 ignores the header.
    trusted_proxies: Annotated[int, Field(ge=0)] = 0
    webhook_tolerance_seconds: Annotated[Seconds, FIXED] = 300

    worker_poll_seconds: Annotated[Timeout, FIXED] = 2.0
    purge_backoff_max_seconds: Annotated[Seconds, FIXED] = 300
    embedded_worker: bool = False
    log_level: Annotated[str, AfterValidator(_log_level)] = "INFO"
    # Who may read GET /metrics (CIDRs or addresses); everyone else gets a 404.
    metrics_allow: Annotated[Words, AfterValidator(_networks)] = ("127.0.0.0/8", "::1")
    vault_client_cert: str = ""
    vault_client_key: str = ""

    # Outbound events (services/events.py): the ticket system's receiver, unset = no events; one
    # Standard Webhooks signature per secret on every delivery, so the receiver can rotate.
    events_url: Text = ""
    events_secrets: WebhookKeys = Field(default=(), validation_alias="EVENTS_SECRET")
    # A receiver that hangs holds one worker this long per attempt, never a request.
    events_timeout_seconds: Timeout = 10.0
    events_backoff_max_seconds: Seconds = 600
    # Native help-desk webhooks and write-back (services/providers/, services/connectors/).
    # Each registered provider's VAULT_SERVICE_<NAME>_* variables, read by one generic reader
    # (read_provider_settings), so a new vendor is one module and its tests.
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    zendesk_subdomain: str = ""
    zendesk_email: str = ""
    zendesk_api_token: Secret = ""
    # Defaults to https://<subdomain>.zendesk.com; set for a proxy (or the tests' local fake).
    zendesk_api_url: Url = ""
    zammad_url: Url = ""
    zammad_token: Secret = ""
    helpdesk_timeout_seconds: Timeout = 10.0

    # What the customer's pages show of the organisation asking for credentials (a page asking for
    # a password must say whose it is): name, logo (a local image, served same-origin so the CSP
    # stays 'self'), support contact and privacy-policy URL. Empty hides each one.
    brand_name: Text = ""
    brand_logo: Text = ""
    support_contact: Text = ""
    privacy_url: Text = ""

    # Sign-in through an identity provider; VAULT_SERVICE_LOCAL_LOGIN=off then refuses the
    # password form to everyone but the break-glass admins named in BREAK_GLASS_ADMINS.
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    local_login: bool = True
    break_glass_admins: Annotated[tuple[str, ...], BeforeValidator(_domains)] = ()

    # Four-eyes approval (services/approvals.py): "required" turns an agent's access request into
    # a pending one that another agent with the admin role approves (only then is the grant token
    # minted in Vault) or denies; unapproved, it lapses after access_request_ttl_seconds.
    access_approval: Annotated[str, AfterValidator(lambda value: value.strip().lower())] = "none"
    access_request_ttl_seconds: Annotated[int, Field(ge=60)] = 30 * 60

    @property
    def approval_required(self) -> bool:
        """Whether an access request waits for an admin's approval."""
        return self.access_approval == "required"

    @property
    def vault_addresses(self) -> list[str]:
        """VAULT_ADDR may name several nodes of one cluster, comma- or space-separated."""
        return [address.rstrip("/") for address in _split(self.vault_addr)] or [DEFAULT_VAULT_ADDR]

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


# The sections read from the environment besides Settings itself, by the field that holds them.
_SECTIONS: dict[str, type[_Section]] = {"oidc": OidcSettings}
_NOT_VARIABLES = frozenset({"providers", *_SECTIONS})  # filled by a family, or by a section


def _variable(section: type[_Section], name: str, prefix: str | None = None) -> str:
    """The environment variable a field is read from."""
    field = section.model_fields[name]
    if section is Settings and name == "vault_addr":
        return "VAULT_ADDR"
    alias = field.validation_alias if isinstance(field.validation_alias, str) else name
    return (prefix or section.model_config.get("env_prefix", PREFIX)) + alias.upper()


def _is_secret(field: FieldInfo) -> bool:
    return any(isinstance(marker, _Secret) for marker in field.metadata)


def _fields(section: type[_Section]) -> Iterable[tuple[str, FieldInfo]]:
    """The fields read from the environment, each from its own variable."""
    return (
        (name, field)
        for name, field in section.model_fields.items()
        if name not in _NOT_VARIABLES and not any(isinstance(m, _Fixed) for m in field.metadata)
    )


# VAULT_SERVICE_<NAME>_<SETTING> of an inbound help desk (services/providers/<name>.py). Read by
# name, not from the provider registry, so that configuration stays below the services; create_app
# refuses a <NAME> no registered provider has (providers.check_configured).
_PROVIDER_SETTING = re.compile(
    r"^VAULT_SERVICE_([A-Z0-9]+(?:_[A-Z0-9]+)*?)_"
    r"(WEBHOOK_SECRET|CLOSE_STATUSES|REOPEN_STATUSES|TIMESTAMP_TOLERANCE_SECONDS)(_FILE)?$"
)


@cache  # the fields are fixed once the module is loaded
def known_variables() -> frozenset[str]:
    """Every variable the loader reads (a secret's _FILE too), and the project's others; the
    provider family VAULT_SERVICE_<NAME>_* is matched by pattern instead (is_known_variable)."""
    names = set(OTHER_VARIABLES)
    sections: list[type[_Section]] = [Settings, *_SECTIONS.values()]
    for section in sections:
        for name, field in _fields(section):
            variable = _variable(section, name)
            names.add(variable)
            if _is_secret(field):
                names.add(variable + "_FILE")
    return frozenset(names)


def is_known_variable(name: str) -> bool:
    """Whether a VAULT_SERVICE_* name means something here (a setting, a provider's, or other)."""
    return name in known_variables() or _PROVIDER_SETTING.match(name) is not None


def _check_names(environ: Mapping[str, str]) -> None:
    """A misspelt variable is an error: silently ignored, it would leave its default in force."""
    # Compared without the prefix they share, so the part that differs decides (and
    # our prefixed twin of VAULT_ADDR finds VAULT_ADDR).
    known = {name.removeprefix(PREFIX): name for name in known_variables()}
    for name in sorted(environ):
        if name.startswith(PREFIX) and not is_known_variable(name):
            close = difflib.get_close_matches(name.removeprefix(PREFIX), known, n=1)
            hint = f"; did you mean {known[close[0]]}?" if close else ""
            _problem(f"{name} is not a setting of vault-service{hint}")


def _is_secret_variable(name: str) -> bool:
    match = _PROVIDER_SETTING.match(name)
    if match is not None:
        return match.group(2) == "WEBHOOK_SECRET" and not match.group(3)
    return name + "_FILE" in known_variables()


def _with_secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    """Each secret's <VARIABLE>_FILE read into <VARIABLE>: its content, the trailing newline
    dropped (a mounted Docker/Kubernetes secret). Both set is an error: which one is meant?"""
    resolved = dict(environ)
    for key, path in environ.items():
        name = key.removesuffix("_FILE")
        if name == key or not path or not _is_secret_variable(name):
            continue
        del resolved[key]
        if environ.get(name):
            _problem(f"{name} and {key} are both set: set one of them")
            continue
        try:
            resolved[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            _problem(f"{key} names a file that is not UTF-8 text")
        except OSError as error:
            # The reason, not the path's content (nor, to be safe, the path).
            _problem(f"{key} names a file that cannot be read ({error.strerror or 'error'})")
    return resolved


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (load_settings(environ))."""

    def __init__(
        self, section: type[_Section], environ: Mapping[str, str], prefix: str | None = None
    ):
        # Our variables are upper-case: a lower-case twin is someone else's, never read.
        self._environ = {k.lower(): v for k, v in environ.items() if k.isupper()}
        super().__init__(section, env_prefix=prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k: v for k, v in self._environ.items() if v != ""}


def _read(
    section: type[_Section], environ: Mapping[str, str], prefix: str | None = None
) -> dict[str, Any]:
    """A section's variables found in the environment (pydantic-settings reads them), by field
    name, still text."""
    found = _EnvironmentSource(section, environ, prefix)()
    values = {}
    for name, field in _fields(section):
        alias = field.validation_alias
        if isinstance(alias, str) and alias in found:
            values[name] = found[alias]
        elif name in found:
            values[name] = found[name]
    if section is Settings:
        # VAULT_ADDR has no prefix (what the source read is our prefixed twin: refused by name).
        values.pop("vault_addr", None)
        if environ.get("VAULT_ADDR"):
            values["vault_addr"] = environ["VAULT_ADDR"]
    return values


def _provider_values(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    names = sorted(
        {match.group(1) for key in environ if (match := _PROVIDER_SETTING.match(key)) is not None}
    )
    return {
        upper.lower().replace("_", "-"): _read(ProviderSettings, environ, f"{PREFIX}{upper}_")
        for upper in names
    }


def read_provider_settings(environ: Mapping[str, str]) -> dict[str, ProviderSettings]:
    """VAULT_SERVICE_<NAME>_{WEBHOOK_SECRET,CLOSE_STATUSES,REOPEN_STATUSES,
    TIMESTAMP_TOLERANCE_SECONDS} for every help desk named in the environment (Standard Webhooks
    keeps its own VAULT_SERVICE_WEBHOOK_SECRET, which has no <NAME>)."""
    found = _provider_values(environ)
    return {name: ProviderSettings.model_validate(values) for name, values in found.items()}


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
    unknown = set(overrides) - set(Settings.model_fields)
    if unknown:
        _problem(f"unknown settings: {', '.join(sorted(unknown))}")
        return None
    _check_names(environ)
    environ = _with_secret_files(environ)
    values: dict[str, Any] = _read(Settings, environ)
    values.update({field: _read(section, environ) for field, section in _SECTIONS.items()})
    values["providers"] = _provider_values(environ)
    values.setdefault("database_url", _default_database_url(environ))
    if values.get("env", "production") not in ("development", "testing"):
        values.setdefault("deployment_id", "")  # production must choose one
    values.update(overrides)
    settings = _validate(values)
    if settings is not None:
        validate_settings(settings)
    return settings


def _validate(values: dict[str, Any]) -> Settings | None:
    """Settings from the values; each value refused is a problem naming its variable, and the rest
    is then judged with the defaults in their place (a bad VAULT_SERVICE_ENV: as production)."""
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        rest = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
        for item in error.errors(include_url=False, include_input=False):
            _problem(f"{_variable_at(item['loc'])} {_wording(item)}")
            _drop(rest, item["loc"])
    try:
        return Settings.model_validate(rest)
    except ValidationError:
        return None  # the problems above are the ones to fix first


def _drop(values: dict[str, Any], loc: tuple[int | str, ...]) -> None:
    node = values
    for depth, key in enumerate(loc):
        if key not in node:
            return
        if depth + 1 < len(loc) and isinstance(node[key], dict):
            node[key] = node = dict(node[key])
            continue
        del node[key]
        return


def _variable_at(loc: tuple[int | str, ...]) -> str:
    """The variable a validation error's location points at."""
    head = str(loc[0])
    if head in _SECTIONS and len(loc) > 1:
        return _variable(_SECTIONS[head], str(loc[1]))
    if head == "providers" and len(loc) > 2:
        prefix = f"{PREFIX}{str(loc[1]).upper().replace('-', '_')}_"
        return _variable(ProviderSettings, str(loc[2]), prefix)
    return _variable(Settings, head) if head in Settings.model_fields else head


# Pydantic's words for a refused value, said as the operator reads them (never with the value).
_WORDING = {
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false (also yes/no, on/off, 1/0)",
}


def _wording(item: Any) -> str:
    context = item.get("ctx") or {}
    if item["type"] == "value_error":
        return str(context["error"])
    if item["type"] == "greater_than_equal":
        return f"must be at least {context['ge']:g}"
    if item["type"] == "greater_than":
        return f"must be more than {context['gt']:g}"
    if item["type"] == "literal_error":
        return f"must be {context['expected']}"
    return _WORDING.get(item["type"], str(item["msg"]).lower())


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
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", settings.deployment_id):
        # The same pattern as vault/layout.py's DEPLOYMENT_ID_PATTERN (config imports no vault).
        _problem(
            "VAULT_SERVICE_DEPLOYMENT_ID must be set"
            + (" in production" if settings.is_production else "")
            + ": 1-32 of a-z, 0-9 and '-', starting with a letter or digit, one per database"
        )
    if bool(settings.vault_client_cert) != bool(settings.vault_client_key):
        _problem("VAULT_SERVICE_VAULT_CLIENT_CERT and _KEY go together: set both or neither")
    validate_oidc(settings.oidc)
    validate_events(settings)
    validate_approval(settings)
    validate_branding(settings)


# The values of VAULT_SERVICE_ACCESS_APPROVAL.
ACCESS_APPROVAL_MODES = ("none", "required")


def validate_approval(settings: Settings) -> None:
    """Four-eyes approval is on or off: a misspelt value must not silently mean off."""
    if settings.access_approval not in ACCESS_APPROVAL_MODES:
        _problem("VAULT_SERVICE_ACCESS_APPROVAL must be none or required")


def validate_oidc(oidc: OidcSettings) -> None:
    """A half-configured identity provider stops the start."""
    if not oidc.enabled:
        return
    prefix = OidcSettings.model_config.get("env_prefix", "")
    if not oidc.client_id:
        _problem(f"{prefix}CLIENT_ID (or {prefix}CLIENT_ID_FILE) is required with the issuer")
    if not oidc.allowed_domains and not oidc.role_map:
        # Otherwise anyone with an account at the provider (a Google account!) could sign in.
        _problem(f"{prefix}ALLOWED_DOMAINS or {prefix}ROLE_MAP must say who may sign in")
    if oidc.role_map and not oidc.groups_claim:
        _problem(f"{prefix}ROLE_MAP needs {prefix}GROUPS_CLAIM")


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
        _problem("VAULT_SERVICE_PRIVACY_URL must be an https:// URL")
    for name, value, limit in (
        ("VAULT_SERVICE_BRAND_NAME", settings.brand_name, 100),
        ("VAULT_SERVICE_SUPPORT_CONTACT", settings.support_contact, 200),
        ("VAULT_SERVICE_PRIVACY_URL", settings.privacy_url, 2048),
    ):
        if len(value) > limit or any(ord(ch) < 32 for ch in value):
            _problem(f"{name} must be one line of at most {limit} characters")
    if settings.brand_logo:
        logo = Path(settings.brand_logo)
        if logo.suffix.lower() not in LOGO_TYPES:
            _problem(
                "VAULT_SERVICE_BRAND_LOGO must be a " + ", ".join(sorted(LOGO_TYPES)) + " file"
            )
        elif not logo.is_file() or logo.stat().st_size > MAX_LOGO_BYTES:
            _problem(
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
