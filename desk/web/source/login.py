"""Source codenames at the desk: new codenames, codename login, and the session's reply key.

A login costs exactly one Argon2id derivation whatever the number of sources: the codename
and the desk's lookup salt give the lookup id, which is looked up directly. Only a codename
that matches pays for a second derivation, of the reply key. That key is kept for the session
sealed (AES-256-GCM) under a key derived from the session cookie's token, so the server's
disk alone cannot open the source's replies, and neither can the cookie alone.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from flask import session
from sqlalchemy import select, update

from crypto.codename import MAX_CODENAME_CHARS, Codename, generate_codename, lookup_id
from crypto.errors import FormatError, UnsealFailed
from crypto.reply import ReplyKey, key_from_seed, reply_seed
from crypto.sealing import seal, unseal
from desk.records.instance import load_instance
from desk.records.models import Source
from desk.records.sources import create_source, unused_made_on
from desk.services import Services
from desk.web.i18n import SESSION_KEY as LOCALE_KEY
from desk.web.sessions import server_session

SEALED_FIELD = "reply_key"
SEAL_PURPOSE = "reply key"
SEAL_AAD = b"desk source reply key v1"


def _salts(desk: Services) -> tuple[bytes, bytes]:
    with desk.sessions() as reader:
        instance = load_instance(reader)
        return instance.lookup_salt, instance.reply_salt


def too_many_unused(desk: Services) -> bool:
    """True when today's codenames not yet used for a sending reach the desk's cap."""
    with desk.sessions() as reader:
        made = unused_made_on(reader, datetime.now(UTC).date())
    return made >= desk.config.unused_codenames_per_day


def new_source(desk: Services) -> tuple[Codename, Source, bytes] | None:
    """A fresh codename, its committed source row and its reply key seed; None when the
    desk's cap of codenames made today and not yet used is reached.

    The derivations run with no transaction open: holding SQLite's write lock through them
    would stall every upload's commit behind a burst of new codenames. The cap is checked
    again in the writer transaction, which every process takes in turn, so it holds for the
    whole desk.
    """
    codename = generate_codename()
    lookup_salt, reply_salt = _salts(desk)
    lookup = lookup_id(codename, lookup_salt, desk.config.kdf)
    seed = reply_seed(codename, reply_salt, desk.config.kdf)
    _key, public = key_from_seed(seed)
    with desk.writers() as writer:
        if unused_made_on(writer, datetime.now(UTC).date()) >= \
                desk.config.unused_codenames_per_day:
            return None
        source = create_source(writer, lookup, public)
        writer.commit()
    return codename, source, seed


def find_source(desk: Services, typed: str) -> tuple[Source, bytes] | None:
    """The source whose codename was typed, and its reply key seed; None for any codename that
    is not one (unknown and wrong are the same thing here, and cost the same).

    Like new_source, it derives with no transaction open.
    """
    codename = Codename(typed[:MAX_CODENAME_CHARS])
    lookup_salt, reply_salt = _salts(desk)
    lookup = lookup_id(codename, lookup_salt, desk.config.kdf)
    with desk.sessions() as reader:
        found = reader.scalar(select(Source).where(Source.lookup_id == lookup))
    if found is None:
        return None
    seed = reply_seed(codename, reply_salt, desk.config.kdf)
    _key, public = key_from_seed(seed)
    if found.reply_public_key is None:  # a source made before replies existed
        with desk.writers() as writer:
            writer.execute(update(Source).where(Source.id == found.id)
                           .values(reply_public_key=public))
            writer.commit()
        found.reply_public_key = public
    return found, seed


def start_session(source: Source, seed: bytes) -> None:
    """Begin a fresh source session (new token) holding the source and its sealed reply key;
    the language the source chose carries over."""
    forget_session()
    server_session().rotate()
    session["source_id"] = source.id
    sealed = seal(_seal_key(), seed, SEAL_AAD)
    session[SEALED_FIELD] = base64.b64encode(sealed).decode("ascii")


def forget_session() -> None:
    """Empty the session but for the language the source chose."""
    locale = session.get(LOCALE_KEY)
    session.clear()
    if locale is not None:
        session[LOCALE_KEY] = locale


def session_reply_seed() -> bytes | None:
    """This session's reply key seed, unsealed with the cookie; None if it has none."""
    sealed = session.get(SEALED_FIELD)
    if not isinstance(sealed, str):
        return None
    try:
        return unseal(_seal_key(), base64.b64decode(sealed), SEAL_AAD)
    except (UnsealFailed, ValueError):
        return None


def session_reply_key() -> ReplyKey | None:
    """This session's reply key, unsealed with the cookie; None if it has none."""
    seed = session_reply_seed()
    if seed is None:
        return None
    try:
        return key_from_seed(seed)[0]
    except FormatError:
        return None


def _seal_key() -> bytes:
    return server_session().cookie_key(SEAL_PURPOSE)
