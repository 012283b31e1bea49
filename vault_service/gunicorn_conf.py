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

import gunicorn
import gunicorn.http.wsgi

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
