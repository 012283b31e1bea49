"""Summaries, targets and the Markdown table, from what the phases measured."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.lifecycle import FLOORED, MINIMUM_CALLS, OPERATIONS, OpRecord
from bench.pyspy import SHARED
from bench.scale import SCALE_MEASUREMENTS
from bench.stats import most_common, ratio, summarize

RATIO_TARGET = 1.5
TAIL_TARGET = 2.0  # p99 under concurrency, against the floor's p99 at the same concurrency
RATIO_OPERATIONS = ("submit", "reveal", "purge")
SCALE_TARGET = 2.0
ACK_TARGET_MS = 100.0  # every close acknowledged within this (p99) while the queue drains
DRAIN_TARGET = 0.8  # purges per second, against the floor's with as many hvac clients


def _ms_per(seconds: float, count: int) -> float:
    return seconds / count * 1000 if count else math.nan


def summarize_op(op: str, record: OpRecord, items: int = 2, grants: int = 1) -> dict:
    """One operation's numbers: latency, throughput, Vault calls, CPU, and the floor beside."""
    service = summarize(record.seconds, record.wall)
    count = len(record.seconds)
    out = {
        **service,
        "vault_calls": most_common(record.calls),
        "vault_calls_seen": sorted(set(record.calls)),
        "vault_call_shapes": record.shapes,
        "minimum_vault_calls": MINIMUM_CALLS[op](items, grants),
        "app_cpu_ms_per_request": _ms_per(record.app_cpu, count),
        "vault_cpu_ms_per_request": _ms_per(record.vault_cpu, count),
        "floor": None,
        "ratio_p50": None,
        "ratio_p99": None,
    }
    if record.floor_seconds:
        floor = summarize(record.floor_seconds, record.floor_wall)
        floor_count = len(record.floor_seconds)
        out["floor"] = {
            **floor,
            "vault_calls": most_common(record.floor_calls),
            "vault_call_shapes": record.floor_shapes,
            "client_cpu_ms_per_request": _ms_per(record.floor_client_cpu, floor_count),
            "vault_cpu_ms_per_request": _ms_per(record.floor_vault_cpu, floor_count),
        }
        out["ratio_p50"] = ratio(service["p50_ms"], floor["p50_ms"])
        out["ratio_p99"] = ratio(service["p99_ms"], floor["p99_ms"])
    return out


def summarize_phase(records: dict[str, OpRecord]) -> dict:
    return {op: summarize_op(op, records[op]) for op in OPERATIONS}


def summarize_scale(scale: dict) -> dict:
    out: dict = {"sizes": {}, "ratios": {}}
    for size, data in scale.items():
        entry = {"seed_seconds": data["seed_seconds"], "peak_rss_mib": data["peak_rss_mib"]}
        if "profile" in data:
            entry["profile"] = data["profile"]
        for name, samples in data["samples"].items():
            entry[name] = {
                **summarize(samples),
                "cpu_ms_per_request": _ms_per(data["cpu_seconds"][name], len(samples)),
                "vault_calls": data["vault_calls"][name],
            }
        out["sizes"][size] = entry
    sizes = sorted(out["sizes"], key=int)
    if len(sizes) >= 2:
        small, large = out["sizes"][sizes[0]], out["sizes"][sizes[-1]]
        out["ratio_label"] = f"{_size(sizes[-1])}/{_size(sizes[0])}"
        for name in SCALE_MEASUREMENTS:
            out["ratios"][name] = {
                "p50": ratio(large[name]["p50_ms"], small[name]["p50_ms"]),
                "p99": ratio(large[name]["p99_ms"], small[name]["p99_ms"]),
            }
    return out


@dataclass
class Verdict:
    target: str
    value: str
    met: bool | None


