"""Configuration: production refuses to start with a missing or weak secret."""

from __future__ import annotations

import base64

import pytest

from vault_service.config import ConfigError, load_settings

from .helpers import PRODUCTION_ENVIRONMENT as GOOD


def test_complete_production_settings_load_with_the_documented_defaults():
    settings = load_settings(GOOD)
    assert settings.link_ttl_seconds == 72 * 3600
    assert settings.grant_default_seconds == 30 * 60
    assert settings.grant_max_seconds == 4 * 3600
    assert settings.max_retention_seconds == 30 * 24 * 3600
    assert settings.is_production


@pytest.mark.parametrize(
    "missing",
    [
        "VAULT_SERVICE_SECRET_KEY",
        "VAULT_SERVICE_TICKET_API_TOKEN",
        "VAULT_SERVICE_VAULT_SECRET_ID",
    ],
)
def test_a_missing_secret_stops_startup_and_is_named(missing):
    environ = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    assert missing.split("_SECRET_ID")[0] in str(error.value)
    for value in GOOD.values():
        assert value not in str(error.value) or len(value) < 12


def test_without_a_standard_webhooks_secret_the_service_starts_with_that_provider_disabled():
    """Only a ticket system that signs Standard Webhooks needs the secret (the endpoint is 404)."""
    environ = {k: v for k, v in GOOD.items() if k != "VAULT_SERVICE_WEBHOOK_SECRET"}
    assert load_settings(environ).webhook_secrets == ()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VAULT_SERVICE_SECRET_KEY", "short", "32+"),
        ("VAULT_SERVICE_TICKET_API_TOKEN", "short-token", "at least 32"),
        ("VAULT_SERVICE_WEBHOOK_SECRET", "whsec_not base64!", "whsec_"),
        ("VAULT_SERVICE_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"x").decode(), "24 bytes"),
        ("VAULT_SERVICE_PUBLIC_URL", "http://vault.example.test", "https"),
        ("VAULT_SERVICE_ENV", "staging", "VAULT_SERVICE_ENV"),
        ("VAULT_SERVICE_LINK_TTL_SECONDS", "soon", "integer"),
        ("VAULT_SERVICE_GRANT_MAX_SECONDS", "100", "grant"),
    ],
)
def test_weak_or_malformed_settings_are_refused(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({**GOOD, name: value})


def test_rotation_accepts_several_tokens_and_webhook_secrets():
    second = "whsec_" + base64.b64encode(b"v" * 32).decode()
    settings = load_settings(
        {
            **GOOD,
            "VAULT_SERVICE_TICKET_API_TOKEN": f"{'t' * 40} {'u' * 40}",
            "VAULT_SERVICE_WEBHOOK_SECRET": f"{GOOD['VAULT_SERVICE_WEBHOOK_SECRET']} {second}",
        }
    )
    assert len(settings.ticket_api_tokens) == 2
    assert settings.webhook_secrets == (b"w" * 32, b"v" * 32)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30 * 86400, "30 days"),
        (86400, "1 day"),
        (4 * 3600, "4 hours"),
        (3600, "1 hour"),
        (5400, "90 minutes"),
        (60, "1 minute"),
        (59, "59 seconds"),
    ],
)
def test_limits_are_worded_in_the_largest_even_unit(seconds, text):
    from vault_service.formatting import format_duration

    assert format_duration(seconds) == text


# --- the surprises of the hand-written loader (issue 16), each now a rule -------------------


@pytest.mark.parametrize("word", ["true", "True", "TRUE", "yes", "Yes", "on", "ON", "1"])
def test_a_boolean_accepts_every_usual_word_for_yes(word):
    settings = load_settings({**GOOD, "VAULT_SERVICE_EMBEDDED_WORKER": word})
    assert settings.embedded_worker is True


@pytest.mark.parametrize("word", ["false", "False", "no", "NO", "off", "Off", "0"])
def test_a_boolean_accepts_every_usual_word_for_no(word):
    assert load_settings({**GOOD, "VAULT_SERVICE_EMBEDDED_WORKER": word}).embedded_worker is False
    oidc = {
        "VAULT_SERVICE_OIDC_ISSUER": "https://idp.example.test",
        "VAULT_SERVICE_OIDC_CLIENT_ID": "vault-service",
        "VAULT_SERVICE_OIDC_ALLOWED_DOMAINS": "example.test",
    }
    assert load_settings({**GOOD, **oidc, "VAULT_SERVICE_LOCAL_LOGIN": word}).local_login is False


@pytest.mark.parametrize("name", ["VAULT_SERVICE_EMBEDDED_WORKER", "VAULT_SERVICE_LOCAL_LOGIN"])
def test_a_boolean_that_is_no_such_word_is_refused_by_name(name):
    with pytest.raises(ConfigError) as error:
        load_settings({**GOOD, name: "maybe"})
    assert error.value.problems == [f"{name} must be true or false (also yes/no, on/off, 1/0)"]


