"""`vault-service` itself (the console script's click group, not app.cli): its own --version,
one line per configuration problem and exit 78, exit 2 only for usage, and no traceback when
the database cannot be reached."""

from __future__ import annotations

import secrets
import subprocess
import sys
from importlib.metadata import version

import pytest
from click.testing import CliRunner

from vault_service.cli import EXIT_CONFIG, main

from .helpers import ROOT, make_child_environment

GOOD = {
    "VAULT_SERVICE_ENV": "testing",
    "VAULT_SERVICE_SECRET_KEY": secrets.token_urlsafe(48),
    "VAULT_SERVICE_TICKET_API_TOKEN": secrets.token_urlsafe(32),
    "VAULT_SERVICE_VAULT_TOKEN": "s.not-a-real-token",
    "VAULT_ADDR": "http://127.0.0.1:9",
    # Nothing listens on port 9 of loopback: the database is unreachable.
    "VAULT_SERVICE_DATABASE_URL": "postgresql+psycopg://nobody:pw-do-not-print@127.0.0.1:9/x",
}


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    """The command as an operator runs it: a process of its own, its real exit code and stderr."""
    child = {k: v for k, v in make_child_environment().items() if not k.startswith("VAULT_")}
    return subprocess.run(
        [sys.executable, "-c", "from vault_service.cli import main; main()", *args],
        env={**child, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_version_is_vault_services_own():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"vault-service, version {version('vault-service')}\n"
    assert "flask" not in result.output.lower()


@pytest.mark.parametrize("flask_option", ["--app", "--env-file", "--debug"])
def test_flasks_own_options_are_not_vault_services(flask_option):
    result = CliRunner().invoke(main, [flask_option, "x", "sweep"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_every_configuration_problem_is_one_line_at_once_and_exits_78():
    env = {
        **GOOD,
        "VAULT_SERVICE_SECRET_KEY": "tiny-key-value",
        "VAULT_SERVICE_LINK_TTL_SECONDS": "soon",
        "VAULT_SERVICE_LOG_LEVEL": "LOUD",
        "VAULT_SERVICE_ENV": "staging",
    }
    result = run(["sweep"], env)
    assert result.returncode == EXIT_CONFIG == 78
    lines = result.stderr.splitlines()
    assert all(line.startswith("configuration: ") for line in lines), result.stderr
    for name in (
        "VAULT_SERVICE_SECRET_KEY",
        "VAULT_SERVICE_LINK_TTL_SECONDS",
        "VAULT_SERVICE_LOG_LEVEL",
        "VAULT_SERVICE_ENV",
    ):
        assert sum(name in line for line in lines) == 1, (name, lines)
    assert "Traceback" not in result.stderr
    assert "No such command" not in result.stderr
    # Names, never values.
    assert "tiny-key-value" not in result.stderr and "soon" not in result.stderr


def test_doctor_with_a_misspelt_a_malformed_and_a_missing_file_variable_lists_all_three(tmp_path):
    """Issue 16's surprises through the real command: each is one line naming its variable."""
    env = {
        **GOOD,
        "VAULT_SERVICE_GRANT_MAX_SECOND": "3600",
        "VAULT_SERVICE_EMBEDDED_WORKER": "sometimes",
        "VAULT_SERVICE_VAULT_SECRET_ID_FILE": str(tmp_path / "no-such-secret-id"),
        "VAULT_SERVICE_VAULT_TIMEOUT_SECONDS": "2.5",  # fractional: fine
        "VAULT_SERVICE_LOCAL_LOGIN": "Yes",  # fine
    }
    result = run(["doctor"], env)
    assert result.returncode == EXIT_CONFIG == 78, result.stderr
    assert result.stderr.splitlines() == [
        "configuration: VAULT_SERVICE_GRANT_MAX_SECOND is not a setting of vault-service; "
        "did you mean VAULT_SERVICE_GRANT_MAX_SECONDS?",
        "configuration: VAULT_SERVICE_VAULT_SECRET_ID_FILE names a file that cannot be read "
        "(No such file or directory)",
        "configuration: VAULT_SERVICE_EMBEDDED_WORKER must be true or false "
        "(also yes/no, on/off, 1/0)",
    ]
    assert result.stdout == ""


def test_a_usage_error_exits_2_and_a_known_command_needs_no_configuration_for_help():
    assert run(["no-such-command"], {}).returncode == 2
    help_text = run(["sweep", "--help"], {})
    assert help_text.returncode == 0, help_text.stderr


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["sweep"], ""),
        (["migrate", "current"], ""),
        (["migrate", "upgrade"], ""),
        (["create-agent", "dana", "--password-stdin"], "a long enough password\n"),
        (["audit-verify"], ""),
    ],
)
def test_an_unreachable_database_is_one_line_not_a_traceback(args, stdin):
    result = run(args, GOOD, stdin)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr
    assert "database unavailable (OperationalError" in error_lines[0]
    assert "pw-do-not-print" not in result.stderr + result.stdout
