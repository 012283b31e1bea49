"""What a credential kind is made of (fields, kinds, form sections), and the shared checks."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .text import ascii_host, check_no_hidden_characters, url_host

# A check reads a field's text and returns the problem to show, or None. It never echoes the value.
Check = Callable[[str], str | None]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def check_no_control_characters(value: str) -> str | None:
    """Refuse NUL and other C0 controls; tabs and newlines are fine in a secret."""
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        return "Contains characters that are not allowed."
    return None


def check_no_nul(value: str) -> str | None:
    """Refuse NUL only: free text for the agent may hold any other character."""
    return "Contains characters that are not allowed." if "\x00" in value else None


def check_not_blank(value: str) -> str | None:
    """Refuse text that is only whitespace (a name must say something)."""
    return None if value.strip() else "This field is required."


def check_host(value: str) -> str | None:
    """A host name (internationalized names as valid IDNA) or an IP address (IPv6 optionally in
    brackets), without a scheme or port."""
    try:
        ipaddress.ip_address(value.strip("[]"))
        return None
    except ValueError:
        # An A-label ("xn--...") must also decode to a valid IDNA name.
        if _HOSTNAME.fullmatch(value) and ("xn--" not in value.lower() or ascii_host(value)):
            return None
    if not value.isascii() and check_no_hidden_characters(value) is None:
        encoded = ascii_host(value)
        if encoded is not None and _HOSTNAME.fullmatch(encoded):
            return None
    return "Enter a host name or IP address, without spaces or a scheme."


def check_port(value: str) -> str | None:
    """A TCP port, 1 to 65535, in ASCII digits."""
    # isascii first: isdigit() also holds for "²", which int() refuses.
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 65535:
        return None
    return "Enter a port number between 1 and 65535."


def check_web_address(value: str) -> str | None:
    """An absolute http(s) URL with a host, and no whitespace anywhere (urlsplit would quietly
    drop tabs and newlines)."""
    if not any(ch.isspace() for ch in value):
        try:
            parts = urlsplit(value)
        except ValueError:  # e.g. "http://[::1": an unclosed IPv6 literal
            parts = None
        if parts is not None and parts.scheme in ("http", "https") and parts.netloc:
            host = url_host(value)
            # An internationalized host must be valid IDNA: the reveal shows its punycode.
            plain = host and host.isascii() and "xn--" not in host
            if host and (plain or ascii_host(host) is not None):
                return None
    return "Enter a full http:// or https:// address."


@dataclass(frozen=True)
class Field:
    """One input of a kind: its JSON name, how it is shown, its limit and its checks."""

    name: str
    label: str
    max_length: int
    checks: tuple[Check, ...] = (check_no_control_characters,)
    required: bool = True
    secret: bool = False
    # How the form renders it: "text", "password", "url", "textarea" or "select".
    input: str = "text"
    autocomplete: str = "off"
    inputmode: str | None = None
    rows: int = 3  # a textarea's height
    help: str = ""
    # For a select: the accepted values and their labels, in display order.
    choices: tuple[tuple[str, str], ...] = ()
    # JSON callers may send a port as a number; every other value must be text.
    accepts_integer: bool = False
    # A secret the form still gives back after a validation error (see `refilled`).
    refill_secret: bool = False
    # "host" or "url": the reveal page shows a non-ASCII host's punycode beside it.
    address: str | None = None

    def __post_init__(self) -> None:
        if bool(self.choices) != (self.input == "select"):
            raise ValueError(f"field {self.name}: a select, and only a select, has choices")

    @property
    def refilled(self) -> bool:
        """Whether the customer's form, re-rendered after a validation error, keeps what was
        typed here: every non-secret field does (a typo in a port must not cost the host and
        the username); a password never does, so it is never in a page's source."""
        return self.refill_secret or not self.secret


@dataclass(frozen=True)
class Kind:
    """A credential kind: the `kind` value of an item, what it is called, and its fields."""

    name: str
    label: str
    fields: tuple[Field, ...]

    def field_named(self, name: str) -> Field | None:
        """The field of that name, if this kind has one."""
        return next((item for item in self.fields if item.name == name), None)


@dataclass(frozen=True)
class FormSection:
    """How kinds are rendered in the customer's form: one fieldset whose inputs are named
    `<code>_<field>`. Several kinds with the same fields share one section and the customer
    picks among them in a select named `<code>_kind`."""

    code: str
    legend: str
    kinds: tuple[Kind, ...]
    # Where the section sits in the form (and its kinds in every list): lower comes first.
    position: int
    help: str = ""
    choice_label: str = "Type"
    fields: tuple[Field, ...] = field(init=False)

    def __post_init__(self) -> None:
        first = self.kinds[0].fields
        if any(kind.fields != first for kind in self.kinds):
            raise ValueError(f"section {self.code}: kinds sharing a section share their fields")
        object.__setattr__(self, "fields", first)

    @property
    def has_choice(self) -> bool:
        """Whether the customer picks the kind (a select) or the section is the kind."""
        return len(self.kinds) > 1


# Fields several kinds share; a kind that words one differently uses dataclasses.replace.
HOST = Field(
    "host",
    "Host",
    253,
    checks=(check_no_control_characters, check_no_hidden_characters, check_host),
    address="host",
)
PORT = Field(
    "port",
    "Port",
    5,
    checks=(check_no_control_characters, check_port),
    inputmode="numeric",
    accepts_integer=True,
)
USERNAME = Field(
    "username",
    "Username",
    256,
    checks=(check_no_control_characters, check_no_hidden_characters, check_not_blank),
)
# Kept byte-exact: a password's spaces are part of it.
PASSWORD = Field(
    "password", "Password", 1024, secret=True, input="password", autocomplete="new-password"
)
