"""The mass close: a help desk closes N tickets in one bulk action, and the queue drains.

Each round: N tickets (two items and one live grant each) are made through the service, the
same N leases through the floor; W driven worker processes start draining (bench/worker.py
`drain`), and one burst of signed `ticket.closed` webhooks from `burst` concurrent clients closes
every ticket. Measured: each close's acknowledgement (the 202) while the workers purge, the drain
time (burst start to the last purge done, across the W processes), purges per second; then the
floor purges its N leases with W hvac clients (the same Vault calls, call for call), and the
ratio of the two rates. Every ticket is checked `purged` through the ticket API afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.client import Client
from bench.lifecycle import Lifecycles, Ticket, _in_threads
from bench.stack import read_answer, send_command, stop_worker
from bench.stats import percentile, ratio, summarize

# A worker stops once no job has been due for this long: longer than any gap between two closes
# of the burst, so no worker quits while closes are still arriving.
IDLE_SECONDS = 3.0


@dataclass
class Round:
    tickets: int
    workers: int
    ack_seconds: list[float] = field(default_factory=list)
    burst_seconds: float = 0.0
    drain_seconds: float = 0.0
    purged: int = 0
    floor_seconds: float = 0.0


def _seed(lifecycles: Lifecycles, clients: list[Client], tickets: list[Ticket]) -> None:
    """Each ticket: a link, a submission of two items, one access request (one live grant);
    beside it the floor's lease with the same material. Not measured."""
    shares = [tickets[k :: len(clients)] for k in range(len(clients))]
    floors = [lifecycles.floor() for _ in clients]

    def seed(client: Client, floor_index: int, share: list[Ticket]) -> list[float]:
        client.fresh_connection()
        floor = floors[floor_index]
        for ticket in share:
            for op in ("create_link", "submit", "request_access"):
                lifecycles.service_step(op, client, ticket)
                lifecycles.floor_step(op, floor, ticket)
        return []

    _in_threads(seed, [(c, k, s) for k, (c, s) in enumerate(zip(clients, shares, strict=True))])


def run_round(lifecycles: Lifecycles, clients: list[Client], count: int, workers: int) -> Round:
    result = Round(count, workers)
    tickets = [lifecycles.new_ticket(f"M{workers}") for _ in range(count)]
    _seed(lifecycles, clients, tickets)
    app = lifecycles.app
    processes = [app.spawn_worker(f"drain-{workers}-{k}") for k in range(workers)]
    try:
        for process in processes:
            send_command(process, f"drain {IDLE_SECONDS}")
        for client in clients:
            client.fresh_connection()
        shares = [tickets[k :: len(clients)] for k in range(len(clients))]

        def close(client: Client, share: list[Ticket]) -> list[float]:
            out = []
            for ticket in share:
                begin = time.perf_counter()
                client.close(ticket.ref)
                out.append(time.perf_counter() - begin)
            return out

        started_wall, started = time.time(), time.perf_counter()
        result.ack_seconds = _in_threads(close, list(zip(clients, shares, strict=True)))
        result.burst_seconds = time.perf_counter() - started
        answers = [read_answer(process, "drain") for process in processes]
    finally:
        for process in processes:
            stop_worker(process)
    result.purged = sum(a["done"] for a in answers)
    last = max((a["last_done_at"] for a in answers if a["last_done_at"]), default=started_wall)
    result.drain_seconds = last - started_wall
    if result.purged != count:
        raise RuntimeError(f"mass close: {result.purged} purges done for {count} closed tickets")
    checker = clients[0]
    checker.fresh_connection()
    for ticket in tickets:
        lifecycles.service_step("ticket_api", checker, ticket)

    # The floor: the same purges from as many hvac clients as there were worker processes.
    floors = [lifecycles.floor() for _ in range(workers)]
    floor_shares = [tickets[k::workers] for k in range(workers)]

    def purge(floor_index: int, share: list[Ticket]) -> list[float]:
        for ticket in share:
            lifecycles.floor_step("purge", floors[floor_index], ticket)
        return []

    started = time.perf_counter()
    _in_threads(purge, list(enumerate(floor_shares)))
    result.floor_seconds = time.perf_counter() - started
    return result


def mass_close(
    lifecycles: Lifecycles, sizes: tuple[int, ...], workers: tuple[int, ...], burst: int
) -> list[Round]:
    """The first size drained by each worker count; larger sizes by the most workers only (how
    the drain time grows with the number of tickets)."""
    clients = [lifecycles.client(k) for k in range(burst)]
    rounds = []
    for index, size in enumerate(sizes):
        for count in workers if index == 0 else workers[-1:]:
            rounds.append(run_round(lifecycles, clients, size, count))
    return rounds


def summarize_rounds(rounds: list[Round]) -> list[dict]:
    out = []
    for r in rounds:
        rate = r.purged / r.drain_seconds if r.drain_seconds else None
        floor_rate = r.tickets / r.floor_seconds if r.floor_seconds else None
        acks = summarize(r.ack_seconds, r.burst_seconds)
        out.append(
            {
                "tickets": r.tickets,
                "workers": r.workers,
                "close_ack": acks,
                "close_ack_p99_ms": percentile(r.ack_seconds, 99) * 1000,
                "burst_seconds": r.burst_seconds,
                "drain_seconds": r.drain_seconds,
                "purges_per_s": rate,
                "floor_seconds": r.floor_seconds,
                "floor_purges_per_s": floor_rate,
                "ratio_to_floor": ratio(rate or 0.0, floor_rate or 0.0),
            }
        )
    return out
