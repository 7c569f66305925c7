"""Reply boxes (crypto/reply.py): keys derived from the codename alone, HPKE with ML-KEM-768 +
X25519, and the known-answer vector in tests/vectors/reply-v1.json."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from crypto.codename import Codename, generate_codename, new_salt
from crypto.errors import FormatError
from crypto.kdf import KdfParams
from crypto.reply import (
    PUBLIC_KEY_BYTES,
    derive_reply_key,
    load_public_key,
    open_reply,
    read_header,
    reply_text,
    seal_reply,
)
from tests.harness.paths import VECTORS

VECTOR = json.loads((VECTORS / "reply-v1.json").read_text())
CHEAP = KdfParams(memory_cost=8, iterations=1, lanes=1)


def test_vector_derives_the_same_public_key_and_opens_its_box() -> None:
    params = KdfParams(VECTOR["kdf"]["memory_cost_kib"], VECTOR["kdf"]["iterations"],
                       VECTOR["kdf"]["lanes"])
    key, public = derive_reply_key(Codename(VECTOR["codename"]),
                                   bytes.fromhex(VECTOR["reply_salt_hex"]), params)
    assert hashlib.sha256(public).hexdigest() == VECTOR["public_key_sha256"]
    assert base64.b64decode(VECTOR["public_key_b64"]) == public
    box = base64.b64decode(VECTOR["box_b64"])
    assert reply_text(open_reply(key, box)) == VECTOR["text"]
    assert read_header(box).reply_id == "00" * 16


def test_same_codename_same_key_other_codename_or_salt_cannot_open() -> None:
    codename, salt = generate_codename(), new_salt()
    key, public = derive_reply_key(codename, salt, CHEAP)
    assert derive_reply_key(Codename(codename.reveal().upper()), salt, CHEAP)[1] == public
    box = seal_reply(public, "ما هو مكان التصوير؟")
    assert reply_text(key.open(box)) == "ما هو مكان التصوير؟"
    for other in (derive_reply_key(generate_codename(), salt, CHEAP)[0],
                  derive_reply_key(codename, new_salt(), CHEAP)[0]):
        with pytest.raises(FormatError, match="cannot be opened"):
            open_reply(other, box)


@pytest.mark.parametrize("where", [0, 12, 40, 200, -1])
def test_any_altered_byte_is_refused(where: int) -> None:
    key, public = derive_reply_key(generate_codename(), new_salt(), CHEAP)
    box = bytearray(seal_reply(public, "a question"))
    box[where] ^= 0x01
    with pytest.raises(FormatError):
        open_reply(key, bytes(box))


def test_header_checks_catch_what_is_not_a_reply() -> None:
    _, public = derive_reply_key(generate_codename(), new_salt(), CHEAP)
    box = seal_reply(public, "x")
    assert read_header(box).recipient == hashlib.sha256(public).digest()
    for bad in (b"", box[:100], b"NOTAREPLY" + box[9:], box[:9] + b"\x02" + box[10:]):
        with pytest.raises(FormatError):
            read_header(bad)


def test_public_keys_are_checked() -> None:
    _, public = derive_reply_key(generate_codename(), new_salt(), CHEAP)
    assert len(public) == PUBLIC_KEY_BYTES
    load_public_key(public)
    with pytest.raises(FormatError):
        load_public_key(public[:-1])


def test_key_repr_hides_it() -> None:
    key, _ = derive_reply_key(generate_codename(), new_salt(), CHEAP)
    assert repr(key) == "ReplyKey(<hidden>)"
