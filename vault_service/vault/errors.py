"""Our exceptions for Vault's failure modes, one per mode, and the translation from hvac/requests.

Messages name the operation only: hvac and requests messages can echo URLs, bodies or tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import hvac.exceptions
import requests


class VaultError(Exception):
    """Vault refused or failed in a way the caller must handle. Messages hold no values."""


class VaultUnavailable(VaultError):
    """Vault is unreachable, sealed, or too slow: retry later; nothing was done that we know of."""


class VaultTLSError(VaultUnavailable):
    """The TLS connection to Vault failed: an untrusted certificate or a refused handshake.
    Retrying will not help; the CA (VAULT_SERVICE_VAULT_CA_CERT) or the certificates must change."""


class VaultForbidden(VaultError):
    """Vault denied the token: expired, revoked, or outside its policy."""


class VaultNotFound(VaultError):
    """The path does not exist (or no longer exists)."""


class VaultRequestFailed(VaultError):
    """Vault rejected the request itself (a bug or a misconfiguration on our side)."""


class RootTokenRefused(VaultError):
    """The app was given a root token; it refuses to operate with one (least privilege)."""


class DeploymentConflict(VaultError):
    """Another database already owns this deployment id in Vault: sweeping or provisioning under
    it would destroy or mix that deployment's tickets, so nothing is done until an operator
    gives this database its own VAULT_SERVICE_DEPLOYMENT_ID."""


@contextmanager
def translate_errors(operation: str) -> Iterator[None]:
    """Turn hvac/requests failures into our exceptions; the operation name is the only detail."""
    try:
        yield
    except requests.exceptions.SSLError as error:
        # requests files a TLS failure under ConnectionError: named as what it is, or an
        # operator hunts a network fault while the CA file is what is wrong.
        raise VaultTLSError(f"{operation}: {_tls_problem(error)}") from error
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise VaultUnavailable(f"{operation}: Vault unreachable or too slow") from error
    except (hvac.exceptions.VaultDown, hvac.exceptions.BadGateway) as error:
        raise VaultUnavailable(f"{operation}: Vault sealed or unavailable") from error
    except hvac.exceptions.InternalServerError as error:
        raise VaultUnavailable(f"{operation}: Vault internal error") from error
    except hvac.exceptions.RateLimitExceeded as error:
        raise VaultUnavailable(f"{operation}: Vault rate limit") from error
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as error:
        raise VaultForbidden(f"{operation}: permission denied") from error
    except hvac.exceptions.InvalidPath as error:
        raise VaultNotFound(f"{operation}: not found") from error
    except hvac.exceptions.VaultError as error:
        raise VaultRequestFailed(f"{operation}: request rejected") from error
    except requests.exceptions.RequestException as error:
        # The class name only: exception messages can echo request URLs or bodies.
        raise VaultUnavailable(f"{operation}: transport error ({type(error).__name__})") from error


def _tls_problem(error: requests.exceptions.SSLError) -> str:
    """What failed in the handshake, in words an operator acts on (no URL, no certificate)."""
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return (
            "TLS certificate verify failed: Vault's certificate is not trusted "
            "(set VAULT_SERVICE_VAULT_CA_CERT to the CA that signed it)"
        )
    if "hostname" in text.lower() or "doesn't match" in text:
        return "TLS hostname mismatch: Vault's certificate does not name the address in VAULT_ADDR"
    return "TLS handshake with Vault failed (certificates or TLS settings)"
