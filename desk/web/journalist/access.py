"""Who may see a journalist page: the logged-in journalist, put on `g` for the view."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import g, redirect, session, url_for
from werkzeug.wrappers import Response

from desk.records.models import Journalist
from desk.web.context import db_session

P = ParamSpec("P")
R = TypeVar("R")


def login_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Send anyone not logged in to the login page; put the journalist on `g`."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        journalist_id = session.get("journalist_id")
        journalist = None if journalist_id is None else db_session().get(Journalist,
                                                                         journalist_id)
        if journalist is None:
            session.clear()
            return redirect(url_for("journalist.login"))
        g.journalist = journalist
        return view(*args, **kwargs)

    return wrapper
