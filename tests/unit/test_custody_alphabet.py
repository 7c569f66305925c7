"""Custody entries keep every field inside a small ASCII alphabet, so their canonical bytes
are the same whatever JSON encoder writes them (crypto/FORMAT.md, "Custody entry"): the desk
cannot append an entry outside it, and a verifier refuses one even when it is properly
signed. Entries about one object keep the digest it entered the log with."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import date

import pytest

from crypto.custody import (
    CustodyEntry,
    SigningKey,
    entry_body,
    make_entry,
    verify_chain,
)
from crypto.errors import CustodyBroken, FormatError
from tests.harness.paths import VECTORS

VECTOR = json.loads(
    (VECTORS / "custody-v1.json").read_text("utf-8"))
DAY = date(2026, 11, 27)
OBJECT = "9b1f0e6c2d4a48f1a3c5e7d9b0a2c4e6"
DIGEST = "c" * 64

BAD_ACTORS = ["Alice", "alice\n", "ali ce", "élodie", "<script>", "a/b", "a" * 65, "-alice",
              ".alice", "", "al\"ice", "alice\\", "\u212aelvin"]
GOOD_ACTORS = ["alice", "desk-cli", "retention", "a", "0", "j.doe_2-x", "a" * 64]


def _signed(key: SigningKey, previous: CustodyEntry | None, event: str, object_id: str | None,
            digest: str | None, actor: str | None) -> CustodyEntry:
    """An entry signed by `key` without make_entry's checks: what a careless or hostile
    writer holding the key could produce."""
    seq = 1 if previous is None else previous.seq + 1
    prev_hash = "0" * 64 if previous is None else previous.entry_hash
    body = entry_body(seq, DAY, event, object_id, digest, actor, prev_hash)
    entry_hash = hashlib.sha256(body).hexdigest()
    return CustodyEntry(seq, DAY, event, object_id, digest, actor, prev_hash, entry_hash,
                        key.sign(bytes.fromhex(entry_hash)))


@pytest.mark.parametrize("actor", BAD_ACTORS)
def test_an_actor_outside_the_alphabet_cannot_be_appended(actor: str) -> None:
    key = SigningKey.generate()
    first = make_entry(key, None, DAY, "ingest", OBJECT, DIGEST)
    with pytest.raises(ValueError, match="bad actor"):
        make_entry(key, first, DAY, "export", OBJECT, DIGEST, actor)


@pytest.mark.parametrize("actor", BAD_ACTORS)
def test_a_signed_entry_with_an_actor_outside_the_alphabet_fails_verification(
        actor: str) -> None:
    key = SigningKey.generate()
    first = make_entry(key, None, DAY, "ingest", OBJECT, DIGEST)
    second = _signed(key, first, "export", OBJECT, DIGEST, actor)
    with pytest.raises(CustodyBroken, match="bad actor") as broken:
        verify_chain([first, second], key.public_hex)
    assert broken.value.seq == 2


@pytest.mark.parametrize(("object_id", "digest", "words"), [
    (OBJECT.upper(), DIGEST, "bad object id"),
    (OBJECT + "\n", DIGEST, "bad object id"),
    (OBJECT[:-1], DIGEST, "bad object id"),
    (OBJECT, DIGEST.upper(), "bad hash field"),
    (OBJECT, DIGEST + "\n", "bad hash field"),
])
def test_ids_and_digests_outside_lower_case_hex_are_refused_both_ways(
        object_id: str, digest: str, words: str) -> None:
    key = SigningKey.generate()
    with pytest.raises(ValueError, match=words):
        make_entry(key, None, DAY, "ingest", object_id, digest)
    with pytest.raises(CustodyBroken, match=words):
        verify_chain([_signed(key, None, "ingest", object_id, digest, None)], key.public_hex)


def test_an_upper_case_signature_is_refused_though_it_would_verify() -> None:
    key = SigningKey.generate()
    entry = make_entry(key, None, DAY, "ingest", OBJECT, DIGEST)
    shouted = dataclasses.replace(entry, signature=entry.signature.upper())
    with pytest.raises(CustodyBroken, match="signature field"):
        verify_chain([shouted], key.public_hex)


@pytest.mark.parametrize(("event", "object_id", "digest", "actor"), [
    ("ingest", OBJECT, DIGEST, "alice"),
    ("export", OBJECT, DIGEST, None),
    ("ingest", None, DIGEST, None),
    ("ingest", OBJECT, None, None),
])
def test_entries_without_the_values_their_event_needs_are_refused_both_ways(
        event: str, object_id: str | None, digest: str | None, actor: str | None) -> None:
    key = SigningKey.generate()
    chain = [make_entry(key, None, DAY, "ingest", OBJECT, DIGEST)] if event != "ingest" else []
    with pytest.raises(ValueError, match=r"no object|actor"):
        make_entry(key, chain[-1] if chain else None, DAY, event, object_id, digest, actor)
    bad = _signed(key, chain[-1] if chain else None, event, object_id, digest, actor)
    with pytest.raises(CustodyBroken, match=r"no object|actor") as broken:
        verify_chain([*chain, bad], key.public_hex)
    assert broken.value.seq == len(chain) + 1


@pytest.mark.parametrize(("event", "object_id", "digest", "words"), [
    ("ingest", OBJECT, DIGEST, "entered the log before"),
    ("reply", OBJECT, DIGEST, "entered the log before"),
    ("export", "0" * 32, DIGEST, "no earlier ingest"),
    ("delete", OBJECT, "d" * 64, "digest other than"),
])
def test_entries_about_one_object_keep_its_first_digest(event: str, object_id: str,
                                                         digest: str, words: str) -> None:
    key = SigningKey.generate()
    first = make_entry(key, None, DAY, "ingest", OBJECT, DIGEST)
    second = make_entry(key, first, DAY, event, object_id, digest,
                        None if event == "ingest" else "alice")
    with pytest.raises(CustodyBroken, match=words) as broken:
        verify_chain([first, second], key.public_hex)
    assert broken.value.seq == 2


@pytest.mark.parametrize("actor", GOOD_ACTORS)
def test_any_encoder_writes_the_same_body_for_allowed_values(actor: str) -> None:
    key = SigningKey.generate()
    first = make_entry(key, None, DAY, "reply", OBJECT, DIGEST, actor)
    body = entry_body(first.seq, first.on, first.event, first.subject,
                      first.digest, first.actor, first.prev_hash)
    by_hand = ('{"actor":"' + actor + '","ciphertext_sha256":"' + DIGEST +
               '","event":"reply","object_id":"' + OBJECT + '","on":"2026-11-27","prev_hash":"'
               + "0" * 64 + '","seq":1,"v":1}').encode("ascii")
    escaped = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"),
                         ensure_ascii=True).encode("ascii")
    assert body == by_hand == escaped
    assert verify_chain([first], key.public_hex) == [first]


def test_the_known_answer_chain_still_verifies_byte_for_byte() -> None:
    entries = [CustodyEntry.from_json(json.dumps(e, sort_keys=True, separators=(",", ":")))
               for e in VECTOR["entries"]]
    assert verify_chain(entries, VECTOR["public_key"]) == entries
    for entry, stored in zip(entries, VECTOR["entries"], strict=True):
        assert json.loads(entry.to_json()) == stored
        assert entry.to_json() == json.dumps(stored, sort_keys=True, separators=(",", ":"))
    assert entry_body(entries[0].seq, entries[0].on, entries[0].event, entries[0].subject,
                      entries[0].digest, entries[0].actor,
                      entries[0].prev_hash).decode("ascii") == VECTOR["first_body"]


def _line(**change: object) -> str:
    entry = dict(VECTOR["entries"][0])
    entry.update(change)
    return json.dumps({k: v for k, v in entry.items() if v != "<drop>"})


@pytest.mark.parametrize(("line", "words"), [
    (_line(v=1), "unsupported version"),
    (_line(v=3), "unsupported version"),
    (_line(v="2"), "unsupported version"),
    (_line(v=2), "members"),  # version 2 names the fields subject and digest
    (_line(note="x"), "members"),
    (_line(actor="<drop>"), "members"),
    (_line(seq="1"), "seq is not an integer"),
    (_line(seq=True), "seq is not an integer"),
    (_line(on="20261127"), "YYYY-MM-DD"),
    (_line(on="2026-11-27T00:00:00"), "YYYY-MM-DD"),
    (_line(on="2026-02-30"), "no such day"),
    (_line(actor=1), "not a string"),
    (_line(seq=1.0), "integer"),
    ('{"seq":1,' + _line()[1:], "repeats a member name"),
    ("[1]", "not a JSON object"),
    ("{", "not UTF-8 JSON"),
])
def test_lines_that_are_not_a_custody_entry_of_this_version_are_refused(line: str,
                                                                      words: str) -> None:
    with pytest.raises(FormatError, match=words):
        CustodyEntry.from_json(line)
