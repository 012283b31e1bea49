"""A local stand-in for the help desks' REST APIs (a SaaS cannot run here): an http.server on
127.0.0.1 implementing exactly the endpoints the connectors use, as the vendors document them,
checking method, path, auth and payload shape, and recording every request.

- Zendesk ("Ticket Comments", developer.zendesk.com/rest_api/docs/core/ticket_comments):
  PUT /api/v2/tickets/{id}.json, `Content-Type: application/json`, basic auth
  `{email}/token:{api_token}`, body `{"ticket": {"comment": {"body": str, "public": bool}}}`
  -> 200 {"ticket", "audit"}.
- Zammad (zammad/zammad-documentation api/ticket/articles.rst "Create", api/intro.rst
  "Authentication"): POST /api/v1/ticket_articles, `Authorization: Token token=<token>`,
  `Content-Type: application/json`, body `{"ticket_id": int, "body": str, "type": "note",
  "internal": bool, ...}` -> 201 Created with the article.
Wrong auth: 401; an unknown path or method: 404; a malformed body: 422. The error bodies are
illustrative (the connectors read only the status code).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ZENDESK_TICKET = re.compile(r"^/api/v2/tickets/(\d+)\.json$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    json: object


@dataclass
class HelpdeskFake:
    """Both vendors' endpoints on one server; `fail_first` answers 503 to that many valid calls."""

    zendesk_email: str = "agent@acme.test"
    zendesk_token: str = "zendesk-api-token-0123456789"
    zammad_token: str = "zammad-access-token-0123456789"
    fail_first: int = 0
    # Zendesk ticket ids the fake does not have (404 RecordNotFound).
    missing_tickets: set[str] = field(default_factory=set)
    requests: list[Recorded] = field(default_factory=list)

    def start(self) -> HelpdeskFake:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_PUT(self):
                fake.handle(self, "PUT")

            def do_POST(self):
                fake.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[Recorded]:
        """The requests the fake accepted (2xx)."""
        return [r for r in self.requests if getattr(r, "status", 0) < 300]

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        raw = handler.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record = Recorded(method, handler.path, dict(handler.headers), body)
        self.requests.append(record)
        status, answer = self._answer(handler, method, body)
        if 200 <= status < 300 and self.fail_first > 0:
            self.fail_first -= 1
            status, answer = 503, {"error": "Service Unavailable"}
        record.status = status
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, handler, method: str, body) -> tuple[int, dict]:
        json_type = handler.headers.get("Content-Type", "").startswith("application/json")
        ticket = ZENDESK_TICKET.match(handler.path)
        if method == "PUT" and ticket:
            expected = base64.b64encode(
                f"{self.zendesk_email}/token:{self.zendesk_token}".encode()
            ).decode()
            if handler.headers.get("Authorization") != f"Basic {expected}":
                return 401, {"error": "Couldn't authenticate you"}
            if ticket.group(1) in self.missing_tickets:
                return 404, {"error": "RecordNotFound", "description": "Not found"}
            comment = (body or {}).get("ticket", {}).get("comment") if json_type else None
            if not (
                isinstance(comment, dict)
                and isinstance(comment.get("body"), str)
                and isinstance(comment.get("public"), bool)
            ):
                return 422, {"error": "RecordInvalid"}
            return 200, {"ticket": {"id": int(ticket.group(1))}, "audit": {"events": [comment]}}
        if method == "POST" and handler.path == "/api/v1/ticket_articles":
            if handler.headers.get("Authorization") != f"Token token={self.zammad_token}":
                return 401, {"error": "authentication failed"}
            valid = (
                json_type
                and isinstance(body, dict)
                and isinstance(body.get("ticket_id"), int)
                and isinstance(body.get("body"), str)
                and body.get("type") == "note"
                and isinstance(body.get("internal"), bool)
            )
            if not valid:
                return 422, {"error": "Need ticket_id, body, type and internal"}
            return 201, {"id": len(self.requests), **body}
        return 404, {"error": "Not Found"}
