"""Reply boxes: journalists' replies sealed to a source's post-quantum reply key (FORMAT.md,
"Reply boxes").

A source's reply keypair is derived from the codename alone (Argon2id with the desk's reply
salt), so only someone holding the codename can open a reply; the desk stores the public key.
Boxes are HPKE (RFC 9180) with the hybrid KEM ML-KEM-768 + X25519, HKDF-SHA256 and
ChaCha20-Poly1305, out of reach of "harvest now, decrypt later".
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.mlkem import (
    MLKEM768PrivateKey,
    MLKEM768PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.codename import Codename
from crypto.errors import FormatError, is_version, load_json
from crypto.kdf import PRODUCTION_KDF, KdfParams, derive

MAGIC = b"DESKREPLY"
VERSION = 1
REPLY_ID_BYTES = 16
MLKEM_SEED_BYTES = 64
X25519_SEED_BYTES = 32
MLKEM_PUBLIC_BYTES = 1184
PUBLIC_KEY_BYTES = MLKEM_PUBLIC_BYTES + 32
# A reply is a question or an answer typed by a journalist, not a document.
MAX_REPLY_BYTES = 64 * 1024
SEED_BYTES = MLKEM_SEED_BYTES + X25519_SEED_BYTES
SUITE = Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
ENC_BYTES = KEM.MLKEM768_X25519.enc_length()
HEADER_BYTES = len(MAGIC) + 1 + REPLY_ID_BYTES + 32


class ReplyKey:
    """A source's reply private key, derived from the codename. Its repr hides it."""

    __slots__ = ("_private",)

    def __init__(self, private: MLKEM768X25519PrivateKey) -> None:
        self._private = private

    def __repr__(self) -> str:
        return "ReplyKey(<hidden>)"

    def open(self, box: bytes) -> bytes:
        """The plaintext of a reply box sealed to this key."""
        return open_reply(self, box)


def reply_seed(codename: Codename, salt: bytes, params: KdfParams = PRODUCTION_KDF) -> bytes:
    """The 96 secret bytes a source's reply key is made from (see derive_reply_key)."""
    return derive(codename.reveal().encode("utf-8"), salt, SEED_BYTES, params)


def key_from_seed(seed: bytes) -> tuple[ReplyKey, bytes]:
    """The reply keypair (private key, public key bytes) made from a 96-byte seed."""
    if len(seed) != SEED_BYTES:
        raise FormatError(f"a reply key seed has {SEED_BYTES} bytes, not {len(seed)}")
    mlkem = MLKEM768PrivateKey.from_seed_bytes(seed[:MLKEM_SEED_BYTES])
    x25519 = X25519PrivateKey.from_private_bytes(seed[MLKEM_SEED_BYTES:])
    public = mlkem.public_key().public_bytes_raw() + \
        x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return ReplyKey(MLKEM768X25519PrivateKey(mlkem, x25519)), public


def derive_reply_key(codename: Codename, salt: bytes,
                     params: KdfParams = PRODUCTION_KDF) -> tuple[ReplyKey, bytes]:
    """The source's reply keypair: (private key, public key bytes).

    Argon2id(codename, the desk's reply salt) gives 96 bytes: a 64-byte ML-KEM-768 seed, then
    a 32-byte X25519 private key. A salt different from the lookup salt keeps the lookup id
    useless for deriving the key.
    """
    return key_from_seed(reply_seed(codename, salt, params))


def load_public_key(data: bytes) -> MLKEM768X25519PublicKey:
    """A stored public key; FormatError if it is not one."""
    if len(data) != PUBLIC_KEY_BYTES:
        raise FormatError(f"a reply public key has {PUBLIC_KEY_BYTES} bytes, not {len(data)}")
    try:
        return MLKEM768X25519PublicKey(
            MLKEM768PublicKey.from_public_bytes(data[:MLKEM_PUBLIC_BYTES]),
            X25519PublicKey.from_public_bytes(data[MLKEM_PUBLIC_BYTES:]))
    except ValueError as exc:
        raise FormatError(f"not a reply public key: {exc}") from exc


def key_id(public: bytes) -> bytes:
    """SHA-256 of a public key: which source a box is for."""
    return hashlib.sha256(public).digest()


def _info(reply_id: bytes, recipient: bytes) -> bytes:
    return MAGIC + bytes([VERSION]) + reply_id + recipient


def reply_record(text: str) -> bytes:
    """The plaintext a box seals for `text`; at most MAX_REPLY_BYTES."""
    return json.dumps({"v": VERSION, "text": text}, ensure_ascii=False).encode("utf-8")


def seal_reply(public: bytes, text: str, reply_id: bytes | None = None) -> bytes:
    """A reply box for the source whose public key is `public`."""
    data = reply_record(text)
    if len(data) > MAX_REPLY_BYTES:
        raise FormatError("a reply is at most 64 KiB")
    reply_id = reply_id or secrets.token_bytes(REPLY_ID_BYTES)
    recipient = key_id(public)
    header = MAGIC + bytes([VERSION]) + reply_id + recipient
    return header + SUITE.encrypt(data, load_public_key(public), _info(reply_id, recipient))


@dataclass(frozen=True)
class BoxHeader:
    """What a reply box says about itself before anyone opens it."""

    reply_id: str
    recipient: bytes


def read_header(box: bytes) -> BoxHeader:
    """Check a box's layout (the desk does this on upload); FormatError if it is not a box."""
    if len(box) < HEADER_BYTES + ENC_BYTES + 16 or len(box) > HEADER_BYTES + ENC_BYTES + \
            MAX_REPLY_BYTES + 16:
        raise FormatError("not a desk reply (wrong size)")
    if box[:len(MAGIC)] != MAGIC:
        raise FormatError("not a desk reply (bad magic)")
    if box[len(MAGIC)] != VERSION:
        raise FormatError(f"unsupported reply version {box[len(MAGIC)]}")
    start = len(MAGIC) + 1
    return BoxHeader(box[start:start + REPLY_ID_BYTES].hex(),
                     box[start + REPLY_ID_BYTES:HEADER_BYTES])


def open_reply(key: ReplyKey, box: bytes) -> bytes:
    """The reply's text as UTF-8 JSON bytes; FormatError if the box was altered or is not
    for this key."""
    header = read_header(box)
    try:
        return SUITE.decrypt(box[HEADER_BYTES:], key._private,
                             _info(bytes.fromhex(header.reply_id), header.recipient))
    except (InvalidTag, ValueError) as exc:
        raise FormatError("this reply cannot be opened with this codename, or was altered") \
            from exc


def reply_text(plaintext: bytes) -> str:
    """The text inside an opened box."""
    record = load_json(plaintext, "reply record")
    if not isinstance(record, dict) or not is_version(record.get("v"), VERSION) or \
            not isinstance(record.get("text"), str):
        raise FormatError("unsupported reply record")
    return str(record["text"])