def verdicts(summary: dict) -> list[Verdict]:
    """Each target of the issue, met or missed, from the summaries."""
    out = []
    for op in RATIO_OPERATIONS:
        value = summary["sequential"][op]["ratio_p50"]
        out.append(
            Verdict(
                f"{op}: service/floor p50 ≤ {RATIO_TARGET} (one client)",
                _x(value),
                None if value is None else value <= RATIO_TARGET,
            )
        )
    for level, phase in summary["concurrent"].items():
        for op in FLOORED:
            for key, limit in (("ratio_p50", RATIO_TARGET), ("ratio_p99", TAIL_TARGET)):
                value = phase[op][key]
                out.append(
                    Verdict(
                        f"{op}: service/floor {key[6:]} ≤ {limit} ({level} clients)",
                        _x(value),
                        None if value is None else value <= limit,
                    )
                )
    for op in OPERATIONS:
        counted = summary["sequential"][op]["vault_calls"]
        minimum = summary["sequential"][op]["minimum_vault_calls"]
        if counted is None:
            continue
        out.append(
            Verdict(
                f"{op}: no avoidable Vault call",
                f"{counted} (fewest {minimum})",
                counted <= minimum,
            )
        )
    for r in summary.get("mass_close", []):
        where = f"mass close of {r['tickets']}, {r['workers']} worker(s)"
        ack = r["close_ack_p99_ms"]
        out.append(
            Verdict(f"{where}: close ack p99 ≤ {ACK_TARGET_MS:.0f} ms", f"{ack:.1f} ms", ack <= 100)
        )
        value = r["ratio_to_floor"]
        out.append(
            Verdict(
                f"{where}: purges/s ≥ {DRAIN_TARGET:.0%} of the floor's",
                f"{value:.0%}" if value is not None else "–",
                None if value is None else value >= DRAIN_TARGET,
            )
        )
    large = summary.get("large_purge")
    if large:
        out.append(
            Verdict(
                f"purge of {large['items']} items + {large['grants']} live grants: "
                "no avoidable Vault call",
                f"{large['vault_calls']} (fewest {large['minimum_vault_calls']})",
                large["vault_calls"] <= large["minimum_vault_calls"],
            )
        )
    scale = summary.get("scale")
    if scale and scale["ratios"]:
        for name, label in SCALE_MEASUREMENTS.items():
            value = scale["ratios"][name]["p50"]
            out.append(
                Verdict(
                    f"{label}: {scale['ratio_label']} p50 ≤ {SCALE_TARGET}",
                    _x(value),
                    None if value is None else value <= SCALE_TARGET,
                )
            )
    return out


# -- Markdown ---------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _size(size: str | int) -> str:
    size = int(size)
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


def _calls(op_summary: dict) -> str:
    service = op_summary["vault_calls"]
    floor = op_summary["floor"]["vault_calls"] if op_summary["floor"] else None
    text = (
        f"{service} / {floor if floor is not None else '–'} / {op_summary['minimum_vault_calls']}"
    )
    if floor is not None and floor != service:
        text += " ⚠"
    return text


def _loads(machine: dict, when: str) -> str:
    return " / ".join(str(x) for x in machine.get(f"load_average_at_{when}", []))


def _label(op: str) -> str:
    return "healthz (reference)" if op == "healthz" else op.replace("_", " ")


def lifecycle_table(phase: dict) -> list[str]:
    lines = [
        "| operation | n | p50 ms | p95 ms | p99 ms | ops/s | Vault calls svc / floor / fewest "
        "| app CPU ms/op | floor p50 ms | floor p99 ms | ratio p50 | ratio p99 |",
        "|---|--:|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|",
    ]
    for op in OPERATIONS:
        s = phase[op]
        floor = s["floor"] or {}
        lines.append(
            f"| {_label(op)} | {s['n']} | {_f(s['p50_ms'])} | {_f(s['p95_ms'])} "
            f"| {_f(s['p99_ms'])} | {_f(s['throughput_per_s'])} | {_calls(s)} "
            f"| {_f(s['app_cpu_ms_per_request'])} | {_f(floor.get('p50_ms'))} "
            f"| {_f(floor.get('p99_ms'))} | {_x(s['ratio_p50'])} | {_x(s['ratio_p99'])} |"
        )
    return lines


