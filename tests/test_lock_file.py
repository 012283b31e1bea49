"""The image's lock file (requirements.lock, installed with --require-hashes by the Dockerfile)
covers every runtime dependency pyproject.toml declares, at a version the declaration allows: a
dependency added or tightened in one without the other fails here, not in a production build."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .helpers import ROOT

LOCK = ROOT / "requirements.lock"
# The extras the image installs (Dockerfile; `make lock`).
IMAGE_EXTRAS = ("postgres", "redis")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)")


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        declared += project["optional-dependencies"][extra]
    return [Requirement(line) for line in declared]


def locked() -> dict[str, tuple[Version, int]]:
    """Each pinned name with its version and how many hashes follow it."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (Version(match.group(2)), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def test_the_lock_pins_every_runtime_dependency_at_an_allowed_version() -> None:
    pins = locked()
    problems = []
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement}: not in requirements.lock")
        elif not requirement.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{requirement}: locked at {pins[name][0]}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_every_locked_package_is_pinned_with_hashes_and_the_image_requires_them() -> None:
    pins = locked()
    assert len(pins) >= len(runtime_requirements())
    assert not [name for name, (_, hashes) in pins.items() if hashes == 0]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    # Nothing else is installed with its dependencies resolved afresh.
    installs = re.findall(r"pip install ([^\n]*)", dockerfile)
    assert installs == ["--require-hashes -r requirements.lock", "--no-deps ."]