@pytest.mark.parametrize(
    ("name", "attribute"),
    [
        ("VAULT_SERVICE_VAULT_TIMEOUT_SECONDS", "vault_timeout_seconds"),
        ("VAULT_SERVICE_EVENTS_TIMEOUT_SECONDS", "events_timeout_seconds"),
        ("VAULT_SERVICE_HELPDESK_TIMEOUT_SECONDS", "helpdesk_timeout_seconds"),
    ],
)
def test_a_timeout_may_be_fractional(name, attribute):
    assert getattr(load_settings({**GOOD, name: "0.5"}), attribute) == 0.5
    assert (
        load_settings({**GOOD, "VAULT_SERVICE_OIDC_TIMEOUT_SECONDS": "2.5"}).oidc.timeout_seconds
        == 2.5
    )


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_timeout_must_be_a_positive_number(value):
    with pytest.raises(ConfigError, match="^VAULT_SERVICE_VAULT_TIMEOUT_SECONDS must be"):
        load_settings({**GOOD, "VAULT_SERVICE_VAULT_TIMEOUT_SECONDS": value})


@pytest.mark.parametrize(
    ("misspelt", "meant"),
    [
        ("VAULT_SERVICE_SECRET_KYE", "VAULT_SERVICE_SECRET_KEY"),
        ("VAULT_SERVICE_TICKET_API_TOKENS", "VAULT_SERVICE_TICKET_API_TOKEN"),
        ("VAULT_SERVICE_OIDC_CLIENTID", "VAULT_SERVICE_OIDC_CLIENT_ID"),
        ("VAULT_SERVICE_VAULT_ADDR", "VAULT_ADDR"),
        ("VAULT_SERVICE_GRANT_MAX_SECOND", "VAULT_SERVICE_GRANT_MAX_SECONDS"),
    ],
)
def test_a_misspelt_variable_is_an_error_that_suggests_the_name_meant(misspelt, meant):
    with pytest.raises(ConfigError) as error:
        load_settings({**GOOD, misspelt: "a value"})
    assert error.value.problems == [
        f"{misspelt} is not a setting of vault-service; did you mean {meant}?"
    ]


def test_the_project_variables_that_are_not_settings_and_help_desks_are_no_error():
    environ = {
        **GOOD,
        "VAULT_SERVICE_TEST_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/x",
        "VAULT_SERVICE_BENCH_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1/y",
        "VAULT_SERVICE_SCREENSHOTS": "screenshots",
        "VAULT_SERVICE_FAILPOINTS": "",
        "VAULT_SERVICE_BOOTSTRAP_TOKEN": "",
        "VAULT_SERVICE_VAR_DIR": "var",
        # A help desk's settings are a family read by pattern (create_app checks the <NAME>).
        "VAULT_SERVICE_ZAMMAD_WEBHOOK_SECRET": "zammad-hook-secret",
        "VAULT_SERVICE_ZAMMAD_CLOSE_STATUSES": "closed, Pending Close",
        "VAULT_SERVICE_GLPI_TIMESTAMP_TOLERANCE_SECONDS": "60",
        # Not ours, and lower-case twins of ours are someone else's: never read, never an error.
        "VAULT_TOKEN": "hvs.not-ours",
        "vault_service_secret_key": "short",
    }
    settings = load_settings(environ)
    assert settings.providers["zammad"].close_statuses == frozenset({"closed", "pending close"})
    assert settings.providers["glpi"].tolerance_seconds == 60
    assert settings.secret_key == GOOD["VAULT_SERVICE_SECRET_KEY"]


def test_every_problem_is_reported_at_once_each_naming_its_variable():
    environ = {
        **GOOD,
        "VAULT_SERVICE_SECRET_KEY": "short",
        "VAULT_SERVICE_LINK_TTL_SECONDS": "soon",
        "VAULT_SERVICE_EMBEDDED_WORKER": "perhaps",
        "VAULT_SERVICE_OIDC_PROVISIONING": "everyone",
        "VAULT_SERVICE_ZENDESK_TIMESTAMP_TOLERANCE_SECONDS": "0",
        "VAULT_SERVICE_LOG_LEVEL": "LOUD",
        "VAULT_SERVICE_PRIVACY_URL": "http://example.test/privacy",
        "VAULT_SERVICE_BRAND_LOGO": "logo.bmp",
        "VAULT_SERVICE_SECRT_KEY": "x",
    }
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    problems = error.value.problems
    for name in (
        "VAULT_SERVICE_SECRET_KEY",
        "VAULT_SERVICE_LINK_TTL_SECONDS",
        "VAULT_SERVICE_EMBEDDED_WORKER",
        "VAULT_SERVICE_OIDC_PROVISIONING",
        "VAULT_SERVICE_ZENDESK_TIMESTAMP_TOLERANCE_SECONDS",
        "VAULT_SERVICE_LOG_LEVEL",
        "VAULT_SERVICE_PRIVACY_URL",
        "VAULT_SERVICE_BRAND_LOGO",
        "VAULT_SERVICE_SECRT_KEY",
    ):
        assert (
            sum(problem.startswith(name + " ") or name in problem for problem in problems) >= 1
        ), (
            name,
            problems,
        )
    assert len(problems) == 9, problems
    assert str(error.value) == "\n".join(problems)


