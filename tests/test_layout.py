"""The test suite's own layout: shared fixtures live in conftest.py and shared helpers in
helpers.py (or deployment.py), never in a test module another one imports from; importing a
test module drags its tests' fixtures (autouse ones included) into the importer."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(source: str) -> list[str]:
    """The `test_*` modules of tests/ that a module's source imports, however it spells it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 0 and not base.startswith(("tests", "test_")):
                continue  # an installed package, not this suite
            if node.level > 1:
                continue  # above tests/: not the suite
            # `from . import test_x` and `from tests import test_x` name it among the names.
            modules = [base] if base not in ("", "tests") else [a.name for a in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "tests":
                parts = parts[1:]
            if parts and parts[0].startswith("test_"):
                found.append(parts[0])
    return found


def test_no_module_under_tests_imports_from_a_test_module():
    offenders = {
        str(path.relative_to(TESTS)): imported
        for path in sorted(TESTS.rglob("*.py"))
        if (imported := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_check_sees_every_spelling_of_such_an_import():
    """The control: each spelling a test could use is caught, and the allowed homes are not."""
    caught = [
        "from .test_browser import CHROMIUM",
        "from . import test_browser",
        "from tests import test_browser",
        "from tests.test_browser import CHROMIUM",
        "import tests.test_browser",
        "import test_browser",
        "from test_browser import CHROMIUM",
        "def f():\n    from .test_process_faults import Stack\n",
    ]
    for source in caught:
        assert imported_test_modules(source), source
    allowed = [
        "from .helpers import CHROMIUM",
        "from .conftest import SAMPLE_ITEMS",
        "from .deployment import Stack",
        "from tests.helpers import ROOT",
        "import pytest",
        "from vault_service.services import test_mode",
    ]
    for source in allowed:
        assert imported_test_modules(source) == [], source
