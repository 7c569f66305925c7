"""The review workspace: imported ciphertext, the index, decrypted items where asked, and the
console's hash-chained log of what it did."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from crypto.durable import sync_path
from crypto.names import (
    DECRYPTED_DIR,
    INDEX_NAME,
    OBJECTS_DIR,
    RECIPIENTS_HOME_DIR,
    REPLIES_DIR,
    STAGING_DIR,
    workspace_reply_name,
)
from desk.review.errors import ReviewError
from desk.review.index import Action, IndexBase, Item

GENESIS = "0" * 64


def _add_new_columns(engine: Engine) -> None:
    """Bring a workspace made by an earlier console up to date: add the nullable columns its
    tables lack (create_all makes only missing tables). Nothing is rewritten or dropped."""
    found = inspect(engine)
    with engine.begin() as connection:
        for table in IndexBase.metadata.sorted_tables:
            present = {column["name"] for column in found.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                if not column.nullable:
                    raise ReviewError(f"this workspace was made by another version of the "
                                      f"console (its {table.name} lack {column.name})",
                                      "use the console version that made it")
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(text(
                    f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))


def default_workspace(env: dict[str, str] | os._Environ[str]) -> Path:
    """$DESK_REVIEW_HOME, else ~/.desk-review."""
    return Path(env.get("DESK_REVIEW_HOME") or Path.home() / ".desk-review")


@dataclass
class Workspace:
    """A workspace directory and its index."""

    root: Path
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(cls, root: Path) -> Workspace:
        """Open (creating if needed) the workspace at `root`, readable by its owner only. Its
        paths are absolute, so what is recorded of them means the same from any folder."""
        root = root.resolve()
        for path in (root, root / OBJECTS_DIR, root / REPLIES_DIR, root / DECRYPTED_DIR,
                     root / STAGING_DIR):
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True)
                sync_path(path.parent)
        os.chmod(root, 0o700)
        engine = create_engine(f"sqlite:///{root / INDEX_NAME}")
        event.listen(engine, "connect", _pragmas)
        IndexBase.metadata.create_all(engine)
        _add_new_columns(engine)
        return cls(root, engine, sessionmaker(engine, expire_on_commit=False))

    @property
    def staging(self) -> Path:
        """The console's private scratch folder: bundles being checked, files being
        inspected."""
        return self.root / STAGING_DIR

    def objects(self, item_id: str) -> Path:
        """Where an item's ciphertext lives."""
        return self.root / OBJECTS_DIR / item_id

    def reply_copy(self, reply_id: str) -> Path:
        """Where a reply's journalists' copy (OpenPGP) lives."""
        return self.root / REPLIES_DIR / workspace_reply_name(reply_id)

    def recipients_home(self) -> Path:
        """A GnuPG home holding only the desk's journalist public keys, to encrypt reply copies
        to them without touching the journalist's own keyring."""
        home = self.root / RECIPIENTS_HOME_DIR
        if not home.is_dir():
            home.mkdir(mode=0o700)
            sync_path(self.root)
        return home

    def decrypted(self, item_id: str) -> Path:
        """The default folder for an item's plaintext."""
        return self.root / DECRYPTED_DIR / item_id

    def item(self, session: Session, item_id: str) -> Item:
        """The item with this id, or a ReviewError that says how to find ids."""
        item = session.get(Item, item_id.strip().lower())
        if item is None:
            raise ReviewError(f"no item {item_id!r} in this workspace",
                              "run `desk-review list` to see item ids")
        return item

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success."""
        with self.sessions() as session, session.begin():
            yield session


def _pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def action_hash(seq: int, at: datetime, item_id: str | None, action: str, detail: str,
                prev_hash: str) -> str:
    """SHA-256 over the action's canonical JSON."""
    body = json.dumps({"seq": seq, "at": at.isoformat(), "item": item_id, "action": action,
                       "detail": detail, "prev": prev_hash},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def log_action(session: Session, item_id: str | None, action: str, **detail: object) -> Action:
    """Append to the console's hash-chained log (in `session`'s transaction)."""
    last = session.scalar(select(Action).order_by(Action.seq.desc()).limit(1))
    seq, prev = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
    at = datetime.now(UTC).replace(tzinfo=None)
    text = json.dumps(detail, sort_keys=True, ensure_ascii=False, default=str)
    record = Action(seq=seq, at=at, item_id=item_id, action=action, detail=text,
                    prev_hash=prev, hash=action_hash(seq, at, item_id, action, text, prev))
    session.add(record)
    session.flush()
    return record


def verify_actions(session: Session) -> list[Action]:
    """The whole action log, checked link by link; ReviewError at the first bad entry."""
    actions = list(session.scalars(select(Action).order_by(Action.seq)))
    prev = GENESIS
    for number, action in enumerate(actions, start=1):
        expected = action_hash(action.seq, action.at, action.item_id, action.action,
                               action.detail, action.prev_hash)
        if action.seq != number or action.prev_hash != prev or action.hash != expected:
            raise ReviewError(f"the workspace's action log is broken at entry {number}",
                              "someone changed index.db by hand; keep it as evidence")
        prev = action.hash
    return actions
