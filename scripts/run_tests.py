#!/usr/bin/env python3
"""`make test`: the whole suite on SQLite, then again on PostgreSQL when one is reachable.

The PostgreSQL run uses Python 3.12 (the image's) when the machine has one, in .venv-py312.

PostgreSQL comes from VAULT_SERVICE_TEST_DATABASE_URL, or the local default
(postgresql+psycopg://postgres@127.0.0.1:5432/test) when something answers there.
Says which databases it ran on; fails if any run fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def reachable_postgres() -> str | None:
    """The PostgreSQL URL to test against, if one answers."""
    url = os.environ.get("VAULT_SERVICE_TEST_DATABASE_URL") or LOCAL_POSTGRES
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means "not available here"
        print(f"PostgreSQL: not reachable ({type(error).__name__}); skipping that run")
        return None
    return url


def redis_status() -> str:
    """Whether the Redis-backed rate-limit test could run (it skips itself otherwise)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            answered = connection.recv(16).startswith(b"+PONG")
    except OSError:
        answered = False
    if answered:
        return "answers on 127.0.0.1:6379; the shared rate-limit storage test ran against it"
    return "not reachable on 127.0.0.1:6379; the Redis rate-limit test was skipped"


def ensure_chromium() -> None:
    """The browser tests need Debian's chromium; install it where we may (root with apt-get)."""
    if shutil.which("chromium"):
        print("Browser: chromium found; browser tests run")
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("Browser: installing Debian's chromium (apt-get) for the browser tests", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        quiet = {"stdout": subprocess.DEVNULL, "env": env}
        subprocess.call(["apt-get", "update", "-qq"], **quiet)
        subprocess.call(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], **quiet
        )
    if shutil.which("chromium"):
        print("Browser: chromium installed; browser tests run")
    else:
        print("Browser: chromium unavailable; tests/test_browser.py will be SKIPPED")


def ensure_nginx() -> None:
    """tests/test_reverse_proxy.py runs the shipped nginx config: install Debian's nginx-light
    where we may (root with apt-get), as for chromium."""
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        print("Reverse proxy: nginx found; the slowloris test runs")
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("Reverse proxy: installing Debian's nginx-light (apt-get)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        quiet = {"stdout": subprocess.DEVNULL, "env": env}
        subprocess.call(["apt-get", "update", "-qq"], **quiet)
        for package in ("nginx-light", "nginx"):  # nginx-light is gone from newer Debian
            if subprocess.call(["apt-get", "install", "-y", "-qq", package], **quiet) == 0:
                break
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        print("Reverse proxy: nginx installed; the slowloris test runs")
    else:
        print("Reverse proxy: nginx unavailable; tests/test_reverse_proxy.py will be SKIPPED")


# The image runs Python 3.12 (Dockerfile) while newcomers may have only 3.11: when a 3.12 is on the
# machine, the PostgreSQL run (production's database) uses it, so both interpreters run the whole
# suite without making CI any longer.
IMAGE_PYTHON = "3.12"
IMAGE_VENV = ROOT / ".venv-py312"


def find_image_python() -> str | None:
    """A Python 3.12 interpreter on this machine (PATH, or a pyenv version not made global)."""
    candidates = [shutil.which(f"python{IMAGE_PYTHON}") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    pattern = f"{pyenv_root}/versions/{IMAGE_PYTHON}.*/bin/python{IMAGE_PYTHON}"
    candidates += sorted(glob.glob(pattern))
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue  # a pyenv shim without that version installed, say
        if probe.returncode == 0 and probe.stdout.strip() == IMAGE_PYTHON:
            return candidate
    return None


def image_python_venv() -> str | None:
    """The suite's interpreter for the image's Python: a venv beside .venv, made once and kept
    up to date with pyproject.toml as `make` keeps .venv."""
    interpreter = find_image_python()
    if interpreter is None:
        print(f"Python {IMAGE_PYTHON}: not on this machine; both runs use {sys.version.split()[0]}")
        return None
    python = IMAGE_VENV / "bin" / "python"
    stamp = IMAGE_VENV / ".installed"
    pyproject = ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < pyproject.stat().st_mtime:
        print(f"Python {IMAGE_PYTHON}: installing the project into {IMAGE_VENV.name}", flush=True)
        steps = [
            [interpreter, "-m", "venv", str(IMAGE_VENV)],
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [str(python), "-m", "pip", "install", "--quiet", "-e", ".[dev]"],
        ]
        for step in steps:
            done = subprocess.run(step, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                # pip's warnings are noise when it works; when it fails they are the reason
                print(done.stderr[-4000:])
                here = sys.version.split()[0]
                print(f"Python {IMAGE_PYTHON}: install failed; both runs use {here}")
                return None
        stamp.touch()
    return str(python)


def run_suite(
    database: str, env: dict[str, str], args: list[str], python: str = sys.executable
) -> tuple[str, int, float]:
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    label = f"{database}, Python {version}"
    print(f"\n=== test suite on {label} ===", flush=True)
    started = time.monotonic()
    # The slowest tests are named in every run, so a test that grows slow is seen when it does.
    command = [python, "-m", "pytest", "--durations=15", *args]
    code = subprocess.call(command, cwd=ROOT, env=env)
    return label, code, time.monotonic() - started


def main() -> int:
    args = sys.argv[1:]
    ensure_chromium()
    ensure_nginx()
    base_env = {k: v for k, v in os.environ.items() if k != "VAULT_SERVICE_TEST_DATABASE_URL"}
    postgres = reachable_postgres()
    sqlite_args = args
    if postgres and "-m" not in args:
        # The production topology (tests/test_topology.py: a raft cluster, two replicas, a worker
        # and nginx as processes, a minute or two) runs once, on production's database.
        print("Production topology test: in the PostgreSQL run only (compose's database)")
        sqlite_args = ["-m", "not production_topology", *args]
    results = [run_suite("SQLite", base_env, sqlite_args)]
    if postgres:
        env = dict(base_env, VAULT_SERVICE_TEST_DATABASE_URL=postgres)
        python = image_python_venv() or sys.executable
        results.append(run_suite("PostgreSQL", env, args, python))
    print(f"\nRedis: {redis_status()}")
    print("Databases tested:")
    for label, code, seconds in results:
        verdict = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"  {label:<30} {verdict} in {seconds:.0f}s")
    return next((code for _, code, _ in results if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
