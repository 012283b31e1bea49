"""The inbound webhook providers, by name: each module here defines one and exposes `PROVIDER`,
so a new vendor is one module (and its tests), found without editing a list."""

from __future__ import annotations

import importlib
import pkgutil

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
