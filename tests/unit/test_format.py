"""The object metadata record, against the known-answer files and FORMAT.md's reject rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crypto.errors import FormatError
from crypto.items import ItemRecord
from crypto.names import part_name
from tests.harness.paths import VECTORS


@pytest.mark.parametrize("vector", sorted(VECTORS.glob("object-v1*.json")), ids=lambda p: p.name)
def test_vectors_parse_and_serialise_byte_for_byte(vector: Path) -> None:
    data = vector.read_bytes()
    record = ItemRecord.from_json(data)
    assert record.to_json() + b"\n" == data


def test_vector_with_undecodable_name_keeps_exact_bytes() -> None:
    record = ItemRecord.from_json((VECTORS / "object-v1-nonutf8-multipart.json").read_bytes())
    assert record.filename == b"\xff\xfe-clip.mov"
    assert record.size == 6
    assert record.sha256 is None
    assert [p.name for p in record.parts] == ["part-000000.gpg", "part-000001.gpg"]


def _valid() -> dict[str, Any]:
    return json.loads((VECTORS / "object-v1.json").read_bytes())


@pytest.mark.parametrize(("change", "complaint"), [
    ({"format": "other"}, "not a desk object"),
    ({"version": 3}, "unsupported metadata record version"),
    ({"id": "ABC"}, "bad id"),
    ({"kind": "video"}, "bad kind"),
    ({"received_at": "2026-11-27T06:40:12"}, "time zone"),
    ({"size": 1}, "sum of the part sizes"),
    ({"sha256": "xyz"}, "bad sha256"),
    ({"parts": [{"name": "part-000001.gpg", "size": 5242880, "sha256": "0" * 64}]}, "in order"),
    ({"parts": [{"name": "part-000000.gpg", "size": -1, "sha256": "0" * 64}]}, "part size"),
    ({"parts": [{"name": "../x", "size": 1, "sha256": "0" * 64}]}, "part name"),
    ({"filename_bytes": "***"}, "filename_bytes"),
    ({"filename_bytes": "//4tY2xpcC5tb3Y"}, "filename_bytes"),
    ({"filename_bytes": "//4tY2xpcC5tb3Z="}, "filename_bytes"),
    ({"id": "9b1f0e6c2d4a48f1a3c5e7d9b0a2c4e6\n"}, "bad id"),
    ({"received_at": "2026-11-27T06:40Z"}, "time zone"),
    ({"received_at": "2026-11-27 06:40:12Z"}, "time zone"),
    ({"received_at": "20261127T064012Z"}, "time zone"),
    ({"received_at": "2026-11-27T06:40:12.1234567Z"}, "time zone"),
    ({"received_at": "2026-11-27T25:40:12Z"}, "bad received_at"),
    ({"size": True}, "sum of the part sizes"),
    ({"parts": []}, "list of 1 to"),
    ({"parts": [{"name": "part-" + "\u0660" * 6 + ".gpg", "size": 5242880,
                 "sha256": "0" * 64}]}, "part name"),
])
def test_records_breaking_a_rule_are_rejected(change: dict[str, Any], complaint: str) -> None:
    record = {**_valid(), **change}
    with pytest.raises(FormatError, match=complaint):
        ItemRecord.from_json(json.dumps(record).encode())


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[]", b"{", b'{"format": "desk-object"}'])
def test_garbage_is_rejected(data: bytes) -> None:
    with pytest.raises(FormatError):
        ItemRecord.from_json(data)


@pytest.mark.parametrize(("edit", "complaint"), [
    (lambda text: text.replace('"size": 5242880,', '"size": 5242880, "size": 5242880,', 1),
     "repeats a member name"),
    (lambda text: text.replace('"size": 5242880,', '"size": 5242880.0,', 1), "integer"),
    (lambda text: text.replace('"size": 5242880,', '"size": 9007199254740992,', 1),
     "out of range"),
    (lambda text: text.replace('"size": 5242880,', '"size": NaN,', 1), "integer"),
    (lambda text: text.replace('"station.mp4"', '"\\ud800.mp4"', 1), "surrogate"),
    (lambda text: "\ufeff" + text, "not UTF-8 JSON"),
])
def test_json_outside_the_profile_is_rejected(edit: Callable[[str], str], complaint: str) -> None:
    text = (VECTORS / "object-v1.json").read_text("utf-8")
    with pytest.raises(FormatError, match=complaint):
        ItemRecord.from_json(edit(text).encode("utf-8"))


def test_missing_field_is_rejected() -> None:
    record = _valid()
    del record["parts"]
    with pytest.raises(FormatError, match="missing"):
        ItemRecord.from_json(json.dumps(record).encode())


def test_part_names_are_zero_padded_and_bounded() -> None:
    assert part_name(0) == "part-000000.gpg"
    assert part_name(999_999) == "part-999999.gpg"
    with pytest.raises(ValueError, match="out of range"):
        part_name(1_000_000)


def test_the_version_2_accept_vector_is_read_with_its_true_size() -> None:
    data = (VECTORS / "object-v2.json").read_bytes()
    assert len(data) == 8192  # padded with spaces to its fixed length
    record = ItemRecord.from_json(data)
    assert (record.version, record.size, record.stored_size) == (2, 5_000_000, 5_111_808)
