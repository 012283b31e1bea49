"""Complete lifecycles over HTTP beside the floor: sequential, concurrent, and a large purge.

Each ticket goes: create link -> submit (two items) -> request access -> ticket page (the grant
id) -> reveal -> close webhook -> purge (the worker's next job) -> ticket API (status purged).
Every operation with Vault calls is paired with the same calls made directly (the floor), run
right before or after it (alternating), so machine drift touches both sides alike.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench import pyspy
from bench.auditlog import AuditLog, shape
from bench.client import Client, UnexpectedResponse, throwaway_items
from bench.floor import Floor, FloorLease
from bench.procs import cpu_seconds, group_cpu_seconds
from bench.stack import App, Secrets, agent_name

OPERATIONS = (
    "create_link",
    "submit",
    "request_access",
    "ticket_page",
    "reveal",
    "close",
    "purge",
    "ticket_api",
    # Not a lifecycle step: the framework's own cost per request (no database, no Vault).
    "healthz",
)
# Operations whose Vault calls the floor makes too (the others make none).
FLOORED = ("create_link", "submit", "request_access", "reveal", "purge")

# The fewest Vault calls each operation can make under the current design (one KV entry per
# item, Vault tokens stored only wrapped by the app key, every purge verified through Vault's
# API), for `items` items and `grants` grants. What the service makes is counted; this is what it
# is judged against (README "Performance" explains each line).
MINIMUM_CALLS = {
    "create_link": lambda items, grants: 4,  # create key, allow deletion, lease token, wrap it
    "submit": lambda items, grants: 1 + items,  # one batch encrypt, one write per item
    "request_access": lambda items, grants: 3,  # unwrap lease token, mint grant, wrap grant
    "ticket_page": lambda items, grants: 0,
    "reveal": lambda items, grants: 2 + items,  # unwrap grant, one read per item, batch decrypt
    "close": lambda items, grants: 0,
    # destroy: revoke the lease token (its grants are its children), delete the key, list,
    # delete each item, delete the entity; verify: look up every token, read the key, list,
    # read the entity (an empty listing already proves every item's metadata gone); sign the
    # receipt: its key never leaves Vault, so the signature is a call of its own (the key
    # version for the kid comes back with it, so nothing is read before).
    "purge": lambda items, grants: 9 + items + grants,
    "ticket_api": lambda items, grants: 0,
    "healthz": lambda items, grants: 0,
}


@dataclass
class OpRecord:
    """Everything measured for one operation in one phase."""

    seconds: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    shapes: dict[str, int] = field(default_factory=dict)
    app_cpu: float = 0.0
    vault_cpu: float = 0.0
    wall: float | None = None
    floor_seconds: list[float] = field(default_factory=list)
    floor_calls: list[int] = field(default_factory=list)
    floor_shapes: dict[str, int] = field(default_factory=dict)
    floor_vault_cpu: float = 0.0
    floor_client_cpu: float = 0.0
    floor_wall: float | None = None


@dataclass
class Ticket:
    """One lifecycle's state on both sides."""

    ref: str
    items: list[dict]
    markers: list[str]
    link_path: str = ""
    grant_id: str = ""
    grants: int = 0
    floor: FloorLease | None = None


