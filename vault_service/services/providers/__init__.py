"""The inbound webhook providers, by name: each module here defines one and exposes `PROVIDER`,
so a new vendor is one module (and its tests), found without editing a list."""

from __future__ import annotations

import importlib
import pkgutil

from ...config import ConfigError, Settings
from .base import InboundProvider


def _discover() -> dict[str, InboundProvider]:
    found: dict[str, InboundProvider] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base":
            continue
        provider = importlib.import_module(f"{__name__}.{module_info.name}").PROVIDER
        if provider.name in found:
            raise RuntimeError(f"two inbound providers named {provider.name!r}")
        found[provider.name] = provider
    return found


PROVIDERS = _discover()


def native_provider_names() -> list[str]:
    """The help-desk providers configured by VAULT_SERVICE_<NAME>_* (config.py reads them)."""
    return sorted(name for name, provider in PROVIDERS.items() if provider.native)


def check_configured(settings: Settings) -> None:
    """Refuse settings for a help desk no provider module knows: a misspelt VAULT_SERVICE_<NAME>_*
    would otherwise leave the intended help desk unconfigured without a word."""
    unknown = sorted(set(settings.providers) - set(native_provider_names()))
    if unknown:
        names = ", ".join(name.upper().replace("-", "_") for name in unknown)
        known = ", ".join(native_provider_names())
        raise ConfigError(f"VAULT_SERVICE_<NAME>_* names no help desk: {names} (known: {known})")
