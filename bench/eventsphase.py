"""Outbound events in `make bench`: what enqueuing costs a submit and a close, and deliveries/s.

Two apps run side by side on the same OpenBao, each on a database of its own: one without
outbound events, one with `VAULT_SERVICE_EVENTS_URL` set (an https receiver that is never called
here: enqueuing is the request's part; delivery is the worker's, measured apart). Each
iteration makes a ticket on both and measures its submit and its close on both, the order
alternating, so drift touches both sides alike. Then bench/events_throughput.py delivers events
from the worker's loop to a receiver on loopback.
"""

from __future__ import annotations

import time

from bench.client import Client
from bench.events_throughput import measure
from bench.lifecycle import Lifecycles
from bench.stack import App
from bench.stats import ratio, summarize

MEASURED = ("submit", "close")


def events_on_off(off: Lifecycles, on: Lifecycles, iterations: int, warmup: int = 3) -> dict:
    sides = {"off": off, "on": on}
    clients = {
        name: Client(side.app.base, side.keys.ticket_api_token, side.keys.webhook_key)
        for name, side in sides.items()
    }
    seconds: dict[str, dict[str, list[float]]] = {
        name: {op: [] for op in MEASURED} for name in sides
    }
    for index in range(warmup + iterations):
        order = ("off", "on") if index % 2 == 0 else ("on", "off")
        tickets = {name: sides[name].new_ticket("E") for name in sides}
        for name in sides:
            sides[name].service_step("create_link", clients[name], tickets[name])
        for op in MEASURED:
            for name in order:
                begin = time.perf_counter()
                sides[name].service_step(op, clients[name], tickets[name])
                if index >= warmup:
                    seconds[name][op].append(time.perf_counter() - begin)
    out: dict = {"iterations": iterations}
    for op in MEASURED:
        off_summary, on_summary = summarize(seconds["off"][op]), summarize(seconds["on"][op])
        out[op] = {
            "off": off_summary,
            "on": on_summary,
            "difference_p50_ms": on_summary["p50_ms"] - off_summary["p50_ms"],
            "ratio_p50": ratio(on_summary["p50_ms"], off_summary["p50_ms"]),
        }
    return out


def drain_purges(app: App) -> int:
    """Run the app's due purges (the closes above queued them) so later phases start clean."""
    done = 0
    while app.command("purge")["done"]:
        done += 1
    return done


def deliveries(database_url: str, events_count: int = 2000, tickets: int = 50) -> dict:
    return measure(events_count, tickets, database_url)