# --- <VARIABLE>_FILE: a secret mounted as a file ---------------------------------------------

WHSEC = "whsec_" + base64.b64encode(b"f" * 32).decode()
# Every secret, a valid value for it, and where the loaded settings hold it.
SECRET_FILES = {
    "VAULT_SERVICE_SECRET_KEY": ("s" * 48, lambda s: s.secret_key),
    "VAULT_SERVICE_DATABASE_URL": ("sqlite:////srv/db.sqlite", lambda s: s.database_url),
    "VAULT_SERVICE_TICKET_API_TOKEN": ("a" * 40, lambda s: s.ticket_api_tokens[0]),
    "VAULT_SERVICE_WEBHOOK_SECRET": (WHSEC, lambda s: s.webhook_secrets == (b"f" * 32,) and WHSEC),
    "VAULT_SERVICE_VAULT_TOKEN": ("hvs.app-token", lambda s: s.vault_token),
    "VAULT_SERVICE_VAULT_ROLE_ID": ("role-from-file", lambda s: s.vault_role_id),
    "VAULT_SERVICE_VAULT_SECRET_ID": ("secret-id-from-file", lambda s: s.vault_secret_id),
    "VAULT_SERVICE_EVENTS_SECRET": (WHSEC, lambda s: s.events_secrets == (b"f" * 32,) and WHSEC),
    "VAULT_SERVICE_ZENDESK_API_TOKEN": ("zendesk-token", lambda s: s.zendesk_api_token),
    "VAULT_SERVICE_ZAMMAD_TOKEN": ("zammad-token", lambda s: s.zammad_token),
    "VAULT_SERVICE_OIDC_CLIENT_ID": ("client-id", lambda s: s.oidc.client_id),
    "VAULT_SERVICE_OIDC_CLIENT_SECRET": ("client-secret", lambda s: s.oidc.client_secret),
    "VAULT_SERVICE_RATELIMIT_STORAGE_URL": (
        "redis://:pw@redis:6379/0",
        lambda s: s.ratelimit_storage_url,
    ),
    "VAULT_SERVICE_JIRA_WEBHOOK_SECRET": ("jira,hook", lambda s: s.providers["jira"].secrets[0]),
}


def test_every_secret_and_only_the_secrets_have_a_file_variant():
    from vault_service.config import known_variables

    with_file = {name.removesuffix("_FILE") for name in known_variables() if name.endswith("_FILE")}
    assert with_file == set(SECRET_FILES) - {"VAULT_SERVICE_JIRA_WEBHOOK_SECRET"}


@pytest.mark.parametrize("name", sorted(SECRET_FILES))
def test_a_secret_is_read_from_the_file_its_file_variable_names(tmp_path, name):
    value, held = SECRET_FILES[name]
    path = tmp_path / "secret"
    path.write_text(value + "\n")  # as `echo value > file` and most secret mounts leave it
    environ = {k: v for k, v in GOOD.items() if k != name}
    settings = load_settings({**environ, name + "_FILE": str(path)})
    assert held(settings) == value
    assert value not in repr(settings)


@pytest.mark.parametrize("name", sorted(SECRET_FILES))
def test_a_secret_set_both_ways_is_refused(tmp_path, name):
    path = tmp_path / "secret"
    path.write_text(SECRET_FILES[name][0])
    with pytest.raises(ConfigError) as error:
        load_settings({**GOOD, name: SECRET_FILES[name][0], name + "_FILE": str(path)})
    assert error.value.problems == [f"{name} and {name}_FILE are both set: set one of them"]


@pytest.mark.parametrize("kind", ["missing", "directory", "below a file"])
def test_an_unreadable_secret_file_is_named_without_its_path_or_content(tmp_path, kind):
    path = tmp_path / "secret-CANARY"
    if kind == "directory":
        path.mkdir()
    elif kind == "below a file":
        path.write_text("CANARY" * 8)
        path = path / "key"
    environ = {k: v for k, v in GOOD.items() if k != "VAULT_SERVICE_SECRET_KEY"}
    with pytest.raises(ConfigError) as error:
        load_settings({**environ, "VAULT_SERVICE_SECRET_KEY_FILE": str(path)})
    first = error.value.problems[0]
    assert first.startswith("VAULT_SERVICE_SECRET_KEY_FILE names a file that cannot be read (")
    assert "CANARY" not in str(error.value)