class Lifecycles:
    """Drives lifecycles against one running app and the floor, counting Vault calls."""

    def __init__(
        self,
        app: App,
        vault_addr: str,
        floor_token: str,
        vault_pid: int,
        audit: AuditLog,
        keys: Secrets,
    ):
        self.app = app
        self.vault_addr = vault_addr
        self.floor_token = floor_token
        self.vault_pid = vault_pid
        self.audit = audit
        self.keys = keys
        self.tag = uuid.uuid4().hex[:6]
        self._counter = 0
        self._lock = threading.Lock()
        self._clients: dict[int, Client] = {}

    # -- building blocks --------------------------------------------------------------------

    def client(self, index: int = 0) -> Client:
        """Client `index`, logged in as its own agent (once: each agent logs in one time)."""
        if index not in self._clients:
            client = Client(self.app.base, self.keys.ticket_api_token, self.keys.webhook_key)
            client.login(agent_name(index), self.keys.agent_password)
            self._clients[index] = client
        return self._clients[index]

    def floor(self) -> Floor:
        return Floor(self.vault_addr, self.floor_token, self.app.env["VAULT_SERVICE_DEPLOYMENT_ID"])

    def new_ticket(self, prefix: str, item_count: int = 2) -> Ticket:
        with self._lock:
            self._counter += 1
            ref = f"{prefix}-{self.tag}-{self._counter}"
        items, markers = throwaway_items(item_count)
        return Ticket(ref, items, markers)

    def _app_pids(self, op: str) -> list[int]:
        return [self.app.worker.pid] if op == "purge" else self.app.gunicorn_worker_pids()

    def service_step(self, op: str, client: Client, ticket: Ticket) -> float | None:
        """Run one operation through the service; returns the worker's own timing for purge."""
        if op == "create_link":
            ticket.link_path = client.create_link(ticket.ref)
        elif op == "submit":
            client.submit(ticket.link_path, ticket.items)
        elif op == "request_access":
            client.request_access(ticket.ref)
            ticket.grants += 1
        elif op == "ticket_page":
            ticket.grant_id = client.ticket_page(ticket.ref)
        elif op == "reveal":
            page = client.reveal(ticket.ref, ticket.grant_id)
            if not all(marker in page for marker in ticket.markers):
                raise UnexpectedResponse("reveal: the submitted values are not on the page")
        elif op == "close":
            client.close(ticket.ref)
        elif op == "purge":
            answer = self.app.command("purge")
            if answer["done"] != 1:
                raise UnexpectedResponse("purge: the worker found no due job")
            return answer["seconds"]
        elif op == "ticket_api":
            status = client.ticket_status(ticket.ref)
            if status["status"] != "purged" or not status["purge_receipt"]:
                raise UnexpectedResponse("ticket API: the ticket is not purged")
        elif op == "healthz":
            client.healthz()
        return None

    def floor_step(self, op: str, floor: Floor, ticket: Ticket) -> None:
        if op == "create_link":
            ticket.floor = floor.create_link()
        elif op == "submit":
            floor.submit(ticket.floor, ticket.items)
        elif op == "request_access":
            floor.request_access(ticket.floor)
        elif op == "reveal":
            plaintexts = floor.reveal(ticket.floor)
            if not all(any(m in p for p in plaintexts) for m in ticket.markers):
                raise RuntimeError("floor reveal: values differ")
        elif op == "purge":
            floor.purge(ticket.floor)

    def _measure_service(
        self, record: OpRecord, op: str, client: Client, ticket: Ticket, keep: bool
    ) -> None:
        pids = self._app_pids(op)
        self.audit.take()
        app_cpu, vault_cpu = group_cpu_seconds(pids), cpu_seconds(self.vault_pid)
        started = time.perf_counter()
        inner = self.service_step(op, client, ticket)
        elapsed = time.perf_counter() - started
        app_cpu = group_cpu_seconds(pids) - app_cpu
        vault_cpu = cpu_seconds(self.vault_pid) - vault_cpu
        calls = self.audit.take()
        if keep:
            record.seconds.append(inner if inner is not None else elapsed)
            record.calls.append(len(calls))
            record.app_cpu += app_cpu
            record.vault_cpu += vault_cpu
            if not record.shapes:
                record.shapes = shape(calls)

    def _measure_floor(
        self, record: OpRecord, op: str, floor: Floor, ticket: Ticket, keep: bool
    ) -> None:
        self.audit.take()
        vault_cpu, client_cpu = cpu_seconds(self.vault_pid), time.thread_time()
        started = time.perf_counter()
        self.floor_step(op, floor, ticket)
        elapsed = time.perf_counter() - started
        client_cpu = time.thread_time() - client_cpu
        vault_cpu = cpu_seconds(self.vault_pid) - vault_cpu
        calls = self.audit.take()
        if keep:
            record.floor_seconds.append(elapsed)
            record.floor_calls.append(len(calls))
            record.floor_vault_cpu += vault_cpu
            record.floor_client_cpu += client_cpu
            if not record.floor_shapes:
                record.floor_shapes = shape(calls)

    # -- one client, one step at a time -------------------------------------------------------

    def sequential(self, iterations: int, warmup: int) -> dict[str, OpRecord]:
        """Lifecycles one after another; each step measured beside its floor, order alternating."""
        records = {op: OpRecord() for op in OPERATIONS}
        client, floor = self.client(), self.floor()
        for index in range(warmup + iterations):
            keep = index >= warmup
            ticket = self.new_ticket("S")
            service_first = index % 2 == 0
            for op in OPERATIONS:
                record = records[op]
                if op not in FLOORED:
                    self._measure_service(record, op, client, ticket, keep)
                elif service_first:
                    self._measure_service(record, op, client, ticket, keep)
                    self._measure_floor(record, op, floor, ticket, keep)
                else:
                    self._measure_floor(record, op, floor, ticket, keep)
                    self._measure_service(record, op, client, ticket, keep)
        return records

    # -- concurrent clients -----------------------------------------------------------------

    def concurrent(self, lifecycles: int, concurrency: int) -> dict[str, OpRecord]:
        """`concurrency` clients drive `lifecycles` tickets stage by stage (all links, then all
        submissions, ...), so each operation's latency and throughput under load is its own.
        The floor runs each stage with as many threads, alternating which side goes first.
        Purge is the worker's: one process draining the queue of due jobs, as in production.
        """
        clients = [self.client(k) for k in range(concurrency)]
        floors = [self.floor() for _ in range(concurrency)]
        # Warm every connection and both gunicorn workers (AppRole login, token lookup).
        warm = [self.new_ticket("W") for _ in range(concurrency)]
        self._stage_service("create_link", clients, [[t] for t in warm], OpRecord(), False)
        self._stage_service("submit", clients, [[t] for t in warm], OpRecord(), False)
        tickets = [self.new_ticket("C") for _ in range(lifecycles)]
        shares = [tickets[k::concurrency] for k in range(concurrency)]
        records = {op: OpRecord() for op in OPERATIONS}
        for stage, op in enumerate(OPERATIONS):
            record = records[op]
            if op not in FLOORED:
                self._stage_service(op, clients, shares, record, True)
            elif stage % 2 == 0:
                self._stage_service(op, clients, shares, record, True)
                self._stage_floor(op, floors, shares, record)
            else:
                self._stage_floor(op, floors, shares, record)
                self._stage_service(op, clients, shares, record, True)
        # Leave nothing behind in Vault: the next phase's orphan sweep must find nothing to do.
        for ticket in warm:
            self.service_step("close", clients[0], ticket)
            self.service_step("purge", clients[0], ticket)
        return records

    def _stage_service(
        self,
        op: str,
        clients: list[Client],
        shares: list[list[Ticket]],
        record: OpRecord,
        keep: bool,
    ) -> None:
        pids = self._app_pids(op)
        self.audit.take()
        app_cpu, vault_cpu = group_cpu_seconds(pids), cpu_seconds(self.vault_pid)
        latencies: list[float] = []
        started = time.perf_counter()
        if op == "purge":
            for ticket in (t for share in shares for t in share):
                latencies.append(self.service_step(op, clients[0], ticket))
        else:

            def run(client: Client, share: list[Ticket]) -> list[float]:
                client.fresh_connection()
                out = []
                for ticket in share:
                    begin = time.perf_counter()
                    self.service_step(op, client, ticket)
                    out.append(time.perf_counter() - begin)
                return out

            latencies = _in_threads(run, list(zip(clients, shares, strict=True)))
        wall = time.perf_counter() - started
        calls = self.audit.take()
        if keep:
            record.seconds = latencies
            record.wall = wall
            record.app_cpu = group_cpu_seconds(pids) - app_cpu
            record.vault_cpu = cpu_seconds(self.vault_pid) - vault_cpu
            count = max(len(latencies), 1)
            record.calls = [round(len(calls) / count)]
            record.shapes = {k: round(v / count, 2) for k, v in shape(calls).items()}

    def _stage_floor(
        self, op: str, floors: list[Floor], shares: list[list[Ticket]], record: OpRecord
    ) -> None:
        self.audit.take()
        vault_cpu = cpu_seconds(self.vault_pid)
        started = time.perf_counter()
        client_cpu = [0.0]

        def run(floor: Floor, share: list[Ticket]) -> list[float]:
            out, cpu = [], time.thread_time()
            for ticket in share:
                begin = time.perf_counter()
                self.floor_step(op, floor, ticket)
                out.append(time.perf_counter() - begin)
            with self._lock:
                client_cpu[0] += time.thread_time() - cpu
            return out

        if op == "purge":  # one worker, one thread: the floor drains the same way
            latencies = run(floors[0], [t for share in shares for t in share])
        else:
            latencies = _in_threads(run, list(zip(floors, shares, strict=True)))
        record.floor_wall = time.perf_counter() - started
        calls = self.audit.take()
        record.floor_seconds = latencies
        record.floor_vault_cpu = cpu_seconds(self.vault_pid) - vault_cpu
        record.floor_client_cpu = client_cpu[0]
        record.floor_calls = [round(len(calls) / max(len(latencies), 1))]
        record.floor_shapes = {k: round(v / len(latencies), 2) for k, v in shape(calls).items()}

    # -- the large purge ----------------------------------------------------------------------

    def large_purge(self, iterations: int, items: int, grants: int) -> OpRecord:
        """Purge of a ticket holding `items` items and `grants` live grants, beside its floor."""
        record = OpRecord()
        client, floor = self.client(), self.floor()
        client.fresh_connection()
        for index in range(iterations + 1):  # the first one warms up
            keep = index > 0
            ticket = self.new_ticket("P", items)
            self.service_step("create_link", client, ticket)
            self.service_step("submit", client, ticket)
            for _ in range(grants):
                self.service_step("request_access", client, ticket)
            self.service_step("close", client, ticket)
            self.floor_step("create_link", floor, ticket)
            self.floor_step("submit", floor, ticket)
            for _ in range(grants):
                self.floor_step("request_access", floor, ticket)
            if index % 2 == 0:
                self._measure_service(record, "purge", client, ticket, keep)
                self._measure_floor(record, "purge", floor, ticket, keep)
            else:
                self._measure_floor(record, "purge", floor, ticket, keep)
                self._measure_service(record, "purge", client, ticket, keep)
            self.service_step("ticket_api", client, ticket)
        return record


