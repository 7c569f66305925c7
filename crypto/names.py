"""Every name the desk and the review console give a file or folder, on disk and in a bundle.

crypto/FORMAT.md describes the layouts ("Data directory", "Bundles"); this module is where the
code takes each name from, so the desk that writes a layout and the console or `desk doctor`
that reads it cannot drift apart. Imports nothing but the standard library.
"""

from __future__ import annotations

import re

# --- Ids -------------------------------------------------------------------------------------

# An object's, a reply's and an upload's id, and so the name of its folder: 128 random bits as
# 32 lower-case hex digits.
OBJECT_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")  # \Z: no trailing newline, unlike $

# A file or folder whose name starts with this is never ciphertext (a temporary file, an
# upload's lock): digests, hard-linked publication and exports pass over it.
HIDDEN_PREFIX = "."

# --- An object's files: objects/<id>/, and uploads/<id>/ while a resumable upload arrives ----

METADATA_NAME = "meta.gpg"
PART_NAME_RE = re.compile(r"^part-([0-9]{6})\.gpg\Z")
# Every part file of an object, for Path.glob (and a shell, in the demo's instructions).
PART_GLOB = "part-*.gpg"
MAX_PARTS = 1_000_000


def part_name(index: int) -> str:
    """The file name of part `index` (0-based) of an object."""
    if not 0 <= index < MAX_PARTS:
        raise ValueError(f"part index out of range: {index}")
    return f"part-{index:06d}.gpg"


# --- A reply's files: replies/<id>/ -----------------------------------------------------------

# The reply box only the source's codename opens; the source may delete it.
REPLY_BOX_NAME = "box"
# The journalists' copy (OpenPGP); custody's digest covers it, and bundles carry it.
REPLY_COPY_NAME = "copy.gpg"

# --- Folders of objects and replies: the same in the store, a bundle and the workspace --------

OBJECTS_DIR = "objects"
REPLIES_DIR = "replies"

# --- The desk's data directory (DESK_DATA) ----------------------------------------------------

DATABASE_NAME = "desk.db"
SECRET_KEY_NAME = "secret_key"  # noqa: S105 - the name of the file, not a secret
SIGNING_KEY_FILE_NAME = "signing_key"
GNUPG_DIR = "gnupg"
# gpg's own lock files in its home (`pubring.kbx.lock` and the `.#lk...` names it links to it),
# which a settle never replaces while gpg may hold them.
GPG_LOCK_SUFFIX = ".lock"
GPG_DOTLOCK_PREFIX = ".#lk"
STORE_DIR = "store"
# Where `desk tor-config` keeps tor's onion service folders unless told otherwise.
TOR_DIR = "tor"

# --- The store (DESK_DATA/store), besides objects/ and replies/ -------------------------------

STAGING_DIR = "staging"
UPLOADS_DIR = "uploads"
# A file is written under this prefix, fsynced, then renamed to its name.
TEMP_PREFIX = HIDDEN_PREFIX + "tmp-"
# The lock file in an upload's folder, held while a request writes to the upload.
LOCK_NAME = HIDDEN_PREFIX + "lock"
# Empty files and folders made by each settle (deploy/STORAGE.md, "Settling"), taken by writes
# so that what they write lands in an inode born at the last settle.
POOL_DIR = "pool"
POOL_FILE_PREFIX = "f-"
POOL_FOLDER_PREFIX = "d-"
# In the data directory: the instant the last settle finished re-creating files, rewritten by
# every settle.
SETTLED_NAME = HIDDEN_PREFIX + "settled"

# A resumable upload's sealed tail (deploy/STORAGE.md): pieces named by the upload offset of
# their first byte, 20 digits; hidden, so that publishing and readers pass them by.
TAIL_PREFIX = HIDDEN_PREFIX + "tail-"
TAIL_NAME_RE = re.compile(r"^\.tail-([0-9]{20})\Z")


def tail_name(start: int) -> str:
    """The name of the tail piece that starts at upload offset `start`."""
    return f"{TAIL_PREFIX}{start:020d}"

# --- A bundle: desk-bundle/... in one tar -----------------------------------------------------

BUNDLE_ROOT = "desk-bundle"
# What an export is called on the journalist's disk: no date, as the name shows on the stick.
BUNDLE_FILENAME = BUNDLE_ROOT + ".tar"
VERSION_NAME = "VERSION"
SIGNING_KEY_NAME = "signing-key.pub"
MANIFEST_NAME = "manifest.gpg"
MANIFEST_SIGNATURE_NAME = "manifest.sig"
CUSTODY_NAME = "custody.gpg"


def object_member(object_id: str, name: str) -> str:
    """A bundle member for one of an object's files, below the bundle's root."""
    return f"{OBJECTS_DIR}/{object_id}/{name}"


def reply_member(reply_id: str) -> str:
    """The bundle member for a reply's journalists' copy, below the bundle's root."""
    return f"{REPLIES_DIR}/{reply_id}/{REPLY_COPY_NAME}"


# --- The review console's workspace (~/.desk-review), besides objects/ -----------------------

INDEX_NAME = "index.db"
DECRYPTED_DIR = "decrypted"
# The desk's journalist public keys, to encrypt reply copies to them.
RECIPIENTS_HOME_DIR = "recipients-gnupg"
# Scratch folders and files the console makes in its staging folder.
OPEN_SCRATCH_PREFIX = "open-"
INSPECT_SCRATCH_PREFIX = "inspect-"
REPORT_SHEET_PREFIX = "report-sheet-"
SHEET_SCRATCH_PREFIX = "sheet-"
VIEW_SCRATCH_PREFIX = "view-"
PUBLISH_SCRATCH_PREFIX = "publish-"
# All of them: `wipe` clears what a killed command left.
CONSOLE_SCRATCH_PREFIXES = (OPEN_SCRATCH_PREFIX, INSPECT_SCRATCH_PREFIX, REPORT_SHEET_PREFIX,
                            SHEET_SCRATCH_PREFIX, VIEW_SCRATCH_PREFIX, PUBLISH_SCRATCH_PREFIX)
# Plaintext is written under a name holding this, then renamed, so a half-written file is never
# taken for a whole one.
PARTIAL_MARK = HIDDEN_PREFIX + "partial-"


def workspace_reply_name(reply_id: str) -> str:
    """A reply's journalists' copy in the workspace's replies/ folder."""
    return f"{reply_id}.gpg"
