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
