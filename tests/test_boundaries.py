"""Every time limit, one second before and exactly at its boundary (the app's clock pinned)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import hvac.exceptions
import pytest
from freezegun import freeze_time

from vault_service.services.lifecycle import get_ticket
from vault_service.vault import TRANSIT_MOUNT

from .conftest import SAMPLE_ITEMS
from .helpers import key_of, lease_of, run_worker_pass

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "expected_status"),
    [(timedelta(hours=72) - timedelta(seconds=1), 200), (timedelta(hours=72), 410)],
)
def test_link_is_valid_until_one_second_before_72_hours_and_gone_exactly_at_them(
    client, ticket_system, offset, expected_status
):
    with freeze_time(T0) as frozen:
        path = ticket_system.link_path("T-link-expiry")
        frozen.move_to(T0 + offset)
        assert client.get(path).status_code == expected_status
        response = client.post(path, json={"items": SAMPLE_ITEMS})
        assert response.status_code == (201 if expected_status == 200 else 410)


def test_custom_link_ttl_sets_the_boundary(client, ticket_system):
    with freeze_time(T0) as frozen:
        response = ticket_system.create_link("T-short", ttl_seconds=600)
        assert response.get_json()["expires_at"] == (T0 + timedelta(seconds=600)).isoformat()
        path = response.get_json()["url"].removeprefix("http://localhost")
        frozen.move_to(T0 + timedelta(seconds=599))
        assert client.get(path).status_code == 200
        frozen.move_to(T0 + timedelta(seconds=600))
        assert client.get(path).status_code == 410


@pytest.mark.parametrize(
    ("offset", "expected_status"),
    [(timedelta(minutes=30) - timedelta(seconds=1), 200), (timedelta(minutes=30), 403)],
)
def test_grant_allows_reveal_until_one_second_before_its_window_ends(
    ticket_system, client, agent, offset, expected_status
):
    with freeze_time(T0) as frozen:
        path = ticket_system.link_path("T-grant")
        client.post(path, json={"items": SAMPLE_ITEMS})
        agent.login()
        agent.request_access("T-grant", minutes=30)
        grant_id = agent.current_grant_id("T-grant")
        frozen.move_to(T0 + offset)
        # The grant outlives the session (idle timeout 15 minutes): a new login, a new code.
        agent.login()
        assert agent.reveal("T-grant", grant_id).status_code == expected_status


def test_grant_duration_is_capped_at_the_configured_maximum(ticket_system, client, agent):
    path = ticket_system.link_path("T-cap")
    client.post(path, json={"items": SAMPLE_ITEMS})
    agent.login()
    refused = agent.request_access("T-cap", minutes=4 * 60 + 1)
    assert refused.status_code == 302
    page = client.get("/tickets/T-cap").get_data(as_text=True)
    assert "Between 1 and 240 minutes" in page
    assert 'name="grant_id"' not in page
    assert agent.request_access("T-cap", minutes=4 * 60).status_code == 302
    assert 'name="grant_id"' in client.get("/tickets/T-cap").get_data(as_text=True)


def test_retention_purges_nothing_one_second_early_and_everything_exactly_at_30_days(
    app, client, ticket_system, openbao
):
    with freeze_time(T0) as frozen:
        path = ticket_system.link_path("T-retention")
        assert client.post(path, json={"items": SAMPLE_ITEMS}).status_code == 201
        lease = lease_of(app, "T-retention")

        frozen.move_to(T0 + timedelta(days=30) - timedelta(seconds=1))
        report = run_worker_pass(app)
        assert report.retention_closed == 0
        assert ticket_system.status("T-retention").get_json()["status"] == "open"

        frozen.move_to(T0 + timedelta(days=30))
        report = run_worker_pass(app)
        assert report.retention_closed == 1
        assert report.jobs_completed["purge"] == 1

    status = ticket_system.status("T-retention").get_json()
    assert status["status"] == "purged"
    assert status["purge_receipt"]["reason"] == "retention_expired"
    with pytest.raises(hvac.exceptions.InvalidPath):
        openbao.admin().secrets.transit.read_key(name=key_of(lease.id), mount_point=TRANSIT_MOUNT)
    with app.app_context():
        assert get_ticket("T-retention").status == "purged"


def test_link_never_outlives_the_retention_of_what_it_would_collect(ticket_system):
    with freeze_time(T0) as frozen:
        ticket_system.link_path("T-late-link")
        frozen.move_to(T0 + timedelta(days=29))
        response = ticket_system.create_link("T-late-link")
        assert response.status_code == 201
        assert response.get_json()["expires_at"] == (T0 + timedelta(days=30)).isoformat()
