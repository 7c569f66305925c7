"""crypto/names.py: every on-disk and in-bundle name has one home, and its values are the ones
stores, bundles and workspaces already hold (FORMAT.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from crypto import names
from crypto.custody import object_files
from desk.storage.store import Store
from tests.harness.paths import REPO as ROOT

# The stored layout, spelled out here independently: a change to any of these would leave
# existing stores, bundles or workspaces unreadable.
LAYOUT = {
    "METADATA_NAME": "meta.gpg",
    "PART_GLOB": "part-*.gpg",
    "REPLY_BOX_NAME": "box",
    "REPLY_COPY_NAME": "copy.gpg",
    "OBJECTS_DIR": "objects",
    "REPLIES_DIR": "replies",
    "DATABASE_NAME": "desk.db",
    "SECRET_KEY_NAME": "secret_key",
    "SIGNING_KEY_FILE_NAME": "signing_key",
    "GNUPG_DIR": "gnupg",
    "STORE_DIR": "store",
    "TOR_DIR": "tor",
    "STAGING_DIR": "staging",
    "UPLOADS_DIR": "uploads",
    "TEMP_PREFIX": ".tmp-",
    "LOCK_NAME": ".lock",
    "BUNDLE_ROOT": "desk-bundle",
    "BUNDLE_FILENAME": "desk-bundle.tar",
    "VERSION_NAME": "VERSION",
    "SIGNING_KEY_NAME": "signing-key.pub",
    "MANIFEST_NAME": "manifest.gpg",
    "MANIFEST_SIGNATURE_NAME": "manifest.sig",
    "CUSTODY_NAME": "custody.gpg",
    "INDEX_NAME": "index.db",
    "DECRYPTED_DIR": "decrypted",
    "RECIPIENTS_HOME_DIR": "recipients-gnupg",
    "PARTIAL_MARK": ".partial-",
}

# Names distinctive enough that any other module spelling one out is a second home for it.
# (objects, replies, uploads and staging are also table names, JSON keys and report labels.)
DISTINCTIVE = {value for value in LAYOUT.values()
               if value not in {"objects", "replies", "uploads", "staging", "store", "box",
                                "tor", "gnupg", "VERSION", "decrypted"}}


def test_names_are_the_stored_layout() -> None:
    assert {name: getattr(names, name) for name in LAYOUT} == LAYOUT
    assert names.part_name(0) == "part-000000.gpg"
    assert names.part_name(123456) == "part-123456.gpg"
    assert names.object_member("ab" * 16, "meta.gpg") == f"objects/{'ab' * 16}/meta.gpg"
    assert names.reply_member("cd" * 16) == f"replies/{'cd' * 16}/copy.gpg"
    assert names.workspace_reply_name("cd" * 16) == f"{'cd' * 16}.gpg"


@pytest.mark.parametrize("index", [-1, names.MAX_PARTS])
def test_a_part_index_out_of_range_has_no_name(index: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        names.part_name(index)


def test_part_names_and_ids_are_recognised_exactly() -> None:
    match = names.PART_NAME_RE.match(names.part_name(42))
    assert match is not None
    assert int(match.group(1)) == 42
    for other in ("part-42.gpg", "part-000042.gpg.tmp", "meta.gpg", ".tmp-part-000042.gpg",
                  "part-000042.gpg\n", "part-\u0664\u0662\u0660\u0660\u0660\u0660.gpg"):
        assert names.PART_NAME_RE.match(other) is None
    assert names.OBJECT_ID_RE.match("0123456789abcdef" * 2)
    for other in ("0123456789ABCDEF" * 2, "0" * 31, "0" * 33, "../" + "0" * 29,
                  "0" * 32 + "\n"):
        assert names.OBJECT_ID_RE.match(other) is None


def test_temporary_and_lock_files_are_never_taken_for_ciphertext(tmp_path: Path) -> None:
    assert names.TEMP_PREFIX.startswith(names.HIDDEN_PREFIX)
    assert names.LOCK_NAME.startswith(names.HIDDEN_PREFIX)
    store = Store(tmp_path / "store")
    store.create()
    upload = store.stage()
    for name in (names.METADATA_NAME, names.part_name(0), names.LOCK_NAME,
                 names.TEMP_PREFIX + names.part_name(1)):
        (upload.path / name).write_bytes(b"x")
    published = store.stage_links(upload)
    expected = [names.METADATA_NAME, names.part_name(0)]
    assert sorted(p.name for p in published.path.iterdir()) == expected
    assert sorted(object_files(upload.path)) == expected


def test_the_store_lays_out_its_folders_by_these_names(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create()
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted([names.OBJECTS_DIR, names.REPLIES_DIR, names.STAGING_DIR, names.UPLOADS_DIR])
    assert store.path("ab" * 16) == tmp_path / "objects" / ("ab" * 16)
    assert store.reply_path("cd" * 16) == tmp_path / "replies" / ("cd" * 16)


def _literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant in a module's code, f-string pieces included, with its line;
    docstrings and other bare strings are prose, not names."""
    tree = ast.parse(path.read_text())
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in prose]


def test_no_other_module_spells_out_a_layout_name() -> None:
    found = []
    for path in sorted([*ROOT.glob("crypto/**/*.py"), *ROOT.glob("desk/**/*.py")]):
        if path == ROOT / "crypto" / "names.py":
            continue
        for line, value in _literals(path):
            if value in DISTINCTIVE or "part-" in value or value.endswith(".gpg"):
                found.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert found == []


def test_the_scan_finds_a_planted_name(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text('"""Holds .lock and part-000001.gpg."""\n'
                       'LOCK = ".lock"\nPART = f"part-{1:06d}.gpg"\n')
    found = set(_literals(planted))
    assert {(2, ".lock"), (3, "part-"), (3, ".gpg")} <= found
    assert not [value for line, value in found if line == 1]  # the docstring is prose
