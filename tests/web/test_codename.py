"""The codename page: a source sees the codename once, and the desk keeps only its salted
Argon2id lookup id (how codenames are made and derived: tests/unit/test_codename.py)."""

from __future__ import annotations

from sqlalchemy import select

from crypto.codename import Codename, lookup_id
from desk.records.instance import load_instance
from desk.records.models import Source
from desk.services import Services
from tests.harness.desks import find_markers
from tests.harness.web import SourceBrowser


def test_codename_page_shows_it_once_and_the_desk_keeps_only_the_lookup_id(
        desk: Services, source: SourceBrowser) -> None:
    assert source.codename is not None
    with desk.sessions() as session:
        (row,) = session.scalars(select(Source)).all()
        salt = load_instance(session).lookup_salt
    assert row.lookup_id == lookup_id(Codename(source.codename), salt, desk.config.kdf)
    assert find_markers([source.codename.encode(), source.codename.split()[3].encode()
                         + b" " + source.codename.split()[4].encode()],
                        desk.config.data_dir) == []
    # The session cookie carries a random id, not the codename.
    cookie = source.client.get_cookie("desk_source")
    assert cookie is not None
    assert source.codename.split()[0] not in cookie.value
    # Reloading the form does not show the codename again.
    assert source.codename not in source.client.get("/submit").text
