"""`desk purge` removes sources with nothing left a day on, and no other source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from desk.records.models import Item, Reply, Source
from desk.records.sources import create_source, purge_unused_sources, unused_made_on
from desk.services import Services


def test_purge_removes_sources_with_nothing_left_after_a_day_and_nothing_else(
        desk: Services) -> None:
    today = datetime.now(UTC).date()
    yesterday, two_days_ago = today - timedelta(days=1), today - timedelta(days=2)
    with desk.transaction() as db:
        made = {name: create_source(db, name * 64, b"k") for name in "abcdef"}
        db.flush()
        dates = {"a": two_days_ago, "b": yesterday, "c": today, "d": two_days_ago,
                 "e": two_days_ago, "f": two_days_ago - timedelta(days=300)}
        for name, day in dates.items():
            db.execute(update(Source).where(Source.id == made[name].id)
                       .values(created_on=day, last_activity_on=day))
        # d sent an item, e got a reply: both stay whatever their age.
        db.add(Item(id="1" * 32, source_id=made["d"].id, kind="message", ciphertext_size=1,
                    ciphertext_sha256="0" * 64, part_count=1, received_on=two_days_ago))
        db.add(Reply(id="2" * 32, source_id=made["e"].id, number=1, created_on=two_days_ago,
                     author="alice", via="web", ciphertext_sha256="0" * 64))
    with desk.sessions() as db:
        assert unused_made_on(db, today) == 1
        assert unused_made_on(db, two_days_ago) == 1  # a; d and e are used
    with desk.transaction() as db:
        # Made at most 24 hours ago (today) or at most 48 (yesterday): kept.
        assert purge_unused_sources(db, today) == 2
    with desk.sessions() as db:
        left = {source.lookup_id[0] for source in db.scalars(select(Source))}
    assert left == {"b", "c", "d", "e"}