def profile_lifecycles(lifecycles: Lifecycles, iterations: int, prefix: Path) -> dict:
    """`iterations` lifecycles (service only) with py-spy sampling gunicorn and the worker."""
    app = lifecycles.app
    client = lifecycles.client()
    client.fresh_connection()
    raws = [prefix.with_name(f"{prefix.name}-pyspy-{n}.txt") for n in ("app", "worker")]
    rate = 250
    with (
        pyspy.record(app.gunicorn.pid, raws[0], rate, subprocesses=True),
        pyspy.record(app.worker.pid, raws[1], rate),
    ):
        time.sleep(1.5)  # py-spy attaches
        for _ in range(iterations):
            ticket = lifecycles.new_ticket("F")
            for op in OPERATIONS:
                lifecycles.service_step(op, client, ticket)
        time.sleep(0.5)
    table = pyspy.profile_table(raws, rate, dict.fromkeys(OPERATIONS, iterations))
    return {
        "iterations": iterations,
        "rate_hz": rate,
        "raw": [str(r) for r in raws],
        "table": table,
    }


def _in_threads(run: Callable, work: list[tuple]) -> list[float]:
    """Run `run(*args)` for each args in its own thread; all latencies, failures re-raised."""
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        futures = [pool.submit(run, *args) for args in work]
        return [latency for future in futures for latency in future.result()]
