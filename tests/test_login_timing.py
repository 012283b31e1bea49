"""A failed login takes as long for an unknown username as for a known one: the response time
does not tell an attacker which agents exist."""

from __future__ import annotations

import statistics
import time

import pytest

from vault_service import create_app

SAMPLES = 40  # per kind, interleaved, so drift in machine load hits both alike
LOW, HIGH = 0.67, 1.5


def timed_login(browser, username: str) -> float:
    started = time.perf_counter()
    response = browser.login(username=username, password="a wrong password, twelve+")
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.status_code
    return elapsed


@pytest.mark.usefixtures("openbao")
def test_unknown_and_known_usernames_fail_in_the_same_time(make_settings, ticket_system_factory):
    # Limits far above the sample count: this measures the login itself, not the limiter.
    app = create_app(make_settings(ratelimit_login="100000/minute"))
    _, browser, _ = ticket_system_factory(app)  # creates the agent "alice"
    timed_login(browser, "alice")  # warm-up: first-request setup is not part of either kind
    timed_login(browser, "nobody-here")
    known, unknown = [], []
    for index in range(SAMPLES):
        pair = [("alice", known), (f"nobody-{index}", unknown)]
        if index % 2:
            pair.reverse()  # neither kind always goes first
        for username, samples in pair:
            samples.append(timed_login(browser, username))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert LOW <= ratio <= HIGH, (
        f"median unknown {statistics.median(unknown) * 1000:.1f} ms vs known "
        f"{statistics.median(known) * 1000:.1f} ms (ratio {ratio:.2f})"
    )
