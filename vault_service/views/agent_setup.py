"""A new agent's set-up link: choose a password, then enrol the second factor (views/auth.py's
enrolment, as at any first login). The link's token is the capability; these routes are public
by name (views/__init__.py) and add to auth's blueprint, whose session helpers they use."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ..errors import BadRequest
from ..extensions import current_settings
from ..services import agent_setup
from .auth import _start_session, bp


@bp.get("/setup/<token>")
def agent_setup_form(token: str) -> ResponseReturnValue:
    """The password form; a dead link gets the one 410 page. Opening it spends nothing."""
    username = agent_setup.open_setup_link(current_settings(), token)
    return render_template("agent/setup.html", username=username, token=token, errors={})


@bp.post("/setup/<token>")
def agent_setup_submit(token: str) -> ResponseReturnValue:
    """Set the password and spend the link, then sign the agent in to enrol their factor."""
    settings = current_settings()
    try:
        agent = agent_setup.complete_setup(
            settings,
            token,
            request.form.get("password", ""),
            request.form.get("confirm_password", ""),
        )
    except BadRequest as error:
        username = agent_setup.open_setup_link(settings, token)
        page = render_template(
            "agent/setup.html", username=username, token=token, errors=error.fields
        )
        return page, error.status
    # Password only: the code re-prompt and reveals wait for the factor enrolled next.
    _start_session(agent, verified=False)
    return redirect(url_for("auth.enrol_totp"))
