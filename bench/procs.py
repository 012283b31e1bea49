"""CPU time and peak memory of the processes under test (gunicorn, the worker, OpenBao)."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads), in seconds, at nanosecond resolution.

    /proc/<pid>/task/*/schedstat counts nanoseconds on a CPU per thread; psutil's cpu_times
    are in clock ticks (10 ms), too coarse for one request. psutil is the fallback.
    """
    total = 0
    tasks = Path(f"/proc/{pid}/task")
    try:
        for task in tasks.iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return total / 1e9
    except OSError:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system


def group_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds summed over processes."""
    return sum(cpu_seconds(pid) for pid in pids)


class MemorySampler:
    """Samples the RSS of named process groups in a background thread and keeps the peaks."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self._groups: dict[str, list[int]] = {}
        self._peaks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def watch(self, role: str, pids: list[int]) -> None:
        """Sample these pids as `role` (the largest single process of the role is its peak)."""
        with self._lock:
            self._groups[role] = list(pids)

    def reset(self) -> None:
        """Start new peaks (one per phase)."""
        with self._lock:
            self._peaks = {}

    def peaks_mib(self) -> dict[str, float]:
        """Peak RSS per role since the last reset, in MiB."""
        self._sample()
        with self._lock:
            return {role: round(rss / 2**20, 1) for role, rss in sorted(self._peaks.items())}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        with self._lock:
            groups = dict(self._groups)
        for role, pids in groups.items():
            for pid in pids:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                with self._lock:
                    self._peaks[role] = max(self._peaks.get(role, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
