"""Child processes for tests: each in its own process group (a kill reaches gunicorn's workers
too), and tied to pytest (if pytest dies, the kernel stops them)."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress
from pathlib import Path

from vault_service.embedded_openbao import _die_with_parent

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A child in its own process group, so that a kill reaches gunicorn's workers as well."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv,
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # If pytest itself dies, the kernel stops the child (embedded_openbao does it too).
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> int:
        """SIGKILL the whole group: a crash, no shutdown code runs anywhere."""
        self._signal_group(signal.SIGKILL)
        return self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), SIGKILL after `timeout`; stragglers of the group go too."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(10)
        self._signal_group(signal.SIGKILL)
