"""The one place request bodies are read: strict JSON, no duplicate form fields, a hard size limit.

Every JSON body the app reads goes through `strict_loads`, installed as the app's JSON provider
(so `request.get_json` uses it) and called directly where a body must be read as raw bytes first
(signed webhooks). It refuses, with a 400 and before anything else looks at the document:

- nesting deeper than MAX_JSON_DEPTH: Python's parser recurses, and 20,000 levels exhaust the
  stack (a 500) before any link or signature check could refuse the request;
- duplicate keys: parsers disagree on which one wins (first, last, error), so a document that
  two components could read differently is refused rather than silently reduced to one value;
- lone UTF-16 surrogates ("\\ud800"): valid JSON escapes, but not text, they fail later
  wherever the value is encoded (the database, Vault, a page).

A chunked body (no Content-Length) longer than the limit is answered 413, as a declared one is:
Werkzeug otherwise silently cuts it at the limit and the truncated document fails as invalid.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import BadRequest

# Deep enough for every document we accept (a submission is 3 levels, vendors' webhooks under
# 20), shallow enough that neither the parser nor any walk over the result can recurse far.
MAX_JSON_DEPTH = 64
FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class MalformedJSON(BadRequest):
    """A JSON body refused before it is used: the message says why (the code stays
    `bad_request`, as openapi.yaml lists it)."""


def _check_depth(text: str) -> None:
    """Refuse more than MAX_JSON_DEPTH nested arrays/objects, counted without parsing."""
    depth = 0
    # Brackets inside strings do not nest: blank the strings out first.
    for bracket in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise MalformedJSON(f"The JSON document is nested deeper than {MAX_JSON_DEPTH}.")
        else:
            depth -= 1


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a key may appear once per object."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedJSON(f"The JSON document repeats the key {key[:40]!r}.")
        result[key] = value
    return result


def _check_text(value: Any) -> None:
    """Every string, key or value, must be encodable text (no lone surrogates)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedJSON("The JSON document holds an invalid character.") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


def strict_loads(data: str | bytes | bytearray) -> Any:
    """Parse JSON or raise MalformedJSON (depth, duplicate keys, surrogates) or ValueError
    (not JSON at all: callers decide how to say so)."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8") from None  # not JSON (RFC 8259 requires UTF-8)
    else:
        text = data
    _check_depth(text)
    value = json.loads(text, object_pairs_hook=_refuse_duplicates)
    _check_text(value)
    return value


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, reading with `strict_loads` (writing unchanged)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return strict_loads(s)


def _read_unbounded_body(limit: int) -> None:
    """For a body of unknown length: read at most limit + 1 bytes; 413 if there are more, else
    hand the rest of the app the body as if its length had been declared."""
    environ = request.environ
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    environ["CONTENT_LENGTH"] = str(size)
    # Now an ordinary body of known length: Werkzeug ignores a length sent with "chunked".
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ.pop("wsgi.input_terminated", None)


def init_app(app: Flask) -> None:
    """Install the strict JSON provider and the body checks that run before any view."""
    app.json = StrictJSONProvider(app)

    def check_body() -> None:
        limit = app.config["MAX_CONTENT_LENGTH"]
        # Only servers that terminate the stream themselves (gunicorn, Werkzeug's dev server)
        # pass a body without a length; without that flag Werkzeug reads none at all.
        if (
            request.content_length is None
            and limit
            and request.environ.get("wsgi.input_terminated")
        ):
            _read_unbounded_body(limit)
        if request.mimetype in FORM_MIMETYPES:
            # Cached first: the form is parsed from the cached bytes, and a view that reads the
            # raw body (an API refusing the media type) still finds it.
            request.get_data(cache=True, parse_form_data=False)
            repeated = sorted(k for k, values in request.form.lists() if len(values) > 1)
            if repeated:
                raise BadRequest(f"The form repeats the field {repeated[0][:40]!r}.")

    # Before every other hook: CSRF and the views read request.form / the body after this.
    app.before_request_funcs.setdefault(None, []).insert(0, check_body)
