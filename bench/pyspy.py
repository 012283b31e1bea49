"""Sampling profiles of the real processes (gunicorn workers, the worker) with py-spy.

py-spy samples the production processes from outside (no code change, `--nonblocking`), only
while they are on a CPU (idle threads are left out). The collapsed stacks are then split by the
view that was running (or the worker's purge) and by what the time went to: the Vault client
(hvac, requests, urllib3, http.client), the database (SQLAlchemy and the driver), templates, the
session/login/CSRF machinery, logging, Flask/Werkzeug, gunicorn, and the service's own code.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from bench.stack import BIN

# First matching prefix of a frame's file wins; frames in other stdlib modules are charged to
# the nearest caller that matches (json inside hvac is the Vault client's, and so on).
CATEGORIES = [
    ("Vault client (hvac, requests, urllib3, http.client)",
     ("hvac/", "requests/", "urllib3/", "http/client", "email/", "socket.py", "ssl.py",
      "vault_service/vault/")),
    ("database (SQLAlchemy, driver)",
     ("sqlalchemy/", "sqlite3/", "psycopg", "<sqlalchemy")),
    ("templates (Jinja2)", ("jinja2/", "markupsafe/", "vault_service/templates/")),
    ("session, login, CSRF", ("flask_login/", "flask_wtf/", "itsdangerous/", "wtforms/")),
    ("logging", ("logging/", "vault_service/logs.py")),
    ("Flask, Werkzeug", ("flask/", "werkzeug/", "flask_sqlalchemy/")),
    ("gunicorn", ("gunicorn/",)),
    ("service code", ("vault_service/",)),
]  # fmt: skip
OTHER = "other (stdlib, interpreter)"


def available() -> bool:
    return (BIN / "py-spy").exists() or shutil.which("py-spy") is not None


@contextmanager
def record(pid: int, output: Path, rate: int = 500, subprocesses: bool = False):
    """Sample `pid` (and its children) until the block ends; collapsed stacks to `output`."""
    binary = str(BIN / "py-spy") if (BIN / "py-spy").exists() else "py-spy"
    argv = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
            "--output", str(output), "--nonblocking"]  # fmt: skip
    if subprocesses:
        argv.append("--subprocesses")
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _frame_file(frame: str) -> str:
    # "function (path/to/file.py:123)"
    start = frame.rfind(" (")
    return frame[start + 2 : frame.rfind(":")] if start >= 0 else ""


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        path = _frame_file(frame)
        for name, prefixes in CATEGORIES:
            if any(prefix in path for prefix in prefixes):
                return name
    return OTHER


# Marker functions of the worker (the others are views, recognised in vault_service/views/).
WORKER_MARKERS = ("sweep", "process_due_jobs")


def _operation(frames: list[str], markers: dict[str, str]) -> str:
    """The operation a stack belongs to: the first marker function found from the root (a view,
    past its decorators; or the worker's entry point). Other view-module code, such as the
    session checks every request runs, belongs to no one operation."""
    for frame in frames:
        name = frame.split(" (", 1)[0]
        path = _frame_file(frame)
        if name not in markers:
            continue
        if path.startswith("vault_service/views/") or (
            name in WORKER_MARKERS and path.startswith("vault_service/services/")
        ):
            return markers[name]
    if any(_frame_file(f).startswith("flask/") for f in frames):
        return "Flask request handling outside any view (every route)"
    if any(_frame_file(f).startswith("gunicorn/") for f in frames):
        return "gunicorn (HTTP parsing, every route)"
    return "other"


# Leaves where a thread waits (py-spy occasionally catches one as it takes or drops the GIL).
IDLE_LEAVES = (
    ("select", "selectors.py"),
    ("_worker", "concurrent/futures/thread.py"),
    ("wait", "threading.py"),
    ("wait_for_signals", "gunicorn/arbiter.py"),
    ("sleep", "gunicorn/arbiter.py"),
)


def _idle(frames: list[str]) -> bool:
    if not frames:
        return True
    name, path = frames[-1].split(" (", 1)[0], _frame_file(frames[-1])
    return any(name.endswith(n) and path.endswith(p) for n, p in IDLE_LEAVES)


def breakdown(raw: Path, rate: int, markers: dict[str, str]) -> dict[str, dict[str, float]]:
    """CPU seconds by operation and category from a collapsed-stack file."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    if not raw.exists():
        return {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "Thread "))]
        if _idle(frames):
            continue
        out[_operation(frames, markers)][_category(frames)] += int(count) / rate
    return {op: dict(categories) for op, categories in out.items()}


# Root-most function that names the operation: views (by function name), then the worker's.
OPERATION_MARKERS = {
    "create_submission_link": "create_link",
    "submit": "submit",
    "request_access": "request_access",
    "ticket": "ticket_page",
    "reveal": "reveal",
    "ticket_events": "close",
    "get_ticket": "ticket_api",
    "healthz": "healthz",
    "dashboard": "dashboard",
    "login_submit": "login",
    "sweep": "sweep",
    "process_due_jobs": "purge",
}
SHARED = "every request, outside the view (Flask, session, logging, gunicorn)"


def profile_table(raws: list[Path], rate: int, requests: dict[str, int]) -> dict:
    """Per operation: sampled CPU ms per request and the share of each category.

    Samples outside any view (request setup and teardown, gunicorn's parsing) belong to every
    request alike; they are reported once, per request.
    """
    merged: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for raw in raws:
        for op, categories in breakdown(raw, rate, OPERATION_MARKERS).items():
            if op.startswith(("Flask request handling", "gunicorn")):
                op = SHARED
            for category, seconds in categories.items():
                merged[op][category] += seconds
    total_requests = sum(count for op, count in requests.items() if op != "purge")
    table = {}
    for op, categories in merged.items():
        count = total_requests if op == SHARED else requests.get(op, 0)
        if not count:
            continue
        total = sum(categories.values())
        table[op] = {
            "sampled_cpu_ms_per_request": total / count * 1000,
            "share": {c: s / total for c, s in sorted(categories.items(), key=lambda kv: -kv[1])},
        }
    return table
