"""deploy/README.md's "Backup and restore, step by step", followed in order against real parts: a
raft snapshot taken with `bao operator raft snapshot save` and the database dumped (pg_dump -Fc on
PostgreSQL; SQLite's online backup where the suite runs on SQLite), everything lost, a fresh
cluster with the same static seal key, `bao operator raft snapshot restore -force`, the database
restored, `migrate upgrade`, `audit-verify`, `doctor`. What the procedure promises is then checked
against Vault itself: a ticket purged before the backup stays unreadable (its key is gone), a
ticket open at the backup is revealed again, one created after it is gone from both sides, the
audit chain verifies, and the lifecycle runs on the restored deployment."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import hvac.exceptions
import pytest
import requests
from sqlalchemy.engine import make_url

from vault_service import create_app
from vault_service.devtools.embedded_openbao import (
    RaftCluster,
    bao_binary,
    write_static_seal_key,
)
from vault_service.devtools.tls import make_ca
from vault_service.extensions import db
from vault_service.vault import TRANSIT_MOUNT, TLSOptions, bootstrap_vault, issue_app_token
from vault_service.vault.bootstrap import admin_client

from .helpers import key_of, lease_of, run_worker_pass

pytestmark = pytest.mark.slow


def bao(args: list[str], cluster: RaftCluster, token: str) -> None:
    """The bao CLI as the README types it, against the cluster's first node over TLS."""
    env = {
        "PATH": "/usr/bin:/bin",
        "BAO_ADDR": cluster.nodes[0].addr,
        "BAO_TOKEN": token,
        "BAO_CACERT": str(cluster.tls.ca_file),  # type: ignore[union-attr]
    }
    done = subprocess.run(  # noqa: S603 - the pinned bao binary
        [bao_binary(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def dump_database(url: str, path: Path) -> None:
    """Step 1 of the backup: `pg_dump -Fc`; on SQLite, its online backup (same consistency)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        subprocess.run(  # noqa: S603
            [
                "pg_dump",
                "-Fc",
                "-f",
                str(path),
                parsed.set(drivername="postgresql").render_as_string(hide_password=False),
            ],  # noqa: S607
            check=True,
            timeout=60,
        )
    else:
        # closing(): a connection's own `with` only commits. Left open, the source connection
        # (whose statement cache makes it a reference cycle) lives until the next garbage
        # collection, keeping the live database's WAL, which the restore would then replay.
        with (
            closing(sqlite3.connect(parsed.database)) as source,
            closing(sqlite3.connect(path)) as target,
        ):
            source.backup(target)


def restore_database(url: str, path: Path) -> None:
    """Step 3 of the restore: into an empty database (pg_restore; on SQLite, the backup file)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        subprocess.run(  # noqa: S603
            ["psql", "-q", plain, "-c", "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"],  # noqa: S607
            check=True,
            timeout=60,
        )
        subprocess.run(["pg_restore", "-d", plain, str(path)], check=True, timeout=60)  # noqa: S603,S607
    else:
        os.replace(path, parsed.database)  # type: ignore[arg-type]


def wait_until_restored(cluster: RaftCluster, backup_root: str, tls: TLSOptions) -> float:
    """The restore returns before the node has reloaded the snapshot's state: wait until the
    backup's own root token is accepted (the new cluster's was not in the backup)."""
    started = time.monotonic()
    while time.monotonic() < started + 60:
        try:
            admin_client(cluster.addresses, backup_root, tls=tls).auth.token.lookup_self()
            return time.monotonic() - started
        except (hvac.exceptions.VaultError, requests.RequestException):
            time.sleep(0.5)
    raise AssertionError("the snapshot's state never became active")


def test_the_backup_and_restore_procedure_keeps_purged_tickets_purged(
    tmp_path, make_settings, ticket_system_factory
):
    ca = make_ca(tmp_path / "ca")
    seal_key = write_static_seal_key(tmp_path / "static-seal.key")
    tls = TLSOptions(ca_cert=str(ca.ca_file))
    # The same configuration before and after, as the compose file's nodes have: a restored
    # snapshot refuses to activate under a different audit device ("modifications to audit
    # devices are not allowed"), so the audit log's path is the same too.
    same = {"tls": ca.server, "static_seal_key": seal_key, "audit_log": tmp_path / "audit.log"}
    cluster = RaftCluster(tmp_path / "before", size=1, **same)
    restored = RaftCluster(tmp_path / "after", size=1, **same)
    try:
        root = cluster.start().root_token
        bootstrap_vault(cluster.addresses, root, tls=tls)
        # The app's identity lives in the snapshot: after the restore it is valid again.
        app_token = issue_app_token(cluster.addresses, root, 3600, tls=tls).token

        def app_for(addresses: list[str]):
            app = create_app(
                make_settings(
                    vault_addr=",".join(addresses),
                    vault_token=app_token,
                    vault_ca_cert=str(ca.ca_file),
                )
            )
            return app, *ticket_system_factory(app)

        app, ticket_system, agent, client = app_for(cluster.addresses)
        item = {"kind": "other", "label": "restore", "secret": "purged-before-backup"}
        assert (
            client.post(ticket_system.link_path("T-purged"), json={"items": [item]}).status_code
            == 201
        )
        purged_lease = lease_of(app, "T-purged")
        assert ticket_system.close("T-purged").status_code == 202
        run_worker_pass(app)
        assert ticket_system.status("T-purged").get_json()["status"] == "purged"
        item = {"kind": "other", "label": "restore", "secret": "open-at-backup"}
        assert (
            client.post(ticket_system.link_path("T-open"), json={"items": [item]}).status_code
            == 201
        )

        # Backup, as deploy/README.md: the database, then the raft snapshot.
        dump = tmp_path / "vault_service.dump"
        database_url = str(app.config["SQLALCHEMY_DATABASE_URI"])
        with app.app_context():
            db.engine.dispose()  # SQLite: no connection of ours holds the file during the copy
        dump_database(database_url, dump)
        snapshot = tmp_path / "raft.snap"
        bao(["operator", "raft", "snapshot", "save", str(snapshot)], cluster, root)

        # After the backup: a ticket whose submission the restore cannot bring back.
        item = {"kind": "other", "label": "restore", "secret": "after-backup"}
        assert (
            client.post(ticket_system.link_path("T-later"), json={"items": [item]}).status_code
            == 201
        )
        later_lease = lease_of(app, "T-later")
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

        # Disaster: the cluster is gone. A fresh one with the same static seal key, the snapshot
        # restored with -force (its keyring differs), then the database.
        cluster.stop()
        new_root = restored.start().root_token
        bao(
            ["operator", "raft", "snapshot", "restore", "-force", str(snapshot)], restored, new_root
        )
        wait_until_restored(restored, root, tls)
        restore_database(database_url, dump)

        app, ticket_system, agent, client = app_for(restored.addresses)
        runner = app.test_cli_runner()
        assert runner.invoke(args=["migrate", "upgrade"]).exit_code == 0
        verified = runner.invoke(args=["audit-verify"])
        assert verified.exit_code == 0, verified.output
        token_file = tmp_path / "admin-token"
        token_file.write_text(root)  # the backup's root token: the snapshot's tokens are back
        doctor = runner.invoke(args=["doctor", "--admin-token-file", str(token_file)])
        assert doctor.exit_code == 0, doctor.output

        # What the procedure promises, asked of Vault and of the app.
        admin = admin_client(restored.addresses, root, tls=tls)
        with pytest.raises(hvac.exceptions.InvalidPath):
            admin.secrets.transit.read_key(name=key_of(purged_lease.id), mount_point=TRANSIT_MOUNT)
        with pytest.raises(hvac.exceptions.InvalidPath):
            admin.secrets.transit.read_key(name=key_of(later_lease.id), mount_point=TRANSIT_MOUNT)
        assert ticket_system.status("T-purged").get_json()["status"] == "purged"
        assert ticket_system.status("T-later").status_code == 404  # lost from both sides
        agent.login()
        agent.request_access("T-open")
        assert "open-at-backup" in agent.reveal("T-open").get_data(as_text=True)
        # And the lifecycle runs on the restored deployment.
        item = {"kind": "other", "label": "restore", "secret": "after-restore"}
        assert (
            client.post(ticket_system.link_path("T-new"), json={"items": [item]}).status_code == 201
        )
        agent.request_access("T-new")
        assert "after-restore" in agent.reveal("T-new").get_data(as_text=True)
        for ref in ("T-open", "T-new"):
            assert ticket_system.close(ref).status_code == 202
        run_worker_pass(app)
        for ref in ("T-open", "T-new"):
            assert ticket_system.status(ref).get_json()["status"] == "purged"
            with pytest.raises(hvac.exceptions.InvalidPath):
                admin.secrets.transit.read_key(
                    name=key_of(lease_of(app, ref).id), mount_point=TRANSIT_MOUNT
                )
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    finally:
        cluster.stop()
        restored.stop()
