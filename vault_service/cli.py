"""`vault-service`: thin click commands over the services."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TextIO

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from .extensions import current_settings, current_vault, db
from .vault import TLSOptions, VaultError

# sysexits.h's EX_CONFIG: the configuration is wrong (2 stays click's "usage error").
EXIT_CONFIG = 78


def _create_app() -> Flask:
    from . import create_app
    from .config import ConfigError

    try:
        return create_app()
    except ConfigError as error:
        # Every problem on a line of its own, all at once; no traceback, no "No such command".
        for problem in error.problems:
            click.echo(f"configuration: {problem}", err=True)
        sys.exit(EXIT_CONFIG)


class OperatorCommands(click.Group):
    """A plain click group (not Flask's: its --app, --env-file and --version are not ours) whose
    failures to reach the database are one line, not a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as error:
            # The class names only: a driver's message can echo the connection string.
            cause = type(getattr(error, "orig", None) or error).__name__
            raise click.ClickException(
                f"database unavailable ({type(error).__name__}: {cause}); "
                "check VAULT_SERVICE_DATABASE_URL"
            ) from None


@click.group(cls=OperatorCommands)
@click.version_option(package_name="vault-service", prog_name="vault-service")
@click.pass_context
def main(ctx: click.Context) -> None:
    """vault_service operator commands. Configuration comes from the environment (see README).

    Exit codes: 0 ok, 1 the command failed, 2 a usage error, 78 a configuration error.
    """
    # The commands below that need the app build it on first use (flask's with_appcontext).
    ctx.obj = ScriptInfo(create_app=_create_app, set_debug_flag=False)


def init_app(app: Flask) -> None:
    """Attach the commands that need a configured app (all but bootstrap-vault) to app.cli."""
    for command in APP_COMMANDS:
        app.cli.add_command(command)


@click.group("migrate")
def migrate() -> None:
    """The database schema: where it is, and moving it along the shipped migrations."""


@migrate.command("current")
@with_appcontext
def migrate_current() -> None:
    """Print the database's revision and whether it is the code's head."""
    from . import schema

    with db.engine.connect() as connection:
        current = schema.current_revision(connection)
        state = schema.schema_state(connection)
    head = schema.head_revision()
    click.echo(f"{current or 'none'} (head)" if state == "ok" else f"{current or 'none'}: {state}")
    if current != head:
        sys.exit(1)


@migrate.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def migrate_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION (default: head). Idempotent."""
    from . import schema

    schema.upgrade(db.engine, revision)
    with db.engine.connect() as connection:
        click.echo(f"database at revision {schema.current_revision(connection)}")


@migrate.command("downgrade")
@click.argument("revision")
@click.confirmation_option(prompt="Step the schema back? Newer tables and columns are dropped")
@with_appcontext
def migrate_downgrade(revision: str) -> None:
    """Step the schema back to REVISION (before running older code; data in newer columns goes)."""
    from . import schema

    schema.downgrade(db.engine, revision)
    with db.engine.connect() as connection:
        click.echo(f"database at revision {schema.current_revision(connection)}")


@migrate.command("history")
def migrate_history() -> None:
    """List the shipped migrations, newest first (needs no database)."""
    from . import schema

    for line in schema.history():
        click.echo(line)


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the database schema (the same as `migrate upgrade`; idempotent)."""
    from . import schema

    schema.upgrade(db.engine)
    click.echo("database at the latest schema revision")


@click.command("db-revision")
@click.argument("message")
@with_appcontext
def db_revision(message: str) -> None:
    """Developers: write a new migration from the difference between models and database."""
    from . import schema

    schema.revision(db.engine, message)


@click.command("create-agent")
@click.argument("username")
@click.option("--role", type=click.Choice(["agent", "admin"]), default="agent", show_default=True)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@click.option(
    "--setup-link",
    is_flag=True,
    help="Choose no password: print a one-time link on which the agent chooses one.",
)
@with_appcontext
def create_agent(username: str, role: str, password_stdin: bool, setup_link: bool) -> None:
    """Create an agent. The password is prompted for (never a command-line argument), or the
    agent chooses it on a one-time set-up link (--setup-link)."""
    from .errors import ServiceError
    from .services.agent_setup import create_agent_with_setup_link
    from .services.agents import create_agent as create

    if setup_link and password_stdin:
        raise click.UsageError("--setup-link and --password-stdin exclude each other")
    try:
        if setup_link:
            issued = create_agent_with_setup_link(current_settings(), username, role, actor="cli")
            click.echo(
                f"created {role} {issued.username}; set-up link (works once, until "
                f"{issued.expires_at.isoformat()}):"
            )
            click.echo(issued.url)
            return
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        agent = create(username, password, role, actor="cli")
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"created {agent.role} {agent.username}")


