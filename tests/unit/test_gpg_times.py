"""The online desk's GnuPG home dates a key import to the day, not the second (invariant 5).

`pubring.kbx` stamps every key blob with the time it was imported; for the desk's own home
(`seed_file=False`) the import runs at the last second of the UTC day instead. The console's
homes are on the offline machine and keep gpg's own behaviour.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from crypto.gpg import GnuPG
from tests.harness.gpg import make_keypair


def stamps_between(data: bytes, start: int, end: int) -> list[int]:
    """Offsets of every big-endian 32-bit value in [start, end]: how keybox stores times."""
    return [offset for offset in range(len(data) - 3)
            if start <= struct.unpack_from(">I", data, offset)[0] <= end]


def imported_at(tmp_path: Path, seed_file: bool) -> tuple[bytes, int, int]:
    """pubring.kbx after importing a second key inside a recorded window (the first import
    made the file, whose header keeps its creation time)."""
    first = make_keypair(tmp_path / "first", "First")
    second = make_keypair(tmp_path / "second", "Second")
    home = tmp_path / "desk"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home, seed_file=seed_file)
    gpg.import_public_key(first.public_key.read_bytes(), first.fingerprint)
    time.sleep(1.1)  # the keys' own creation times and the file's header lie before the window
    start = int(time.time())
    gpg.import_public_key(second.public_key.read_bytes(), second.fingerprint)
    end = int(time.time())
    return (home / "pubring.kbx").read_bytes(), start, end


def test_the_desks_home_keeps_no_import_time(tmp_path: Path) -> None:
    data, start, end = imported_at(tmp_path, seed_file=False)
    assert stamps_between(data, start, end) == []
    day_end = (start // 86400 + 1) * 86400 - 1
    assert struct.pack(">I", day_end) in data


def test_stock_gpg_would_keep_it(tmp_path: Path) -> None:
    # The control: without the desk's option the import time is there to find.
    data, start, end = imported_at(tmp_path, seed_file=True)
    assert stamps_between(data, start, end) != []