def markdown(results: dict) -> str:
    summary = results["summary"]
    machine = results["machine"]
    config = results["config"]
    lines = [
        f"# vault_service benchmark, {results['started_at']}",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB RAM, {machine['platform']}; Python {machine['python']}, "
        f"{machine['openbao']} (pebbledb), database {machine['database']}. "
        f"Code: {machine['git']}. App: gunicorn `{machine['gunicorn']}` "
        f"({machine['gunicorn_source']}), VAULT_SERVICE_ENV=production, AppRole. "
        f"`make bench` took {results['duration_seconds']:.0f} s; load average "
        f"{_loads(machine, 'start')} at the start, {_loads(machine, 'end')} at the end "
        "(2 cores: the benchmark itself keeps about 1.5 busy).",
        "",
        "Latencies are end to end at the client (purge: the worker's own timing of one job). "
        "ops/s: one client's operations per second of busy time, or a concurrent stage's "
        "operations per second of wall time. Vault calls are counted in OpenBao's audit log: "
        "the service's, the floor's (the same calls made directly with hvac), and the fewest "
        "the operation can make; ⚠ marks a floor that did not make the service's calls. app "
        "CPU: CPU time of the gunicorn workers (purge: the worker) per operation. ratio: "
        "service / floor.",
        "",
        f"### Lifecycle, one client (n = {config['iterations']} lifecycles)",
        "",
        *lifecycle_table(summary["sequential"]),
        "",
    ]
    for level, phase in summary["concurrent"].items():
        lines += [
            f"### Lifecycle, {level} concurrent clients ({phase['lifecycles']} lifecycles, stage "
            f"by stage, the floor with {level} hvac clients; purge: one worker draining the queue)",
            "",
            *lifecycle_table(phase),
            "",
        ]
    large = summary.get("large_purge")
    if large:
        floor = large["floor"] or {}
        lines += [
            f"### Purge of a ticket with {large['items']} items and {large['grants']} live grants",
            "",
            "| n | p50 ms | p95 ms | p99 ms | Vault calls svc / floor / fewest | worker CPU ms "
            "| floor p50 ms | floor p99 ms | ratio p50 | ratio p99 |",
            "|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|",
            f"| {large['n']} | {_f(large['p50_ms'])} | {_f(large['p95_ms'])} "
            f"| {_f(large['p99_ms'])} | {_calls(large)} | {_f(large['app_cpu_ms_per_request'])} "
            f"| {_f(floor.get('p50_ms'))} | {_f(floor.get('p99_ms'))} | {_x(large['ratio_p50'])} "
            f"| {_x(large['ratio_p99'])} |",
            "",
        ]
    rounds = summary.get("mass_close")
    if rounds:
        lines += [
            f"### Mass close ({config['mass_close_burst']} clients send one burst of signed close "
            "webhooks; 2 items and 1 live grant per ticket; the workers drain while the closes "
            "arrive)",
            "",
            "| tickets | workers | close ack p50 / p99 ms | closes/s | drain s | purges/s "
            "| floor s | floor purges/s | ratio |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in rounds:
            ack = r["close_ack"]
            lines.append(
                f"| {r['tickets']} | {r['workers']} | {_f(ack['p50_ms'])} / {_f(ack['p99_ms'])} "
                f"| {_f(ack['throughput_per_s'])} | {_f(r['drain_seconds'])} "
                f"| {_f(r['purges_per_s'])} | {_f(r['floor_seconds'])} "
                f"| {_f(r['floor_purges_per_s'])} | {_x(r['ratio_to_floor'])} |"
            )
        lines.append("")
    events = summary.get("events")
    if events:
        lines += [
            f"### Outbound events (n = {events['iterations']} each side; two apps side by side, "
            "one with `VAULT_SERVICE_EVENTS_URL` set, measured alternately)",
            "",
            "| operation | events off p50 / p99 ms | events on p50 / p99 ms | on − off p50 ms "
            "| on / off p50 |",
            "|---|--:|--:|--:|--:|",
        ]
        for op in ("submit", "close"):
            off, on = events[op]["off"], events[op]["on"]
            lines.append(
                f"| {op} | {_f(off['p50_ms'])} / {_f(off['p99_ms'])} "
                f"| {_f(on['p50_ms'])} / {_f(on['p99_ms'])} "
                f"| {_f(events[op]['difference_p50_ms'])} | {_x(events[op]['ratio_p50'])} |"
            )
        delivery = events.get("delivery")
        if delivery:
            lines += [
                "",
                f"Deliveries: {delivery['events']} events over {delivery['tickets']} tickets, "
                f"{_f(delivery['deliveries_per_s'], 0)}/s by one worker process to a receiver "
                "on loopback answering 204 (signed POSTs, each ticket's events in order); `emit` "
                f"costs {_f(delivery['emit_ms_in_transaction'], 2)} ms inside a transaction "
                f"({_f(delivery['emit_ms_with_own_commit'], 2)} ms with a commit of its own).",
            ]
        lines.append("")
    scale = summary.get("scale")
    if scale:
        sizes = sorted(scale["sizes"], key=int)
        header = " | ".join(f"{_size(s)} p50 / p99 ms" for s in sizes)
        lines += [
            f"### Scale ({config['scale_open']} open tickets, the rest purged history; "
            f"n = {config['scale_requests']} each)",
            "",
            f"| measurement | {header} | {scale.get('ratio_label', '')} p50 | app CPU ms "
            f"at {_size(sizes[-1])} | Vault calls |",
            "|---|" + "--:|" * (len(sizes) + 3),
        ]
        for name, label in SCALE_MEASUREMENTS.items():
            cells = " | ".join(
                f"{_f(scale['sizes'][s][name]['p50_ms'])} / {_f(scale['sizes'][s][name]['p99_ms'])}"
                for s in sizes
            )
            ratio_value = scale["ratios"].get(name, {}).get("p50")
            largest = scale["sizes"][sizes[-1]][name]
            lines.append(
                f"| {label} | {cells} | {_x(ratio_value)} | {_f(largest['cpu_ms_per_request'])} "
                f"| {largest['vault_calls']} |"
            )
        lines += [
            "",
            "| peak RSS MiB | " + " | ".join(_size(s) for s in sizes) + " |",
            "|---|" + "--:|" * len(sizes),
        ]
        roles = sorted({role for s in sizes for role in scale["sizes"][s]["peak_rss_mib"]})
        for role in roles:
            cells = " | ".join(_f(scale["sizes"][s]["peak_rss_mib"].get(role)) for s in sizes)
            lines.append(f"| {role} | {cells} |")
        lines.append("")
    memory = summary.get("lifecycle_peak_rss_mib")
    if memory:
        lines += [
            "Peak RSS during the lifecycle phases (MiB): "
            + ", ".join(f"{role} {value}" for role, value in memory.items()),
            "",
        ]
    commit = summary.get("durable_commit")
    if commit:
        lines += [*budget_lines(summary["sequential"], commit), ""]
    lines += ["### Targets", "", "| target | measured | verdict |", "|---|--:|:-:|"]
    for verdict in verdicts(summary):
        mark = {True: "met", False: "**missed**", None: "–"}[verdict.met]
        lines.append(f"| {verdict.target} | {verdict.value} | {mark} |")
    lines.append("")
    profile = summary.get("profile")
    if profile:
        lines += [
            f"### Where the app's CPU goes (py-spy, {profile['iterations']} lifecycles, "
            "samples holding the GIL; shares of each operation's samples; sampled ms are "
            "approximate)",
            "",
            *profile_lines(profile["table"], [*OPERATIONS, SHARED]),
            "",
        ]
    if scale:
        for size in sorted(scale["sizes"], key=int):
            sized = scale["sizes"][size].get("profile")
            if sized:
                lines += [
                    f"### Where the CPU goes at {_size(size)} tickets (py-spy)",
                    "",
                    *profile_lines(sized["table"], ["dashboard", "ticket_api", "sweep", SHARED]),
                    "",
                ]
    return "\n".join(lines)


def budget_lines(sequential: dict, commit: dict) -> list[str]:
    """What one client's submit and reveal must cost whatever the code: the floor's Vault calls,
    plus what every request costs (/healthz p50: the HTTP hop, gunicorn, Flask), plus the one
    durable commit each ends with (its audit record), all measured in this run."""
    hop, durable = sequential["healthz"]["p50_ms"], commit["p50_ms"]
    lines = [
        "### One client: the floor, plus what any request and one durable commit cost",
        "",
        f"A request costs {_f(hop)} ms before it does anything (/healthz p50, this run); a "
        f"durable commit costs {_f(durable, 2)} ms (p50 of {commit['n']} one-row inserts with "
        "the app's settings beside its database, measured with Vault idle: inside a request it "
        "shares the disk with Vault's own writes and costs more). Submit and reveal each make "
        "the floor's Vault calls and end in one durable commit; the bound adds those two costs "
        "to the floor and nothing else: a service over HTTP with a durable record whose Vault "
        "calls take the floor's time gets no lower here.",
        "",
        "| operation | floor p50 ms | + request | + durable commit | = bound ms (ratio) "
        "| service p50 ms (ratio) | service − bound ms |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for op in ("submit", "reveal"):
        s = sequential[op]
        floor = (s["floor"] or {}).get("p50_ms", math.nan)
        bound = floor + hop + durable
        lines.append(
            f"| {_label(op)} | {_f(floor)} | {_f(hop)} | {_f(durable, 2)} "
            f"| {_f(bound)} ({_x(ratio(bound, floor))}) | {_f(s['p50_ms'])} "
            f"({_x(s['ratio_p50'])}) | {_f(s['p50_ms'] - bound)} |"
        )
    return lines


PROFILE_COLUMNS = [
    ("Vault client (hvac, requests, urllib3, http.client)", "Vault client"),
    ("database (SQLAlchemy, driver)", "database"),
    ("templates (Jinja2)", "templates"),
    ("session, login, CSRF", "session/login/CSRF"),
    ("logging", "logging"),
    ("Flask, Werkzeug", "Flask/Werkzeug"),
    ("gunicorn", "gunicorn"),
    ("service code", "service code"),
    ("other (stdlib, interpreter)", "other"),
]


def profile_lines(table: dict, operations: list[str]) -> list[str]:
    lines = [
        "| operation | sampled CPU ms/req | " + " | ".join(c for _, c in PROFILE_COLUMNS) + " |",
        "|---|--:|" + "--:|" * len(PROFILE_COLUMNS),
    ]
    for op in operations:
        row = table.get(op)
        if not row:
            continue
        shares = " | ".join(
            f"{row['share'].get(key, 0) * 100:.0f}%" if row["share"].get(key) else ""
            for key, _ in PROFILE_COLUMNS
        )
        label = op.replace("_", " ") if op != SHARED else f"*{op}*"
        lines.append(f"| {label} | {_f(row['sampled_cpu_ms_per_request'])} | {shares} |")
    return lines


def summarize_large_purge(record: OpRecord, items: int, grants: int) -> dict:
    return {**summarize_op("purge", record, items, grants), "items": items, "grants": grants}


__all__ = ["FLOORED", "markdown", "summarize_large_purge", "summarize_phase", "summarize_scale"]