def test_a_file_variable_of_a_setting_that_is_no_secret_is_a_misspelling(tmp_path):
    path = tmp_path / "url"
    path.write_text("https://vault.example.test")
    with pytest.raises(ConfigError, match="VAULT_SERVICE_PUBLIC_URL_FILE is not a setting"):
        load_settings({**GOOD, "VAULT_SERVICE_PUBLIC_URL_FILE": str(path)})


# --- secrets never leave through a repr or an error ------------------------------------------

CANARY = "CANARY-7f3a"


def test_no_secret_appears_in_the_settings_repr():
    environ = {
        **GOOD,
        "VAULT_SERVICE_SECRET_KEY": CANARY + "k" * 40,
        "VAULT_SERVICE_TICKET_API_TOKEN": CANARY + "t" * 40,
        "VAULT_SERVICE_VAULT_SECRET_ID": CANARY + "-secret-id",
        "VAULT_SERVICE_VAULT_ROLE_ID": CANARY + "-role-id",
        "VAULT_SERVICE_DATABASE_URL": f"postgresql+psycopg://app:{CANARY}@db/app",
        "VAULT_SERVICE_ZENDESK_API_TOKEN": CANARY,
        "VAULT_SERVICE_ZAMMAD_TOKEN": CANARY,
        "VAULT_SERVICE_OIDC_CLIENT_SECRET": CANARY,
        "VAULT_SERVICE_RATELIMIT_STORAGE_URL": f"redis://:{CANARY}@redis:6379/0",
        "VAULT_SERVICE_ZENDESK_WEBHOOK_SECRET": CANARY,
    }
    settings = load_settings(environ)
    assert settings.vault_secret_id == CANARY + "-secret-id"  # held, only not shown
    for shown in (repr(settings), str(settings), repr(settings.oidc), repr(settings.providers)):
        assert CANARY not in shown, shown
    webhook = base64.b64encode(b"w" * 32).decode()
    assert webhook not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAULT_SERVICE_SECRET_KEY", CANARY),
        ("VAULT_SERVICE_TICKET_API_TOKEN", CANARY),
        ("VAULT_SERVICE_WEBHOOK_SECRET", "whsec_" + CANARY),
        ("VAULT_SERVICE_EVENTS_SECRET", "whsec_" + CANARY),
        ("VAULT_SERVICE_RATELIMIT_STORAGE_URL", f"nosuch://:{CANARY}@redis"),
        ("VAULT_SERVICE_VAULT_TIMEOUT_SECONDS", CANARY),
        ("VAULT_SERVICE_OIDC_ROLE_MAP", CANARY),
        ("VAULT_SERVICE_SECRET_KYE", CANARY),
    ],
)
def test_no_refused_value_appears_in_the_error(name, value):
    with pytest.raises(ConfigError) as error:
        load_settings({**GOOD, name: value})
    assert name.split("_KYE")[0] in str(error.value)
    assert CANARY not in str(error.value)


# --- the documentation and the loader cannot drift -------------------------------------------


def _documented_names() -> set[str]:
    """Every VAULT_SERVICE_* name the docs, the deployment, the scripts and the package spell."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md", root / "SECURITY.md", root / "docker-compose.yml"]
    files += [root / "Dockerfile", root / "Makefile"]
    for folder in ("deploy", "scripts", "bench", "vault_service", "docs"):
        files += [p for p in (root / folder).rglob("*") if p.is_file() and p.suffix != ".png"]
    names = set()
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        names |= set(re.findall(r"\b(VAULT_SERVICE_[A-Z0-9_]*[A-Z0-9]|VAULT_ADDR)\b", text))
    return names


def test_every_variable_the_docs_and_deployment_name_is_accepted_by_the_loader():
    names = _documented_names()
    assert {"VAULT_SERVICE_SECRET_KEY", "VAULT_SERVICE_TRUSTED_PROXIES"} <= names  # found some
    # Named with an empty value (= its default), each must be known; an unknown one is refused.
    load_settings({**GOOD, **dict.fromkeys(names - set(GOOD), "")})


def test_every_setting_the_loader_reads_is_in_the_readme():
    from pathlib import Path

    from vault_service.config import OTHER_VARIABLES, known_variables

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    settings = {n for n in known_variables() - OTHER_VARIABLES if not n.endswith("_FILE")}
    assert sorted(name for name in settings if name not in readme) == []