@click.command("set-password")
@click.argument("username")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@with_appcontext
def set_password(username: str, password_stdin: bool) -> None:
    """Set an agent's password: every session of theirs ends and a lockout is lifted."""
    from .errors import ServiceError
    from .services.agents import set_password as set_agent_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        agent = set_agent_password(username, password, actor="cli")
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"password set for {agent.username}; their sessions have ended")


@click.command("reset-totp")
@click.argument("username")
@with_appcontext
def reset_totp(username: str) -> None:
    """Remove an agent's second factor (lost device): they enrol again at their next login."""
    from .errors import ServiceError
    from .services.agents import reset_totp as reset

    try:
        agent = reset(username, actor="cli")
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"second factor removed for {agent.username}; their sessions have ended")


@click.command("list-agents")
@with_appcontext
def list_agents() -> None:
    """List agents: username, role, state, second factor (tab-separated, one a line)."""
    from .services.admin import list_agents as listed

    for agent in listed():
        state = "disabled" if agent.disabled else "locked" if agent.locked_until else "active"
        factor = "totp" if agent.second_factor else "no-second-factor"
        click.echo(f"{agent.username}\t{agent.role}\t{state}\t{factor}")


@click.command("disable-agent")
@click.argument("username")
@with_appcontext
def disable_agent(username: str) -> None:
    """Disable an agent: their sessions end and their live grants are revoked in Vault now."""
    from .errors import ServiceError
    from .services.admin import disable_agent as disable

    try:
        ended = disable(current_vault(), username, actor="cli")
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"{username} disabled; sessions ended; {ended} live grant(s) revoked in Vault")


@click.command("enable-agent")
@click.argument("username")
@with_appcontext
def enable_agent(username: str) -> None:
    """Let a disabled agent sign in again."""
    from .errors import ServiceError
    from .services.admin import enable_agent as enable

    try:
        changed = enable(username, actor="cli")
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"{username} enabled" if changed else f"{username} was not disabled")


@click.command("unlock-agent")
@click.argument("username")
@with_appcontext
def unlock_agent(username: str) -> None:
    """Lift an agent's lockout after failed logins."""
    from .errors import ServiceError
    from .services.admin import unlock_agent as unlock

    try:
        changed = unlock(username, actor="cli")
    except ServiceError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"{username} unlocked" if changed else f"{username} was not locked")


def _vault_addresses() -> list[str]:
    """Every node in VAULT_ADDR, read as the app reads it (for commands that run without it)."""
    from .config import Settings

    return Settings(vault_addr=os.environ.get("VAULT_ADDR", "")).vault_addresses


def _operator_target(admin_token_file: Path | None) -> tuple[list[str], str, TLSOptions]:
    """Where an operator's command talks to Vault, with which token and trust: every node of
    the cluster in VAULT_ADDR (the next one when a node is down or sealed), the token from the
    file or $VAULT_SERVICE_BOOTSTRAP_TOKEN, and the app's own trust (a private CA and a client
    certificate from its variables)."""
    addr = _vault_addresses()
    token = (
        admin_token_file.read_text().strip()
        if admin_token_file
        else os.environ.get("VAULT_SERVICE_BOOTSTRAP_TOKEN", "")
    )
    if not token:
        raise click.ClickException("an admin token is needed (--admin-token-file)")
    return addr, token, TLSOptions.from_environ()


