"""Schema safety: a database behind the code's migration head fails /readyz and doctor until
`vault-service migrate upgrade` brings it back; the migrate commands report and move it."""

from __future__ import annotations

from click.testing import CliRunner

from vault_service import schema
from vault_service.cli import main


def doctor_line(runner, name: str) -> tuple[int, str]:
    result = runner.invoke(args=["doctor"])
    lines = [line for line in result.output.splitlines() if f"] {name}:" in line]
    assert len(lines) == 1, result.output
    return result.exit_code, lines[0]


def test_a_schema_set_back_fails_readyz_and_doctor_until_migrate_upgrade(
    client, runner, settings, openbao
):
    head = schema.head_revision()
    current = runner.invoke(args=["migrate", "current"])
    assert current.exit_code == 0, current.output
    assert current.output.strip() == f"{head} (head)"
    assert client.get("/readyz").get_json()["checks"]["schema"] == "ok"
    assert doctor_line(runner, "schema revision") == (0, f"[ok] schema revision: {head}")

    # An operator sets the schema back (say, a restore from before the upgrade).
    result = runner.invoke(args=["migrate", "downgrade", "0005", "--yes"])
    assert result.exit_code == 0, result.output
    assert "database at revision 0005" in result.output

    readiness = client.get("/readyz")
    assert readiness.status_code == 503
    body = readiness.get_json()
    assert body["status"] == "not_ready"
    assert body["checks"]["schema"] == "outdated"
    assert body["checks"]["database"] == "ok"  # it answers: the schema is what is wrong
    code, line = doctor_line(runner, "schema revision")
    assert code == 1
    assert line == (
        f"[FAIL] schema revision: at 0005, code expects {head}: run vault-service migrate upgrade"
    )
    behind = runner.invoke(args=["migrate", "current"])
    assert behind.exit_code == 1
    assert behind.output.startswith("0005: at 0005, code expects")

    result = runner.invoke(args=["migrate", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"database at revision {head}" in result.output
    readiness = client.get("/readyz")
    assert readiness.status_code == 200, readiness.get_json()
    assert readiness.get_json()["checks"]["schema"] == "ok"
    # Set back below 0012, the database lost the identity that claimed its deployment id in
    # Vault: it is now a stranger to its own marker, and doctor says so (fail-safe: nothing tells
    # it from another database). The operator's remedy, once sure no other database uses the id:
    # delete the marker with an admin token; the next doctor (or sweep) claims it again.
    deployment = f"deployment {settings.deployment_id}"
    code, line = doctor_line(runner, deployment)
    assert code == 1 and "owned by another database" in line
    openbao.admin().secrets.kv.v2.delete_metadata_and_all_versions(
        path=f"_deployments/{settings.deployment_id}", mount_point="vault-service-kv"
    )
    assert doctor_line(runner, "schema revision") == (0, f"[ok] schema revision: {head}")
    assert doctor_line(runner, deployment)[1].startswith(f"[ok] {deployment}: owned by this")


def test_downgrade_asks_first_and_does_nothing_when_refused(runner):
    result = runner.invoke(args=["migrate", "downgrade", "0005"], input="n\n")
    assert result.exit_code == 1
    assert runner.invoke(args=["migrate", "current"]).exit_code == 0  # still at head


def test_history_lists_every_shipped_migration_without_a_database():
    result = CliRunner().invoke(main, ["migrate", "history"])
    assert result.exit_code == 0, result.output
    revisions = [line.split(":", 1)[0] for line in result.output.splitlines()]
    assert revisions[0] == schema.head_revision()
    assert revisions[-1] == "0001"
    assert len(revisions) == len(set(revisions)) >= 6
