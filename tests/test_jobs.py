"""The generic job queue: a kind is one definition; jobs are enqueued in the caller's
transaction, claimed once, retried with capped backoff, reported failing, run in order per key."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select, update

from vault_service import worker
from vault_service.clock import utcnow
from vault_service.extensions import current_settings, current_vault, db
from vault_service.models import Job, JobState
from vault_service.services import jobs
from vault_service.services.job_kinds import purge as purge_kind
from vault_service.services.readiness import check_readiness
from vault_service.transactions import transaction
from vault_service.vault import VaultError

T0 = utcnow().replace(microsecond=0)


@pytest.fixture
def probe(app, monkeypatch):
    """A test-only job kind recording what it ran; `fail` makes its next runs raise."""
    ran: list[str] = []
    state = {"fail": False}

    def run(settings, vault, job):
        if state["fail"]:
            raise VaultError("probe: vault unavailable")
        return job.payload["step"]

    def finish(job, outcome):
        ran.append(outcome)
        return {"step": outcome}

    kind = jobs.JobKind("probe", run, finish, lambda settings: 60)
    monkeypatch.setitem(jobs.registered_kinds(), "probe", kind)
    with app.app_context():
        yield ran, state
        db.session.remove()


def enqueue(step: str, **keys) -> str:
    with transaction():
        return jobs.enqueue("probe", {"step": step}, **keys).id


def run_due() -> dict[str, int]:
    return jobs.process_due_jobs(current_settings(), current_vault())


def make_due() -> None:
    with transaction() as session:
        session.execute(update(Job).values(next_attempt_at=Job.created_at))


def test_every_module_in_job_kinds_is_a_registered_kind_and_the_purge_is_the_first():
    assert jobs.registered_kinds()["purge"] is purge_kind.KIND


def test_a_job_enqueued_in_a_transaction_that_rolls_back_does_not_exist(probe):
    with pytest.raises(RuntimeError), transaction():
        jobs.enqueue("probe", {"step": "lost"})
        raise RuntimeError("the caller failed")
    assert db.session.scalar(select(func.count(Job.id))) == 0


def test_an_unknown_kind_is_refused_at_enqueue(probe):
    with pytest.raises(ValueError, match="unknown job kind"), transaction():
        jobs.enqueue("no-such-kind", {})


def test_a_dedupe_key_admits_one_job_per_kind_and_key(probe):
    enqueue("first", dedupe_key="lease-1")
    with pytest.raises(Exception, match="(?i)unique"):
        enqueue("second", dedupe_key="lease-1")
    enqueue("other", dedupe_key="lease-2")


def test_a_completed_job_keeps_its_result_and_is_not_run_again(probe):
    ran, _ = probe
    job_id = enqueue("one")
    assert run_due() == {"probe": 1}
    assert run_due() == {}
    job = db.session.get(Job, job_id)
    assert ran == ["one"] and job.result == {"step": "one"}
    assert jobs.job_state(job, utcnow()) == JobState.DONE


def test_a_claimed_job_is_leased_to_its_worker_until_the_lease_lapses(probe):
    with freeze_time(T0) as frozen:
        job_id = enqueue("one")
        claimed = jobs.claim_next_job()
        assert claimed.id == job_id and claimed.attempts == 1
        assert jobs.job_state(claimed, utcnow()) == JobState.RUNNING
        assert jobs.claim_next_job() is None
        frozen.move_to(T0 + timedelta(seconds=jobs.JOB_LOCK_SECONDS))
        assert jobs.claim_next_job().id == job_id  # the first worker died: retried


def test_failures_back_off_exponentially_up_to_the_kinds_cap_and_report_failing(probe):
    _, state = probe
    state["fail"] = True
    delays = []
    with freeze_time(T0):
        job_id = enqueue("one")
        for _ in range(jobs.FAILING_AFTER_ATTEMPTS + 2):
            make_due()
            assert run_due() == {}
            job = db.session.get(Job, job_id, populate_existing=True)
            delays.append(int((job.next_attempt_at - utcnow()).total_seconds()))
        assert delays == [2, 4, 8, 16, 32, 60, 60]
        assert job.last_error == "probe: vault unavailable"
        assert jobs.job_state(job, utcnow()) == JobState.FAILING
        assert [j.id for j in jobs.failing_jobs()] == [job_id]
        # Every registered kind is reported, zero included (the help-desk note kinds too).
        assert jobs.failing_counts() == {**dict.fromkeys(jobs.registered_kinds(), 0), "probe": 1}
        assert check_readiness(current_vault()).as_json()["probe_jobs"] == "failing: 1"
        # Failing is reported, never given up: the next due attempt still runs it.
        state["fail"] = False
        make_due()
        assert run_due() == {"probe": 1}
    assert jobs.failing_counts()["probe"] == 0


def test_jobs_sharing_an_ordering_key_run_one_at_a_time_oldest_first(probe):
    ran, state = probe
    with freeze_time(T0) as frozen:
        for step in ("a1", "a2", "a3"):
            enqueue(step, ordering_key="ticket-a")
            frozen.tick()
        enqueue("b1", ordering_key="ticket-b")
        first = jobs.claim_next_job()
        assert first.payload["step"] == "a1"
        # While a1 runs, a2 waits; the other key's job does not.
        assert jobs.claim_next_job().payload["step"] == "b1"
        assert jobs.claim_next_job() is None
        # a1 fails: a2 still waits behind it, through its backoff.
        jobs._record_failure(current_settings(), first, VaultError("probe: down"))
        assert jobs.claim_next_job() is None
        frozen.move_to(T0 + timedelta(minutes=5))
        assert run_due() == {"probe": 3}
    assert [step for step in ran if step.startswith("a")] == ["a1", "a2", "a3"]


def test_the_worker_drains_a_backlog_of_several_passes_without_waiting_the_poll_interval(
    app, probe
):
    """A pass runs at most 100 jobs: a backlog of 250 is run pass after pass, not one pass per
    poll interval (300 s here, so waiting even once could not finish within the minute)."""
    ran, _ = probe
    with transaction():
        for n in range(250):
            jobs.enqueue("probe", {"step": f"s{n}"})
    settings = app.extensions["vault_service.settings"]
    app.extensions["vault_service.settings"] = settings.model_copy(
        update={"worker_poll_seconds": 300}
    )
    stop = threading.Event()
    loop = threading.Thread(target=worker.run_forever, args=(app, stop))
    loop.start()
    try:
        for _ in range(600):
            if len(ran) == 250:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(30)
        app.extensions["vault_service.settings"] = settings
    assert len(ran) == 250
    assert not loop.is_alive()
