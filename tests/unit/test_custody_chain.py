"""The custody chain as crypto/ writes and verifies it, and the known-answer vector."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from crypto.custody import (
    GENESIS_HASH,
    CustodyEntry,
    SigningKey,
    ciphertext_digest,
    entries_from_lines,
    entry_body,
    make_entry,
    verify_chain,
)
from crypto.errors import CustodyBroken
from tests.harness.paths import VECTORS


def _chain(key: SigningKey, length: int = 5) -> list[CustodyEntry]:
    """Objects 0, 1, 2... each ingested, then exported by alice."""
    entries: list[CustodyEntry] = []
    for n in range(length):
        entries.append(make_entry(key, entries[-1] if entries else None, date(2026, 11, 27),
                                  "ingest" if n % 2 == 0 else "export", f"{n // 2:032x}",
                                  f"{n // 2 + 1:064x}", None if n % 2 == 0 else "alice"))
    return entries


def test_chain_links_and_verifies() -> None:
    key = SigningKey.generate()
    chain = _chain(key)
    assert chain[0].prev_hash == GENESIS_HASH
    assert [e.seq for e in chain] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(chain))
    assert verify_chain(chain, key.public_hex) == chain


@pytest.mark.parametrize(("damage", "seq", "words"), [
    (lambda c: c[:2] + c[3:], 3, "missing"),
    (lambda c: [c[0], c[2], c[1], *c[3:]], 2, "missing or out of order"),
    (lambda c: [*c[:2], dataclasses.replace(c[2], actor="mallory"), *c[3:]], 3, "altered"),
    (lambda c: [*c[:2], dataclasses.replace(c[2], on=date(2020, 1, 1)), *c[3:]], 3, "altered"),
    (lambda c: [*c[:3], dataclasses.replace(c[3], prev_hash="1" * 64), *c[4:]], 4, "link"),
    (lambda c: [*c[:1], dataclasses.replace(c[1], signature="00" * 64), *c[2:]], 2, "signature"),
    (lambda c: [*c[:4], dataclasses.replace(c[4], event="teleport")], 5, "unknown event"),
])
def test_any_damage_is_named_at_the_first_bad_entry(
        damage: Callable[[list[CustodyEntry]], list[CustodyEntry]], seq: int, words: str
) -> None:
    key = SigningKey.generate()
    with pytest.raises(CustodyBroken, match=words) as broken:
        verify_chain(damage(_chain(key)), key.public_hex)
    assert broken.value.seq == seq
    assert f"custody entry {seq}" in str(broken.value)


def test_another_desks_key_is_refused() -> None:
    chain = _chain(SigningKey.generate())
    with pytest.raises(CustodyBroken, match="signature") as broken:
        verify_chain(chain, SigningKey.generate().public_hex)
    assert broken.value.seq == 1


def test_a_resigned_forgery_still_breaks_the_link() -> None:
    key = SigningKey.generate()
    chain = _chain(key)
    forged = make_entry(key, chain[1], date(2026, 11, 28), "delete", chain[0].subject,
                        chain[0].digest, "mallory")
    with pytest.raises(CustodyBroken, match="link") as broken:
        verify_chain([*chain[:2], forged, *chain[3:]], key.public_hex)
    assert broken.value.seq == 4


def test_entries_round_trip_through_json_lines() -> None:
    chain = _chain(SigningKey.generate())
    lines = [entry.to_json() for entry in chain]
    assert list(entries_from_lines(["", *lines, "  "])) == chain


def test_signing_key_file_is_private_and_its_repr_hides_it(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "signing_key"
    key.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(path).public_hex == key.public_hex
    assert path.read_text().strip() not in repr(key)


def test_known_answer_vector() -> None:
    vector = json.loads((VECTORS / "custody-v1.json").read_text())
    entries = [CustodyEntry.from_json(json.dumps(e)) for e in vector["entries"]]
    assert verify_chain(entries, vector["public_key"]) == entries
    first = entries[0]
    body = entry_body(first.seq, first.on, first.event, first.subject,
                      first.digest, first.actor, first.prev_hash)
    assert body.decode() == vector["first_body"]
    assert hashlib.sha256(body).hexdigest() == first.entry_hash


def test_ciphertext_digest_is_over_sorted_name_size_hash_lines() -> None:
    files = {"part-000000.gpg": (5, "b" * 64), "meta.gpg": (3, "a" * 64)}
    text = f"meta.gpg 3 {'a' * 64}\npart-000000.gpg 5 {'b' * 64}\n"
    assert ciphertext_digest(files) == hashlib.sha256(text.encode()).hexdigest()
