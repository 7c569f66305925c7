"""crypto/sealing.py against its known-answer file, and each of the desk's three sealing sites
against the bytes it wrote before the primitive existed: what a desk stored then still opens.

The format checks compute with `cryptography` directly rather than through crypto/sealing.py,
so they would notice the primitive drifting from what is stored.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from crypto.errors import UnsealFailed
from crypto.reply import key_from_seed, reply_text, seal_reply
from crypto.sealing import _seal_with_nonce, derive, seal, unseal
from desk.intake import tus
from desk.intake.tus import TusError, UploadRecord
from desk.records.models import Source
from desk.web.sessions import ServerSession, seal_data, unseal_data
from desk.web.source import login
from tests.harness.paths import VECTORS as VECTOR_DIR

VECTORS = json.loads((VECTOR_DIR / "sealing-v1.json").read_text())
SEALS = {v["use"]: v for v in VECTORS["seal"]}
DERIVES = {v["use"]: v for v in VECTORS["derive"]}


def hkdf(secret: bytes, info: bytes) -> bytes:
    """HKDF-SHA256, no salt, 32 bytes: the derivation every sealing site has always used."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def aes_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce(12) || AES-256-GCM ciphertext and tag: the stored layout, computed directly."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aes_open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)


# --- The primitive ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["derive"], ids=lambda v: v["use"])
def test_derive_matches_the_known_answers(vector: dict[str, str]) -> None:
    key = derive(vector["secret"].encode("ascii"), vector["purpose"].encode("ascii"))
    assert key.hex() == vector["key_hex"]


@pytest.mark.parametrize("vector", VECTORS["seal"], ids=lambda v: v["use"])
def test_seal_and_unseal_match_the_known_answers(vector: dict[str, str]) -> None:
    key, aad = bytes.fromhex(vector["key_hex"]), vector["aad"].encode("ascii")
    plaintext = bytes.fromhex(vector["plaintext_hex"])
    sealed = _seal_with_nonce(key, bytes.fromhex(vector["nonce_hex"]), plaintext, aad)
    assert sealed.hex() == vector["sealed_hex"]
    assert unseal(key, bytes.fromhex(vector["sealed_hex"]), aad) == plaintext


def test_the_vectors_chain_as_the_desk_derives() -> None:
    # The tus owner secret is the hex of a derivation (this vector's from a session token, as
    # the first version made it; now from the codename's reply key seed), and keys the record.
    owner = DERIVES["tus upload owner secret (its hex is the secret below)"]["key_hex"]
    assert DERIVES["tus upload record"]["secret"] == owner
    for use in ("session data", "session reply key", "tus upload record"):
        assert SEALS[use]["key_hex"] == DERIVES[use]["key_hex"]


def test_seal_uses_a_fresh_nonce_and_the_stored_layout() -> None:
    key = derive(b"secret", b"desk test")
    first, second = seal(key, b"evidence", b"aad"), seal(key, b"evidence", b"aad")
    assert first[:12] != second[:12]
    assert len(first) == 12 + len(b"evidence") + 16
    assert aes_open(key, first, b"aad") == b"evidence"
    assert unseal(key, aes_seal(key, b"evidence", b"aad"), b"aad") == b"evidence"


def test_every_changed_byte_is_refused() -> None:
    vector = SEALS["session reply key"]
    key, aad = bytes.fromhex(vector["key_hex"]), vector["aad"].encode("ascii")
    sealed = bytes.fromhex(vector["sealed_hex"])
    for index in range(len(sealed)):
        changed = bytearray(sealed)
        changed[index] ^= 0x01
        with pytest.raises(UnsealFailed):
            unseal(key, bytes(changed), aad)


@pytest.mark.parametrize("change", ["aad", "aad-empty", "key", "truncated", "short", "empty"])
def test_another_key_aad_or_a_cut_is_refused(change: str) -> None:
    vector = SEALS["tus upload record"]
    key, aad = bytes.fromhex(vector["key_hex"]), vector["aad"].encode("ascii")
    sealed = bytes.fromhex(vector["sealed_hex"])
    if change == "aad":
        aad = aad[:-1] + b"1"
    elif change == "aad-empty":
        aad = b""
    elif change == "key":
        key = bytes([key[0] ^ 0x80]) + key[1:]
    elif change == "truncated":
        sealed = sealed[:-1]
    elif change == "short":
        sealed = sealed[:27]
    else:
        sealed = b""
    with pytest.raises(UnsealFailed):
        unseal(key, sealed, aad)


def test_a_key_that_is_not_256_bits_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        seal(bytes(16), b"x", b"")


# --- Session data: desk/web/sessions.py -------------------------------------------------------


