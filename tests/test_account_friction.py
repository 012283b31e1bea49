"""Agent account friction: the reason typed in the request-access form survives the code
re-prompt (and only for that ticket, once); times are rendered as UTC-labelled <time> elements
a script can localise. (The locked-account message is tests/test_sessions.py's lockout test.)"""

from __future__ import annotations

import re
from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import func, select

from vault_service.clock import utcnow
from vault_service.extensions import db
from vault_service.models import Grant

REASON = 'customer says the "upload" fails <b>since Monday</b>'


def reason_field(page: str) -> str:
    return re.search(r'<input id="reason"[^>]*>', page).group(0)


def test_the_reason_typed_survives_the_code_re_prompt(agent, client, app, submitted_ticket):
    agent.login()
    ticket = f"/tickets/{submitted_ticket}"
    token = agent.csrf_token(ticket)
    with freeze_time(utcnow() + timedelta(seconds=301)):
        response = client.post(
            f"{ticket}/access",
            data={"reason": REASON, "duration_minutes": "17", "csrf_token": token},
        )
        assert response.headers["Location"] == f"/reauth?next={ticket}"
        with app.app_context():
            assert db.session.scalar(select(func.count(Grant.id))) == 0
        # A detour through other pages does not spend it.
        assert client.get("/tickets/T-other").status_code == 404
        assert client.get("/").status_code == 200
        back = agent.reauth(next_path=ticket)
        assert back.headers["Location"] == ticket
        page = client.get(ticket).get_data(as_text=True)
        # Filled in, escaped as any value is, with the duration typed.
        assert (
            'value="customer says the &#34;upload&#34; fails &lt;b&gt;since Monday&lt;/b&gt;"'
            in (reason_field(page))
        )
        assert re.search(r'id="duration_minutes"[^>]*value="17"', page)
        assert 'id="draft-kept"' in page
        # Once: a second visit shows the empty form again.
        again = client.get(ticket).get_data(as_text=True)
        assert 'value=""' in reason_field(again) and 'id="draft-kept"' not in again
        # Sending it as it was filled in grants the access with that reason.
        assert agent.request_access(submitted_ticket, minutes=17, reason=REASON).status_code == 302
    with app.app_context():
        grant = db.session.scalar(select(Grant))
        assert grant.reason == REASON
        assert grant.expires_at - grant.created_at == timedelta(minutes=17)
        db.session.rollback()


def test_agent_pages_render_every_time_as_utc_labelled_time_elements(
    agent, client, submitted_ticket
):
    """What a browser without JavaScript shows: UTC, said so; the script's input: the instant."""
    agent.login()
    agent.request_access(submitted_ticket)
    for path in ("/", f"/tickets/{submitted_ticket}"):
        page = client.get(path).get_data(as_text=True)
        stamps = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', page)
        assert stamps, path
        for instant, text in stamps:
            assert instant.endswith("+00:00") and text.endswith(" UTC"), (path, instant, text)
        # No time left outside a <time> element (but the timeline's prose "until ... UTC" of a
        # grant, which says UTC as it is).
        bare = re.findall(r"\d\d:\d\d(?::\d\d)? UTC", re.sub(r"until [\d :-]+ UTC", "", page))
        assert len(bare) == len(stamps), path
