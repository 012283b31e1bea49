"""gunicorn settings for every deployment: `gunicorn -c python:vault_service.gunicorn_conf ...`.

gunicorn writes `Server: gunicorn` into every response (older releases added their version). It
tells a scanner which server's bugs to try and helps nobody else, so the header names the service
instead. gunicorn has no setting for it: it copies the module constant `gunicorn.SERVER` into
`gunicorn.http.wsgi` at import time and reads that copy for each response, so both are replaced
here, in the master process, before any worker is forked. tests/test_server_banner.py starts
gunicorn with this file and fails if a response names gunicorn again (say, after an upgrade that
moves the constant).

Command-line options (workers, threads, bind) still come from the Dockerfile and scripts/dev.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import gunicorn
import gunicorn.http.wsgi
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

SERVER_HEADER = "vault-service"

if not hasattr(gunicorn.http.wsgi, "SERVER"):
    # Refuse to start rather than run with the banner back: the constant moved in this version.
    raise RuntimeError("gunicorn.http.wsgi.SERVER is gone: update vault_service/gunicorn_conf.py")
# The stubs declare these Final; replacing them is the point of this module.
gunicorn.SERVER = SERVER_HEADER  # type: ignore[misc]
gunicorn.http.wsgi.SERVER = SERVER_HEADER
# The WSGI environ's SERVER_SOFTWARE (gunicorn/<version>) reaches only the app, but the app has no
# use for it either.
gunicorn.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[misc]
gunicorn.http.wsgi.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]

# gunicorn's access log writes the raw request path, and /s/<token> is a credential: the app logs
# each request itself with the route pattern instead (SECURITY.md C17). None is gunicorn's default;
# it is spelled out so that nobody turns it on here without reading this.
accesslog = None

# gunicorn 27 opens a control socket in ~/.gunicorn by default: an admin interface nobody here
# uses, a file outside the deployment, and a path two servers on one host would share.
control_socket_disable = True

# gunicorn's own lines (worker start and stop, malformed requests, worker errors) in the app's JSON
# shape, with link and status tokens redacted: a malformed request line is logged raw otherwise.
logger_class = "vault_service.gunicorn_logging.JsonLogger"

# Prometheus metrics from every worker (vault_service/metrics.py): each worker writes its counters
# to files in PROMETHEUS_MULTIPROC_DIR and a scrape adds them up. The variable must be set before
# a worker imports prometheus_client, i.e. here, in the master, before the fork. Without one given,
# a fresh directory in memory (/dev/shm: the image's root filesystem is read-only) is used and
# removed at exit.
_CREATED_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _CREATED_METRICS_DIR:
    _shm = "/dev/shm"  # noqa: S108 - a private mkdtemp directory inside it, mode 0700
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="vault-service-metrics-",
        dir=_shm if os.path.isdir(_shm) and os.access(_shm, os.W_OK) else None,
    )


def on_starting(server: Arbiter) -> None:
    """Once, in the master: a given directory's files from an earlier run would be added in."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Arbiter, worker: Worker) -> None:
    """A worker is gone: drop its live gauges (its counters stay: totals never go backwards)."""
    from prometheus_client import multiprocess

    # prometheus_client leaves this function unannotated.
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Arbiter) -> None:
    """Remove the directory made above (a given one belongs to whoever gave it)."""
    if _CREATED_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
