"""The object metadata record, against the known-answer files and FORMAT.md's reject rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crypto.errors import FormatError
from crypto.objects import ObjectRecord, part_name
from tests.harness.paths import VECTORS


@pytest.mark.parametrize("vector", sorted(VECTORS.glob("object-v1*.json")), ids=lambda p: p.name)
def test_vectors_parse_and_serialise_byte_for_byte(vector: Path) -> None:
    data = vector.read_bytes()
    record = ObjectRecord.from_json(data)
    assert record.to_json() + b"\n" == data


def test_vector_with_undecodable_name_keeps_exact_bytes() -> None:
    record = ObjectRecord.from_json((VECTORS / "object-v1-nonutf8-multipart.json").read_bytes())
    assert record.filename == b"\xff\xfe-clip.mov"
    assert record.size == 6
    assert record.sha256 is None
    assert [p.name for p in record.parts] == ["part-000000.gpg", "part-000001.gpg"]


def _valid() -> dict[str, Any]:
    return json.loads((VECTORS / "object-v1.json").read_bytes())


@pytest.mark.parametrize(("change", "complaint"), [
    ({"format": "other"}, "not a desk object"),
    ({"version": 2}, "unsupported metadata record version"),
    ({"id": "ABC"}, "bad id"),
    ({"kind": "video"}, "bad kind"),
    ({"received_at": "2026-11-27T06:40:12"}, "time zone"),
    ({"size": 1}, "sum of the part sizes"),
    ({"sha256": "xyz"}, "bad sha256"),
    ({"parts": [{"name": "part-000001.gpg", "size": 5242880, "sha256": "0" * 64}]}, "in order"),
    ({"parts": [{"name": "part-000000.gpg", "size": -1, "sha256": "0" * 64}]}, "part size"),
    ({"parts": [{"name": "../x", "size": 1, "sha256": "0" * 64}]}, "part name"),
    ({"filename_bytes": "***"}, "filename_bytes"),
])
def test_records_breaking_a_rule_are_rejected(change: dict[str, Any], complaint: str) -> None:
    record = {**_valid(), **change}
    with pytest.raises(FormatError, match=complaint):
        ObjectRecord.from_json(json.dumps(record).encode())


@pytest.mark.parametrize("data", [b"\xff\xfe", b"[]", b"{", b'{"format": "desk-object"}'])
def test_garbage_is_rejected(data: bytes) -> None:
    with pytest.raises(FormatError):
        ObjectRecord.from_json(data)


def test_missing_field_is_rejected() -> None:
    record = _valid()
    del record["parts"]
    with pytest.raises(FormatError, match="missing"):
        ObjectRecord.from_json(json.dumps(record).encode())


def test_part_names_are_zero_padded_and_bounded() -> None:
    assert part_name(0) == "part-000000.gpg"
    assert part_name(999_999) == "part-999999.gpg"
    with pytest.raises(ValueError, match="out of range"):
        part_name(1_000_000)