def _database_identity(url: str) -> str | None:
    """The database's own id (services/deployment.py), read without the app (bootstrap runs
    before the app can start); None when it has none yet (not migrated, or never run)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("database_identity"):
                return None
            value = connection.execute(text("SELECT database_id FROM database_identity")).scalar()
    finally:
        engine.dispose()
    return None if value is None else str(value)


# Runs before the app has a Vault token, so it must not load the app.
@main.command("bootstrap-vault", context_settings={"show_default": True})
@click.option(
    "--admin-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding an admin token (default: $VAULT_SERVICE_BOOTSTRAP_TOKEN).",
)
@click.option("--approle/--no-approle", default=False, help="Set up AppRole for the app.")
@click.option(
    "--issue-app-token",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a token with only the app policy to this file (development).",
)
def bootstrap_vault(
    admin_token_file: Path | None, approle: bool, issue_app_token: Path | None
) -> None:
    """Create or repair mounts, keys, policies and roles in Vault (idempotent)."""
    from .vault import bootstrap_vault as bootstrap
    from .vault import issue_app_token as issue

    addr, token, tls = _operator_target(admin_token_file)
    retention = int(os.environ.get("VAULT_SERVICE_MAX_RETENTION_SECONDS", 30 * 24 * 3600))
    # With the deployment's id and database, also claim the id in Vault for that database, or
    # refuse: another database already owns it (two deployments on one OpenBao, same names).
    deployment_id = os.environ.get("VAULT_SERVICE_DEPLOYMENT_ID", "").strip() or None
    database_url = os.environ.get("VAULT_SERVICE_DATABASE_URL", "")
    if deployment_id is not None and not database_url:
        click.echo("- VAULT_SERVICE_DATABASE_URL unset: the deployment id is not checked here")
        deployment_id = None
    try:
        for line in bootstrap(
            addr,
            token,
            max_retention_seconds=retention,
            enable_approle=approle,
            tls=tls,
            deployment_id=deployment_id,
            database_id=_database_identity(database_url) if deployment_id else None,
        ):
            click.echo(f"- {line}")
        if issue_app_token:
            issued = issue(addr, token, ttl_seconds=30 * 24 * 3600, tls=tls)
            fd = os.open(issue_app_token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(issued.token)
            click.echo(f"- app token written to {issue_app_token} (accessor {issued.accessor})")
    except VaultError as error:
        raise click.ClickException(str(error)) from None


# The AppRole secret id travels response-wrapped: the bootstrap writes a single-use wrapping token
# with a short TTL, the app's launcher unwraps it and keeps the secret id in memory only.
@main.command("deliver-secret-id", context_settings={"show_default": True})
@click.option(
    "--admin-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding an admin token (default: $VAULT_SERVICE_BOOTSTRAP_TOKEN).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    multiple=True,
    help="Delivery file for one app process: the role id and a wrapping token (mode 0600). "
    "Repeat for several processes: each gets its own secret id.",
)
@click.option(
    "--wrap-ttl",
    type=click.IntRange(10, 3600),
    default=300,
    help="Seconds the wrapping token lives: the consumer must start within this time.",
)
@click.option(
    "--one-off",
    is_flag=True,
    help="A secret id good for one login within 10 minutes (a one-off command such as "
    "`migrate upgrade`), not for a long-running app.",
)
def deliver_secret_id(
    admin_token_file: Path | None, out: tuple[Path, ...], wrap_ttl: int, one_off: bool
) -> None:
    """Issue a new AppRole secret id for each app process, response-wrapped, into its file."""
    from .vault import issue_wrapped_secret_id

    addr, token, tls = _operator_target(admin_token_file)
    limits = {"uses": 1, "ttl_seconds": 600} if one_off else {}
    for target in out:
        try:
            role_id, wrapping_token = issue_wrapped_secret_id(
                addr, token, wrap_ttl, tls=tls, **limits
            )
        except VaultError as error:
            raise click.ClickException(str(error)) from None
        # Written beside the target and renamed: a consumer never reads half a file.
        partial = target.with_name(f".{target.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"role_id": role_id, "wrapping_token": wrapping_token}, handle)
        partial.replace(target)
        click.echo(f"- wrapped secret id for {target.name} written (unwrap within {wrap_ttl}s)")


@main.command(
    "with-secret-id",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--delivery-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The file `deliver-secret-id` wrote; consumed (removed) here.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def with_secret_id(delivery_file: Path, command: tuple[str, ...]) -> None:
    """Unwrap a delivered AppRole secret id and run COMMAND (gunicorn, the worker) with it."""
    from .vault import unwrap_secret_id

    try:
        delivery = json.loads(delivery_file.read_text())
        role_id, wrapping_token = str(delivery["role_id"]), str(delivery["wrapping_token"])
    except FileNotFoundError:
        raise click.ClickException(
            f"no secret id delivered at {delivery_file}: run the bootstrap again "
            "(a delivery is used once; deploy/README.md)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise click.ClickException(f"{delivery_file} is not a secret id delivery") from None
    try:
        secret_id = unwrap_secret_id(
            _vault_addresses(), wrapping_token, tls=TLSOptions.from_environ()
        )
    except VaultError as error:
        # Expired, or already unwrapped: if not by us, someone else holds the secret id.
        raise click.ClickException(
            f"the delivered secret id could not be unwrapped ({error}): it expired or was "
            "already unwrapped; if nobody here did, destroy the role's unused secret ids"
        ) from None
    delivery_file.unlink(missing_ok=True)
    environ = dict(os.environ)
    environ["VAULT_SERVICE_VAULT_ROLE_ID"] = role_id
    environ["VAULT_SERVICE_VAULT_SECRET_ID"] = secret_id
    # Replaces this process: gunicorn or the worker inherits the secret id in its environment,
    # in memory only, and passes it on to its own workers.
    os.execvpe(command[0], list(command), environ)  # noqa: S606 - the operator's own command


@main.command("rotate-receipt-key", context_settings={"show_default": True})
@click.option(
    "--admin-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding an admin token (default: $VAULT_SERVICE_BOOTSTRAP_TOKEN).",
)
def rotate_receipt_key(admin_token_file: Path | None) -> None:
    """Sign new receipts with a new version of the receipt key; old receipts stay verifiable."""
    from .vault import rotate_receipt_key as rotate

    addr, token, tls = _operator_target(admin_token_file)
    try:
        version = rotate(addr, token, tls=tls)
    except VaultError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"receipt key rotated: new receipts are signed with version {version}")


JWKS_PATH = "/.well-known/jwks.json"


def _read_receipt(source: TextIO) -> str:
    """A compact JWS from a file: the token itself, or a ticket API answer that holds one."""
    text: str = source.read().strip()
    if text.startswith("{"):
        try:
            text = json.loads(text).get("purge_receipt_jws") or ""
        except (ValueError, AttributeError):
            text = ""
    return text


def _load_jwks(location: str) -> object:
    """A JWKS from an http(s) URL or a file: any JSON (jws.verify says what is wrong with it)."""
    import requests

    if location.startswith(("https://", "http://")):
        response = requests.get(location, timeout=10)
        response.raise_for_status()
        return response.json()
    return json.loads(Path(location).read_text())


@main.command("verify-receipt")
@click.argument("receipt_file", type=click.File("r"))
@click.option(
    "--jwks",
    "jwks_location",
    help=f"JWKS URL or file (default: <issuer>{JWKS_PATH}).",
)
@click.option(
    "--issuer",
    help="The `iss` the receipt must carry (default: $VAULT_SERVICE_PUBLIC_URL, else the "
    "origin of a --jwks URL).",
)
def verify_receipt(receipt_file: TextIO, jwks_location: str | None, issuer: str | None) -> None:
    """Verify a signed deletion receipt (signature, kid, iss) and print its payload; exit 1 if
    it does not verify."""
    from . import jws

    issuer = issuer or os.environ.get("VAULT_SERVICE_PUBLIC_URL")
    if not issuer and jwks_location and jwks_location.endswith(JWKS_PATH):
        issuer = jwks_location.removesuffix(JWKS_PATH)
    if not issuer:
        raise click.ClickException("say which issuer to expect (--issuer)")
    issuer = issuer.rstrip("/")
    location = jwks_location or f"{issuer}{JWKS_PATH}"
    try:
        keys = _load_jwks(location)
    except Exception as error:  # noqa: BLE001 - any failure to get the keys is reported
        click.echo(f"INVALID: cannot read the JWKS at {location}: {type(error).__name__}", err=True)
        sys.exit(1)
    try:
        # Not a JSON object: no key to find, as for an empty set.
        jwks = keys if isinstance(keys, Mapping) else {}
        verified = jws.verify(_read_receipt(receipt_file), jwks, issuer=issuer)
    except jws.InvalidReceipt as error:
        click.echo(f"INVALID: {error}", err=True)
        sys.exit(1)
    click.echo(json.dumps(verified.payload, indent=2, sort_keys=True))
    click.echo(f"verified: kid {verified.header['kid']}, iss {issuer}", err=True)


@click.command("worker")
@with_appcontext
def worker() -> None:
    """Run jobs and sweeps until SIGTERM/SIGINT."""
    from .worker import run_forever

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # The real app, not the context-bound proxy (which Flask types as the app itself).
    run_forever(current_app._get_current_object(), stop)  # type: ignore[attr-defined]


@click.command("sweep")
@with_appcontext
def sweep() -> None:
    """One pass: retention, expired grants and links, due jobs, orphans. Prints it as JSON."""
    from .services.sweep import sweep as sweep_once

    report = sweep_once(current_settings(), current_vault())
    click.echo(json.dumps(report.as_json()))


@click.command("audit-verify")
@with_appcontext
def audit_verify() -> None:
    """Walk the hash chain; exit 1 naming the first record that was edited, removed or moved."""
    from .services.audit import verify_chain

    report = verify_chain()
    if report.ok:
        click.echo(f"ok: {report.records} records, head {report.head_hash}")
        return
    click.echo(f"TAMPERED: record {report.first_bad_id} {report.problem}", err=True)
    sys.exit(1)


@click.command("audit-export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--output", type=click.File("w"), default="-")
@with_appcontext
def audit_export(fmt: str, output: TextIO) -> None:
    """Write the audit trail as JSON Lines or CSV (the admin console's export, unfiltered)."""
    from .services.audit import export_lines, iter_events

    for line in export_lines(iter_events(), fmt):
        output.write(line)


@click.command("doctor")
@click.option(
    "--admin-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding an admin token (/dev/stdin works): also check the audit devices, the "
    "policies, the token role and the AppRole role.",
)
@with_appcontext
def doctor(admin_token_file: Path | None) -> None:
    """Check a running deployment: database, Vault, and the app token's posture."""
    from .services.doctor import run_checks

    admin_token = None
    if admin_token_file is not None:
        admin_token = admin_token_file.read_text().strip()
        if not admin_token:
            raise click.ClickException(f"{admin_token_file} holds no token")
    findings = run_checks(current_settings(), current_vault(), admin_token)
    failed = False
    for finding in findings:
        failed |= not finding.ok
        click.echo(f"[{'ok' if finding.ok else 'FAIL'}] {finding.name}: {finding.detail}")
    sys.exit(1 if failed else 0)


def _parse_since(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> datetime | None:
    """An ISO 8601 time; without an offset, UTC."""
    from datetime import UTC

    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("an ISO 8601 time, e.g. 2025-01-31T09:00:00Z") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


@click.command("events-replay")
@click.option("--ticket", "ticket_ref", help="Only this ticket's events.")
@click.option(
    "--since", callback=_parse_since, help="Only events from this time on (ISO 8601, UTC default)."
)
@with_appcontext
def events_replay(ticket_ref: str | None, since: datetime | None) -> None:
    """Send delivered events again, each under its own webhook-id, in their original order."""
    from .errors import BadRequest
    from .services.events import UnknownTicket, replay_events
    from .services.lifecycle import validate_ticket_ref

    if not current_settings().events_url:
        raise click.ClickException("events are off: VAULT_SERVICE_EVENTS_URL is unset")
    try:
        if ticket_ref is not None:
            ticket_ref = validate_ticket_ref(ticket_ref)
        count = replay_events(ticket_ref=ticket_ref, since=since)
    except BadRequest:
        raise click.ClickException("--ticket is not a valid ticket reference") from None
    except UnknownTicket:
        raise click.ClickException(f"no ticket {ticket_ref}") from None
    click.echo(f"{count} event(s) enqueued for delivery")


APP_COMMANDS = (
    init_db,
    migrate,
    db_revision,
    create_agent,
    set_password,
    reset_totp,
    list_agents,
    disable_agent,
    enable_agent,
    unlock_agent,
    worker,
    sweep,
    audit_verify,
    audit_export,
    doctor,
    events_replay,
)
for _command in APP_COMMANDS:
    main.add_command(_command)
