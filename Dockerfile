# vault_service application image: the web app (gunicorn) and, with another command, the worker.
# Production dependencies only (".[postgres,redis]"); no dev or test extras.

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Every runtime dependency (with the postgres and redis extras) pinned and hash-checked: the image
# installs exactly what was locked, or fails. `make lock` regenerates the file from pyproject.toml;
# tests/test_lock_file.py fails when the two drift apart.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
# Only what the wheel is built from: never the working tree (var/ holds development Vault keys).
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY vault_service ./vault_service
# --no-deps: nothing beyond the lock. (The build backend, hatchling, is fetched for the build only
# and does not end up in the image.)
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.12-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 vault-service \
 && useradd --system --uid 10001 --gid vault-service --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin vault-service
COPY --from=build /opt/venv /opt/venv
# Where docker-compose.yml's `bootstrap` leaves each process's wrapped AppRole secret id: a named
# volume mounted here starts out with this owner and mode.
RUN install -d -o vault-service -g vault-service -m 0700 /var/lib/vault-service/delivery
WORKDIR /app
USER vault-service:vault-service
EXPOSE 8000
# Ready = database and Vault reachable, Vault unsealed, schema at the code's head (/readyz).
# The worker and the one-shot bootstrap serve no HTTP: docker-compose.yml disables it for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

# Two workers with threads (gthread): Vault calls block on the network, not on the CPU.
# No --access-logfile, on purpose: gunicorn's access log writes the raw path, and /s/<token> is a
# credential. The app logs each request itself with the route pattern instead.
# --worker-tmp-dir /dev/shm and --no-control-socket let it run on a read-only root filesystem.
# vault_service/gunicorn_conf.py replaces the `Server: gunicorn` banner with a neutral name.
CMD ["gunicorn", "-c", "python:vault_service.gunicorn_conf", "vault_service.wsgi:app", \
     "--bind", "0.0.0.0:8000", \
     "--workers", "2", "--worker-class", "gthread", "--threads", "4", \
     "--timeout", "30", "--graceful-timeout", "30", \
     "--worker-tmp-dir", "/dev/shm", "--no-control-socket", \
     "--error-logfile", "-", "--log-level", "info"]
