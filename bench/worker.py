"""The purge worker under test, driven on demand instead of on its 2-second poll timer.

Started by the benchmark as `python -m bench.worker` with the same environment as gunicorn. It
builds the real app and, for each command line on stdin, runs exactly what `vault-service worker`
runs, timing it from inside:

- `purge`: one iteration of the worker's loop (`jobs.process_due_jobs(limit=1)`: claim the next
  due job, destroy and verify, record the receipt);
- `sweep`: one regular pass of the worker's loop (`vault_service.worker.run_once`; without the
  orphan sweep, which the loop runs only every few minutes);
- `sweep-orphans`: one pass with the orphan sweep (what `vault-service sweep` runs);
- `drain [idle seconds]`: jobs one by one until none has been due for a while (the mass close);
- `profile <command> N <file>`: N runs of a command under pyinstrument, the report to a file.

Answers are JSON lines on stdout. Nothing here changes what the service does.
"""

from __future__ import annotations

import inspect
import json
import sys
import time


def main() -> int:
    from vault_service import create_app
    from vault_service.extensions import current_settings, current_vault, db
    from vault_service.services import jobs
    from vault_service.worker import run_once

    app = create_app()

    def purge_one() -> dict:
        with app.app_context():
            try:
                done = sum(
                    jobs.process_due_jobs(current_settings(), current_vault(), limit=1).values()
                )
            finally:
                db.session.remove()
        return {"done": done}

    # The worker's loop runs the orphan sweep (a listing of Vault's KV mount and transit keys)
    # only every few minutes; a regular pass skips it. Older versions had no such switch.
    has_orphan_switch = "orphans" in inspect.signature(run_once).parameters

    def sweep_once(orphans: bool = False) -> dict:
        if has_orphan_switch:
            return {"report": run_once(app, orphans=orphans).as_json()}
        return {"report": run_once(app).as_json()}

    def drain(idle_seconds: float) -> dict:
        """The worker's loop without its poll timer: take due jobs one by one until none has
        been due for `idle_seconds` (the mass close starts its workers before the burst of
        closes). Wall-clock times of the first and last completed job let the benchmark take
        the drain time across several worker processes."""
        done, first, last = 0, None, None
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_seconds:
            if purge_one()["done"]:
                done += 1
                last = time.time()
                first = first or last
                idle_since = time.monotonic()
            else:
                time.sleep(0.01)
        return {"done": done, "first_done_at": first, "last_done_at": last}

    commands = {
        "purge": purge_one,
        "drain": lambda: drain(float(argument or 2)),
        "sweep": sweep_once,
        "sweep-orphans": lambda: sweep_once(orphans=True),
    }
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        name, _, argument = line.strip().partition(" ")
        if name == "quit":
            break
        if name == "profile":
            # `profile <command> <count> <output file>`: the command, under pyinstrument.
            target, count, output = argument.split(" ", 2)
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            with profiler:
                for _ in range(int(count)):
                    commands[target]()
            with open(output, "w") as handle:
                handle.write(profiler.output_text(unicode=True, show_all=False))
            print(json.dumps({"ok": True}), flush=True)
            continue
        started_cpu, started = time.process_time(), time.perf_counter()
        try:
            answer = commands[name]()
        except Exception as error:  # noqa: BLE001 - reported to the benchmark, which fails
            answer = {"error": type(error).__name__}
        answer["seconds"] = time.perf_counter() - started
        answer["cpu_seconds"] = time.process_time() - started_cpu
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
