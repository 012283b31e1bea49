"""docker-compose.yml, the Dockerfile and the configuration files they mount, checked without a
container engine (none runs here): the compose file against the Compose Specification's own JSON
schema (vendored), then what a schema cannot see — references between services, secrets and
volumes, the app's settings, the image's command; the shipped nginx site through `nginx -t`; the
shipped OpenBao configuration by starting `bao` on it; the Dockerfile by the rules a linter
(hadolint) would apply. The topology itself runs as processes in tests/test_topology.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from vault_service.config import load_settings
from vault_service.devtools.embedded_openbao import bao_binary, write_static_seal_key
from vault_service.devtools.processes import Process, free_port
from vault_service.devtools.tls import make_ca

from .helpers import NGINX, ROOT, loopback_nginx_config

COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "vendor" / "compose-spec" / "compose-spec.json"
DOCKERFILE = ROOT / "Dockerfile"
OPENBAO_HCL = ROOT / "deploy" / "openbao" / "openbao.hcl"
ENV_EXAMPLE = ROOT / "deploy" / "vault-service.env.example"
APP_SERVICES = ("app-1", "app-2")
OPENBAO_NODES = ("openbao-1", "openbao-2", "openbao-3")


SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_the_compose_file_is_valid_against_the_compose_specification(compose):
    # The vendored schema is the one its README names (tests/vendor/compose-spec/README.md).
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_check_can_fail(compose):
    """The vendored schema does refuse a wrong file (a misspelt key, a bad condition)."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["app-1"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["worker"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_reference_in_the_compose_file_resolves(compose):
    services = compose["services"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        image = service.get("image", "")
        assert not image.endswith(":latest") and (":" in image or "build" in service), name
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown {target}"
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in compose["secrets"], f"{name}: secret {source} not declared"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
        for network in service.get("networks", []):
            assert network in compose["networks"], name
    for name, secret in compose["secrets"].items():
        # Secret files live in a directory git ignores: never committed.
        assert secret["file"].startswith("./deploy/secrets/"), name
    ignored = subprocess.run(  # noqa: S603
        ["git", "check-ignore", "-q", "deploy/secrets/any"],
        cwd=ROOT,
        check=False,  # noqa: S607
    )
    assert ignored.returncode == 0


def test_the_topology_is_three_raft_nodes_two_replicas_a_worker_a_proxy_and_a_bootstrap(compose):
    services = compose["services"]
    for node in OPENBAO_NODES:
        env = services[node]["environment"]
        assert env["BAO_RAFT_NODE_ID"] == node
        assert env["BAO_API_ADDR"] == f"https://{node}:8200"
        assert "openbao_unseal_key" in services[node]["secrets"]
    app_env = services["app-1"]["environment"]
    assert app_env["VAULT_ADDR"].split(",") == [f"https://{n}:8200" for n in OPENBAO_NODES]
    assert app_env["VAULT_SERVICE_VAULT_CA_CERT"] == "/run/secrets/openbao_ca"
    # Every node the app is given is one raft_join names, and the other way round.
    joins = re.findall(r'leader_api_addr\s*=\s*"([^"]+)"', OPENBAO_HCL.read_text())
    assert joins == app_env["VAULT_ADDR"].split(",")
    # The app waits for the bootstrap; the bootstrap for every node being unsealed.
    for name in (*APP_SERVICES, "worker"):
        condition = services[name]["depends_on"]["bootstrap"]["condition"]
        assert condition == "service_completed_successfully"
    assert {
        node: services["bootstrap"]["depends_on"][node]["condition"] for node in OPENBAO_NODES
    } == dict.fromkeys(OPENBAO_NODES, "service_healthy")
    assert services["proxy"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in APP_SERVICES
    }
    # Only the proxy is published; everything else is on the internal network only.
    assert [name for name, s in services.items() if s.get("ports")] == ["proxy"]
    assert compose["networks"]["backend"]["internal"] is True


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_every_process_is_the_images_command_behind_the_secret_id_launcher(compose):
    """The replicas' command is the Dockerfile's CMD, word for word, after `with-secret-id`; each
    process consumes the delivery the bootstrap writes for it, and no other."""
    cmd = json.loads(next(args for name, args in _dockerfile_instructions() if name == "CMD"))
    bootstrap = " ".join(compose["services"]["bootstrap"]["command"])
    delivered = re.findall(r'--out "\$\$delivery/([\w-]+\.json)"', bootstrap)
    consumed = []
    for name in (*APP_SERVICES, "worker"):
        command = compose["services"][name]["command"]
        assert command[:3] == ["vault-service", "with-secret-id", "--delivery-file"], name
        consumed.append(Path(command[3]).name)
        assert command[4] == "--"
        if name != "worker":
            assert command[5:] == cmd, f"{name} runs something else than the image's CMD"
    assert consumed == ["app-1.json", "app-2.json", "worker.json"]
    assert sorted(delivered) == sorted(consumed)


def _settings_environment(compose: dict[str, Any], service: str) -> dict[str, str]:
    """What the app process sees: deploy/vault-service.env (the example, its blanks filled as an
    operator would) under the service's `environment`, plus what with-secret-id adds."""
    filled = {
        "VAULT_SERVICE_PUBLIC_URL": "https://vault.example.com",
        "VAULT_SERVICE_DEPLOYMENT_ID": "prod",
        "VAULT_SERVICE_SECRET_KEY": secrets.token_urlsafe(48),
        "VAULT_SERVICE_TICKET_API_TOKEN": secrets.token_urlsafe(32),
        "VAULT_SERVICE_WEBHOOK_SECRET": "whsec_"
        + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value or filled.get(key, "")
    env = {k: v for k, v in env.items() if v}  # blanks an operator leaves unset
    env.update({k: str(v) for k, v in compose["services"][service]["environment"].items()})
    env["VAULT_SERVICE_VAULT_ROLE_ID"] = "role-id"
    env["VAULT_SERVICE_VAULT_SECRET_ID"] = "secret-id"
    return env


def test_the_app_settings_the_compose_file_gives_load_in_production(compose, tmp_path):
    ca = make_ca(tmp_path)
    for name in (*APP_SERVICES, "worker", "bootstrap"):
        env = _settings_environment(compose, name)
        env["VAULT_SERVICE_VAULT_CA_CERT"] = str(ca.ca_file)  # the secret's path, here
        settings = load_settings(env)
        assert settings.is_production
        assert len(settings.vault_addresses) == 3


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/run_tests.py)")
def test_the_shipped_nginx_site_passes_nginx_t(tmp_path):
    """`nginx -t` on the shipped site, as the compose file mounts it (its upstream replicas on
    loopback, its certificate from a test CA: nginx resolves and opens both when it checks)."""
    ca = make_ca(tmp_path / "ca")
    directory = tmp_path / "nginx"
    directory.mkdir()
    config = loopback_nginx_config(directory, free_port(), [free_port(), free_port()], ca.server)
    done = subprocess.run(  # noqa: S603
        [str(NGINX), "-t", "-p", str(directory), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_the_shipped_openbao_configuration_starts_a_tls_node_that_unseals_itself(tmp_path):
    """The compose file's OpenBao configuration, its container paths moved under tmp_path and its
    listener onto loopback, started for real: TLS, the static seal, the node's name from
    BAO_RAFT_NODE_ID, and one node becoming active after `init` without an unseal key."""
    ca = make_ca(tmp_path / "ca")
    run_secrets, openbao = tmp_path / "secrets", tmp_path / "openbao"
    for directory in (run_secrets, openbao / "data", openbao / "audit"):
        directory.mkdir(parents=True)
    shutil.copy(ca.ca_file, run_secrets / "openbao_ca")
    shutil.copy(ca.server.cert_file, run_secrets / "openbao_tls_cert")
    shutil.copy(ca.server.key_file, run_secrets / "openbao_tls_key")
    write_static_seal_key(run_secrets / "openbao_unseal_key")
    port, cluster_port = free_port(), free_port()
    hcl = (
        OPENBAO_HCL.read_text()
        .replace("/run/secrets/", f"{run_secrets}/")
        .replace("/openbao/", f"{openbao}/")
        .replace("0.0.0.0:8200", f"127.0.0.1:{port}")
        .replace("0.0.0.0:8201", f"127.0.0.1:{cluster_port}")
    )
    config = tmp_path / "openbao.hcl"
    config.write_text(hcl)
    addr = f"https://127.0.0.1:{port}"
    env = {
        "PATH": "/usr/bin:/bin",
        "BAO_RAFT_NODE_ID": "openbao-1",
        "BAO_API_ADDR": addr,
        "BAO_CLUSTER_ADDR": f"https://127.0.0.1:{cluster_port}",
    }
    server = Process(
        "openbao", [bao_binary(), "server", f"-config={config}"], tmp_path / "log", env=env
    )
    try:
        server.wait_for_url(
            f"{addr}/v1/sys/seal-status", 30, any_status=True, verify=str(ca.ca_file)
        )
        status = requests.get(
            f"{addr}/v1/sys/seal-status", verify=str(ca.ca_file), timeout=5
        ).json()
        assert (status["type"], status["initialized"], status["sealed"]) == ("static", False, True)
        init = requests.put(
            f"{addr}/v1/sys/init",
            json={"recovery_shares": 1, "recovery_threshold": 1},
            verify=str(ca.ca_file),
            timeout=30,
        ).json()
        assert init["keys"] == [] and len(init["recovery_keys"]) == 1  # no unseal key exists
        server.wait_for_url(f"{addr}/v1/sys/health", 30, verify=str(ca.ca_file))
        raft = requests.get(
            f"{addr}/v1/sys/storage/raft/configuration",
            headers={"X-Vault-Token": init["root_token"]},
            verify=str(ca.ca_file),
            timeout=5,
        ).json()["data"]["config"]["servers"]
        assert [(s["node_id"], s["leader"]) for s in raft] == [("openbao-1", True)]
        audit = requests.get(
            f"{addr}/v1/sys/audit",
            headers={"X-Vault-Token": init["root_token"]},
            verify=str(ca.ca_file),
            timeout=5,
        ).json()["data"]
        assert list(audit) == ["file/"]
    finally:
        server.stop()


SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE|API_?KEY)", re.IGNORECASE)


def test_the_dockerfile_follows_the_linters_rules():
    """What hadolint (not packaged for Debian) would check, and what this image promises."""
    instructions = _dockerfile_instructions()
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 1
    for args in stages:
        image = args.split()[0]
        assert ":" in image or "@sha256:" in image, f"unpinned base image {image}"
        assert not image.endswith(":latest"), image
    final = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    users = [args for name, args in final if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert [name for name, _ in final].index("USER") < [name for name, _ in final].index("CMD")
    runs = " ".join(args for name, args in instructions if name == "RUN")
    copies = [args for name, args in instructions if name == "COPY"]
    assert any("requirements.lock" in args for args in copies)
    assert "pip install --require-hashes -r requirements.lock" in runs
    assert "--no-deps" in runs  # the app's own wheel adds nothing beyond the lock
    assert not re.search(r"\bsudo\b|curl [^|]*\| *(ba)?sh|apt-get upgrade", runs)
    assert not any(name == "ADD" for name, _ in instructions), "COPY, not ADD"
    assert any(name == "HEALTHCHECK" for name, _ in final)
    for name, args in instructions:
        if name in ("ENV", "ARG"):
            keys = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            assert not any(SECRET_NAME.search(key) for key in keys), f"{name} {args}"
        if name in ("CMD", "ENTRYPOINT"):
            json.loads(args)  # exec form: signals reach the process, no shell in between