def test_session_data_sealed_before_still_opens() -> None:
    vector = SEALS["session data"]
    session = ServerSession(None, DERIVES["session data"]["secret"])
    assert session.sid == vector["aad"]
    expected = json.loads(bytes.fromhex(vector["plaintext_hex"]))
    assert unseal_data(session, vector["stored"]) == expected


def test_session_data_keeps_its_format() -> None:
    token = "another-token-" + os.urandom(8).hex()
    session = ServerSession(None, token)
    assert session.sid is not None
    key, aad = hkdf(token.encode("ascii"), b"desk session data"), session.sid.encode("ascii")
    stored = seal_data(session, '{"source_id": "abc"}')
    assert json.loads(aes_open(key, base64.b64decode(stored, validate=True), aad)) == \
        {"source_id": "abc"}
    written = base64.b64encode(aes_seal(key, b'{"locale": "de"}', aad)).decode("ascii")
    assert unseal_data(session, written) == {"locale": "de"}
    assert unseal_data(ServerSession(None, token + "x"), written) is None


# --- The reply key in a source session: desk/web/source/login.py ------------------------------


class FixedSession(SessionInterface):
    """Hands the request one given ServerSession, so login's code runs as in a request."""

    def __init__(self, session: ServerSession) -> None:
        self.session = session

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        return self.session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Nothing is stored: the test reads the session object."""


@contextlib.contextmanager
def request_with(session: ServerSession) -> Iterator[ServerSession]:
    """A request context whose Flask session is `session`."""
    app = Flask(__name__)
    app.session_interface = FixedSession(session)
    with app.test_request_context():
        yield session


def _reply_key_opens(seed: bytes) -> bool:
    """Whether this session's reply key is the one `seed` makes: it opens a box sealed to it."""
    key = login.session_reply_key()
    box = seal_reply(key_from_seed(seed)[1], "still yours")
    return key is not None and reply_text(key.open(box)) == "still yours"


def test_a_reply_key_sealed_before_still_opens() -> None:
    vector = SEALS["session reply key"]
    token = DERIVES["session reply key"]["secret"]
    with request_with(ServerSession({login.SEALED_FIELD: vector["stored"]}, token)):
        assert _reply_key_opens(bytes.fromhex(vector["plaintext_hex"]))
    with request_with(ServerSession({login.SEALED_FIELD: vector["stored"]}, token + "x")):
        assert login.session_reply_key() is None


def test_the_reply_key_keeps_its_format() -> None:
    seed = os.urandom(96)
    with request_with(ServerSession({"source_id": "old"}, "old-token")) as session:
        login.start_session(Source(id="s" * 32), seed)
        assert session.token not in (None, "old-token")
        assert session["source_id"] == "s" * 32
        key = hkdf(str(session.token).encode("ascii"), b"desk session reply key")
        stored = session[login.SEALED_FIELD]
        assert aes_open(key, base64.b64decode(stored), b"desk source reply key v1") == seed
        other = os.urandom(96)
        session[login.SEALED_FIELD] = base64.b64encode(
            aes_seal(key, other, b"desk source reply key v1")).decode("ascii")
        assert _reply_key_opens(other)
        session[login.SEALED_FIELD] = base64.b64encode(aes_seal(key, other, b"v2")).decode()
        assert login.session_reply_key() is None


# --- A tus upload's sealed record: desk/intake/tus.py -----------------------------------------


def test_an_upload_record_sealed_before_still_opens() -> None:
    vector = SEALS["tus upload record"]
    owner = DERIVES["tus upload record"]["secret"]
    record: dict[str, Any] = json.loads(bytes.fromhex(vector["plaintext_hex"]))
    assert tus.unseal(owner, vector["aad"], bytes.fromhex(vector["stored"])) == record


def test_an_upload_record_keeps_its_format() -> None:
    owner, upload_id = os.urandom(32).hex(), os.urandom(16).hex()
    key = hkdf(owner.encode("ascii"), b"desk tus upload " + upload_id.encode("ascii"))
    record: UploadRecord = {"filename": None, "filetype": "vid\u00e9o/mp4", "parts": []}
    sealed = tus.seal(owner, upload_id, record)
    assert aes_open(key, sealed, upload_id.encode("ascii")) == \
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    stored: UploadRecord = {"filename": "Yw==", "filetype": None,
                            "parts": [["part-000000.gpg", 3, "00"]]}
    written = aes_seal(key, json.dumps(stored).encode(), upload_id.encode())
    assert tus.unseal(owner, upload_id, written) == stored
    with pytest.raises(TusError) as refused:
        tus.unseal(os.urandom(32).hex(), upload_id, written)
    assert refused.value.status == 404
