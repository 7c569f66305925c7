"""Padmé (crypto/items.py `padme`), the version 2 record's padded size and fixed length, and
the sealed stream of an upload's tail (crypto/sealing.py)."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime

import pytest

from crypto import sealing
from crypto.errors import FormatError, UnsealFailed
from crypto.items import (
    ItemRecord,
    PartRecord,
    RecordTooLarge,
    check_record_fits,
    padme,
    record_padded_size,
)


@pytest.mark.parametrize(("length", "padded"), [
    (0, 0), (1, 1), (2, 2), (3, 3), (7, 7), (8, 8), (9, 10), (15, 16), (17, 18),
    (100, 104), (1000, 1024), (1024, 1024), (1025, 1088),
    (5_000_000, 5_111_808), (5 * 2**20, 5 * 2**20), (10**9, 1_006_632_960),
])
def test_known_values(length: int, padded: int) -> None:
    assert padme(length) == padded


def test_by_the_papers_formula_overhead_below_12_percent_and_monotonic() -> None:
    import math
    previous = 0
    lengths = [*range(2, 70_000), *(int(1.37 ** k) for k in range(20, 90))]
    for length in sorted(set(lengths)):
        e = math.floor(math.log2(length))
        s = math.floor(math.log2(e)) + 1 if e else 1
        step = 2 ** (e - s) if e - s > 0 else 1
        assert padme(length) == -(-length // step) * step, length
        assert length <= padme(length) <= length * 1.12, length
        assert padme(length) >= previous, length
        previous = padme(length)


def test_lengths_within_one_step_pad_alike_and_padding_is_idempotent() -> None:
    assert padme(1_000_001) == padme(1_015_808) == 1_015_808
    for length in (0, 1, 2, 1000, 123_456_789):
        assert padme(padme(length)) == padme(length)
    with pytest.raises(ValueError, match="negative"):
        padme(-1)


def _record(name: bytes | None, parts: int) -> ItemRecord:
    return ItemRecord(
        object_id="ab" * 16, kind="file", received_at=datetime.now(UTC),
        parts=tuple(PartRecord(f"part-{i:06d}.gpg", 64 << 20, "0" * 64) for i in range(parts)),
        filename=name, content_type="video/mp4", sha256=None,
        content_size=(64 << 20) * parts)


def test_a_version_2_record_has_one_length_per_part_count_whatever_the_name() -> None:
    for parts in (1, 2, 40, 200):
        lengths = {len(_record(name, parts).to_json())
                   for name in (None, b"a.mp4", "محطة".encode() * 100, b"\xff" * 900)}
        assert lengths == {record_padded_size(parts)}
        assert record_padded_size(parts) % 4096 == 0
    data = _record(b"x.mp4", 3).to_json()
    assert data.endswith(b" ")
    assert json.loads(data)["version"] == 2
    assert ItemRecord.from_json(data).filename == b"x.mp4"


def test_a_name_too_long_for_the_record_is_refused() -> None:
    check_record_fits(b"n" * 5000, "video/mp4")
    with pytest.raises(RecordTooLarge):
        check_record_fits(b"n" * 7000, "video/mp4")
    with pytest.raises(RecordTooLarge):
        check_record_fits(b"\x01" * 1200, None)  # each escapes to six bytes


def test_version_2_sizes() -> None:
    good = json.loads(_record(b"a", 1).to_json())
    good.update(size=(64 << 20) - 1000)  # Padmé of it is 64 MiB
    assert ItemRecord.from_json(json.dumps(good).encode()).size == (64 << 20) - 1000
    for size in ((64 << 20) - 3 * 2**20, (64 << 20) + 1, True, -1):
        with pytest.raises(FormatError):
            ItemRecord.from_json(json.dumps({**good, "size": size}).encode())


def _sealed(chunks: list[bytes], key: bytes = b"k" * 32, aad: bytes = b"upload") -> bytes:
    out = io.BytesIO()
    writer = sealing.SealedWriter(key, aad, out)
    for chunk in chunks:
        writer.write(chunk)
    writer.close()
    return out.getvalue()


def _open(data: bytes, key: bytes = b"k" * 32, aad: bytes = b"upload") -> bytes:
    return b"".join(sealing.open_sealed(key, aad, io.BytesIO(data)))


def test_a_sealed_stream_round_trips_and_its_size_shows_from_the_framing() -> None:
    plain = os.urandom(3 * sealing.STREAM_CHUNK + 5)
    for chunks in ([plain], [plain[:7], plain[7:100_000], plain[100_000:]], [b""]):
        data = _sealed(chunks)
        assert _open(data) == b"".join(chunks)
        assert sealing.sealed_plaintext_size(io.BytesIO(data)) == len(b"".join(chunks))
        assert b"".join(chunks)[:64] not in data or not chunks[0]


def test_a_sealed_stream_cut_reordered_or_moved_does_not_open() -> None:
    plain = os.urandom(2 * sealing.STREAM_CHUNK + 10)
    data = _sealed([plain])
    frame = 4 + sealing.STREAM_CHUNK + sealing.TAG_BYTES
    head, first, second = data[:16], data[16:16 + frame], data[16 + frame:16 + 2 * frame]
    for damaged in (data[:-1], data[:16 + frame], head + second + first + data[16 + 2 * frame:],
                    data + b"\0", data[:20] + bytes([data[20] ^ 1]) + data[21:]):
        with pytest.raises(UnsealFailed):
            _open(damaged)
    assert sealing.sealed_plaintext_size(io.BytesIO(data[:16 + frame])) is None
    with pytest.raises(UnsealFailed):
        _open(data, aad=b"another upload")
    with pytest.raises(UnsealFailed):
        _open(data, key=b"j" * 32)
