"""Child processes for `make dev`, the tests and the benchmark: OpenBao, gunicorn, the worker.

Each child runs in its own process group (a signal reaches gunicorn's workers too), is tied to
its parent (if the parent dies, the kernel stops it, so no run leaves servers behind), and
writes its output to a log file whose tail goes into every error about it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import requests


def free_port() -> int:
    """A loopback port nobody is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when its parent dies (no-op elsewhere).

    Linux sends the signal when the parent's *thread* that started the child ends: start
    children from a thread that outlives them (the main thread does).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


class ProcessNotReady(RuntimeError):
    """A child exited, or did not answer in time; the message carries the tail of its log."""


class Process:
    """A child in its own process group, its output appended to `log_path`.

    With `pipe_stdio`, stdin and stdout are text pipes for a child driven line by line (the
    benchmark's worker) and only stderr goes to the log.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pipe_stdio: bool = False,
    ):
        self.name = name
        self.log_path = Path(log_path)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - argv comes from our own callers
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.PIPE if pipe_stdio else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe_stdio else log,
                stderr=log if pipe_stdio else subprocess.STDOUT,
                text=pipe_stdio,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit status, or None while it runs."""
        return self.popen.poll()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_for_url(
        self, url: str, timeout: float, *, any_status: bool = False, verify: bool | str = True
    ) -> None:
        """Return once `url` answers 200 (any status with `any_status`); raise ProcessNotReady if
        the child exits or `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                raise ProcessNotReady(f"{self.name} exited ({code}):\n{self.log_tail()}")
            try:
                response = requests.get(url, timeout=2, verify=verify)
                if any_status or response.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ProcessNotReady(
                    f"{self.name} did not answer {url} within {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> int:
        """SIGKILL the whole group: a crash, no shutdown code runs anywhere."""
        self._signal_group(signal.SIGKILL)
        return self.popen.wait(10)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """`sig` to the group (graceful), SIGKILL after `timeout`; stragglers of the group too."""
        if self.popen.poll() is None:
            self._signal_group(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(10)
        self._signal_group(signal.SIGKILL)


def start_gunicorn(
    args: list[str],
    *,
    port: int,
    log_path: Path,
    env: dict[str, str],
    cwd: Path | None = None,
    ready_path: str = "/healthz",
    timeout: float = 30.0,
) -> Process:
    """gunicorn from this interpreter's environment with `args`, bound to 127.0.0.1:`port`;
    returns once `ready_path` answers 200 (and stops it if it never does)."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    argv = [str(gunicorn), *args, "--bind", f"127.0.0.1:{port}"]
    process = Process("gunicorn", argv, log_path, env=env, cwd=cwd)
    try:
        process.wait_for_url(f"http://127.0.0.1:{port}{ready_path}", timeout)
    except BaseException:
        process.stop()
        raise
    return process
