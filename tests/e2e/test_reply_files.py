"""Reply files from the offline console, checked at the desk's door and after: tampered or
misdirected files are refused with a specific reason and leave nothing behind; the console
says in one line why it cannot write a reply; a stored reply's copy opens with stock gpg for
every journalist while its box holds no readable text; bundles, custody and source deletion
keep track of replies.

One desk per module holds a conversation: two sources, alice (admin) and bob, a bundle
imported into alice's console workspace, and one reply file written there by `desk-review
reply`. Tests that only read share it; tests that change a desk work on a copy of it.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from crypto.custody import Subject
from crypto.reply import read_header, seal_reply
from crypto.replyfile import ReplyCopy, ReplyFile, signed_payload
from desk.app import create_app
from desk.records.models import CustodyRecord, Reply, Source
from desk.services import Services, open_services
from tests.harness.console import (
    BUNDLE_ROOT,
    assert_nothing_imported,
    diagnostic,
    export,
    ok,
    review,
    tar_members,
    write_tar,
)
from tests.harness.desks import add_account, desk_config, find_markers, new_desk, run_desk
from tests.harness.forms import csrf_token
from tests.harness.gpg import Keypair, gpg, make_keypair
from tests.harness.web import SourceBrowser, journalist_log_in, upload_reply

REPLY_TEXT = "RFL-7c3a-marker: could you send the unedited recording? شكراً"
MARKERS = [REPLY_TEXT.encode(), REPLY_TEXT.split(":")[0].encode()]
REFUSED = "nothing was stored"
SIGNATURE_REFUSED = (
    "Reply refused: the reply file's signature does not verify: it was altered or damaged "
    "after desk-review wrote it, or signed with a key that is not a journalist key of this "
    f"desk; {REFUSED}.")
NOT_JSON = ("Reply refused: not a reply file (it is not the JSON desk-review writes): choose "
            f"the .desk file desk-review reply wrote; {REFUSED}.")
FLASH_RE = re.compile(r'<p class="flash (\w+)" role="status">(.*?)</p>', re.DOTALL)


# --- the conversation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """A desk with two sources, one reply file written for the first, and alice logged in."""

    services: Services
    workspace: Path
    source_id: str
    designation: str
    reply_public_key: bytes
    other_id: str
    other_designation: str
    reply_file: bytes
    journalist: FlaskClient

    @property
    def data_dir(self) -> Path:
        """The desk's data directory."""
        return self.services.config.data_dir


def journalist_client(services: Services) -> FlaskClient:
    """A journalist-interface client of `services`, logged in as alice."""
    client = create_app(services.config, "journalist", services=services).test_client()
    assert journalist_log_in(client, services, "alice").status_code == 302
    return client


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair,
                 second_journalist: Keypair) -> Iterator[Conversation]:
    """The module's desk, built as conftest's `accounts` is, with a reply file written by the
    real console in alice's workspace for the first of its sources by designation."""
    root = tmp_path_factory.mktemp("conversation")
    config = desk_config(root / "data")
    services = new_desk(config)
    try:
        add_account(services, "alice", journalist, admin=True, can_log_in=True)
        add_account(services, "bob", second_journalist, can_log_in=True)
        sources = create_app(config, "source", services=services)
        for text in ("the recording from the depot", "I saw it too"):
            browser = SourceBrowser(sources.test_client())
            browser.get_codename()
            assert browser.send(text).status_code == 200
        with services.sessions() as session:
            first, other = session.scalars(select(Source).order_by(Source.designation))
        assert first.reply_public_key is not None

        workspace = root / "ws"
        ok(review(workspace, journalist.home, "import", str(export(services, root / "b.tar"))))
        message = root / "reply.txt"
        message.write_text(REPLY_TEXT + "\n", encoding="utf-8")
        out = root / "reply.desk"
        ok(review(workspace, journalist.home, "reply", first.designation,
                  "--message-file", str(message), "--out", str(out)))
        yield Conversation(services, workspace, first.id, first.designation,
                           first.reply_public_key, other.id, other.designation,
                           out.read_bytes(), journalist_client(services))
    finally:
        services.engine.dispose()


@dataclass(frozen=True)
class StoredReply:
    """The conversation's reply file, uploaded and stored."""

    conversation: Conversation
    reply_id: str
    digest: str

    @property
    def folder(self) -> Path:
        """The reply's folder in the desk's store."""
        return self.conversation.services.store.reply_path(self.reply_id)


@pytest.fixture(scope="module")
def stored(conversation: Conversation) -> StoredReply:
    """Upload the conversation's reply file on its source's page."""
    page = upload_reply(conversation.journalist, find_source(conversation),
                        conversation.reply_file)
    assert f"Reply 1 to {conversation.designation} stored" in page
    with conversation.services.sessions() as session:
        reply = session.scalars(select(Reply)).one()
        return StoredReply(conversation, reply.id, reply.ciphertext_sha256)


def find_source(conversation: Conversation, source_id: str | None = None) -> Source:
    """The row of the conversation's source the reply is for, or of `source_id`."""
    with conversation.services.sessions() as session:
        found = session.get(Source, source_id or conversation.source_id)
        assert found is not None
        return found


@pytest.fixture
def copied(stored: StoredReply, tmp_path: Path) -> Iterator[Conversation]:
    """The conversation on a copy of its desk, which holds the stored reply, for a test that
    changes the desk; alice is logged in to the copy."""
    original = stored.conversation.services
    original.engine.dispose()  # close the pool, so the database's WAL is folded in first
    data = tmp_path / "data"
    # Sockets and lock files belong to the original's running gpg, not to its data.
    shutil.copytree(original.config.data_dir, data,
                    ignore=shutil.ignore_patterns("S.*", "*.lock", ".#lk*"))
    services = open_services(desk_config(data))
    try:
        yield dataclasses.replace(stored.conversation, services=services,
                                  journalist=journalist_client(services))
    finally:
        services.engine.dispose()


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory, journalist: Keypair,
             second_journalist: Keypair) -> Keypair:
    """Someone who is no journalist of the desk but holds both journalists' public keys, as
    anyone who had a bundle's manifest could."""
    mallory = make_keypair(tmp_path_factory.mktemp("keys") / "mallory", "Mallory")
    for keypair in (journalist, second_journalist):
        gpg(mallory.home, "--import", str(keypair.public_key))
    return mallory


# --- what the desk holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeskState:
    """What a refused upload must leave as it was."""

    reply_rows: tuple[str, ...]
    reply_folders: tuple[str, ...]
    staging: tuple[str, ...]
    custody_entries: int


def desk_state(services: Services) -> DeskState:
    """The desk's replies, reply folders, staging folders and custody length."""
    store = services.store
    with services.sessions() as session:
        rows = tuple(sorted(session.scalars(select(Reply.id))))
        entries = session.scalar(select(func.count()).select_from(CustodyRecord)) or 0
    return DeskState(rows, tuple(sorted(p.name for p in store.replies.iterdir())),
                     tuple(sorted(p.name for p in store.staging_root.iterdir())), entries)


def custody_entries(services: Services, event: str) -> list[CustodyRecord]:
    """The custody entries of one kind, in order."""
    with services.sessions() as session:
        return list(session.scalars(select(CustodyRecord).where(CustodyRecord.event == event)
                                    .order_by(CustodyRecord.seq)))


def flashes(page: str) -> list[tuple[str, str]]:
    """(category, text) of every flashed message on a page."""
    return [(category, html.unescape(text)) for category, text in FLASH_RE.findall(page)]


def verify_custody(data_dir: Path) -> tuple[int, str]:
    """(exit status, output) of `desk custody verify`."""
    result = run_desk("custody", "verify", data_dir=data_dir)
    return result.returncode, (result.stdout + result.stderr).strip()


# --- building reply files by hand ------------------------------------------------------------


def flip(data: bytes) -> bytes:
    """`data` with one bit of its middle byte inverted."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


def sign(signer: Keypair, box: bytes, copy: bytes) -> bytes:
    """A detached signature over a reply file's payload, made with stock gpg."""
    return gpg(signer.home, "--local-user", signer.fingerprint, "--detach-sign",
               "--output", "-", stdin=signed_payload(box, copy)).stdout


def encrypt(home: Path, data: bytes, recipients: list[Keypair]) -> bytes:
    """`data` encrypted with stock gpg in `home` to `recipients`' keys, uncompressed as
    FORMAT.md has every writer do (the console stops a message that expands past its size)."""
    named = [arg for keypair in recipients for arg in ("--recipient", keypair.fingerprint)]
    return gpg(home, "--trust-model", "always", "--compress-algo", "none", "--encrypt", *named,
               "--output", "-", stdin=data).stdout


def hand_built(conversation: Conversation, signer: Keypair, encrypter: Keypair,
               recipients: list[Keypair]) -> bytes:
    """A reply file made as desk-review makes one, from the crypto functions and stock gpg:
    a box sealed to the conversation's source, a copy encrypted in `encrypter`'s home to
    `recipients`, and `signer`'s detached signature."""
    box = seal_reply(conversation.reply_public_key, REPLY_TEXT)
    header = read_header(box)
    copy = ReplyCopy(header.reply_id, conversation.designation, header.recipient.hex(),
                     datetime.now(UTC), "alice", "console", REPLY_TEXT)
    encrypted = encrypt(encrypter.home, copy.to_json(), recipients)
    return ReplyFile(box, encrypted, sign(signer, box, encrypted)).to_bytes()


def with_fields(data: bytes, **fields: Any) -> bytes:
    """A reply file's JSON with some fields set to other values (None removes one)."""
    raw = json.loads(data)
    for name, value in fields.items():
        if value is None:
            raw.pop(name)
        else:
            raw[name] = value
    return json.dumps(raw).encode()


# Each takes the valid reply file, parsed and as bytes, and alice (who wrote it), and returns
# the bytes to upload. Variants signed again by alice reach the checks behind the signature.
Tamper = Callable[[ReplyFile, bytes, Keypair], bytes]


def _resigned(reply: ReplyFile, alice: Keypair, box: bytes) -> bytes:
    return ReplyFile(box, reply.copy, sign(alice, box, reply.copy)).to_bytes()


TAMPERED: list[Any] = [
    pytest.param(lambda r, _d, _a: dataclasses.replace(r, box=flip(r.box)).to_bytes(),
                 SIGNATURE_REFUSED, id="byte flipped in the box"),
    pytest.param(lambda r, _d, _a: dataclasses.replace(r, copy=flip(r.copy)).to_bytes(),
                 SIGNATURE_REFUSED, id="byte flipped in the copy"),
    pytest.param(lambda r, _d, _a: dataclasses.replace(r, signature=flip(r.signature))
                 .to_bytes(), SIGNATURE_REFUSED, id="byte flipped in the signature"),
    pytest.param(lambda r, _d, _a: dataclasses.replace(r, box=r.box[:100]).to_bytes(),
                 SIGNATURE_REFUSED, id="box truncated"),
    pytest.param(lambda r, _d, a: _resigned(r, a, r.box[:100]),
                 f"Reply refused: the reply box is damaged (not a desk reply (wrong size)); "
                 f"{REFUSED}.", id="box truncated and signed again"),
    pytest.param(lambda r, _d, a: _resigned(r, a, b"NOTAREPLY" + r.box[9:]),
                 f"Reply refused: the reply box is damaged (not a desk reply (bad magic)); "
                 f"{REFUSED}.", id="box with another magic and signed again"),
    pytest.param(lambda _r, d, _a: d[:len(d) // 2], NOT_JSON, id="file cut mid-JSON"),
    pytest.param(lambda r, _d, _a: r.copy, NOT_JSON, id="not JSON but OpenPGP"),
    pytest.param(lambda _r, _d, _a: b"box,copy,signature\n", NOT_JSON, id="not JSON but text"),
    pytest.param(lambda _r, d, _a: with_fields(d, format="desk-reply-copy"),
                 "Reply refused: not a reply file: choose the .desk file desk-review reply "
                 f"wrote; {REFUSED}.", id="another format"),
    pytest.param(lambda _r, d, _a: with_fields(d, version=2),
                 "Reply refused: unsupported reply file version 2: choose the .desk file "
                 f"desk-review reply wrote; {REFUSED}.", id="version 2"),
    pytest.param(lambda _r, d, _a: with_fields(d, box="not*base64"),
                 "Reply refused: the reply file's box is damaged (bad base64): choose the "
                 f".desk file desk-review reply wrote; {REFUSED}.", id="box not base64"),
    pytest.param(lambda _r, d, _a: with_fields(d, signature=None),
                 "Reply refused: the reply file has no signature: choose the .desk file "
                 f"desk-review reply wrote; {REFUSED}.", id="no signature"),
    pytest.param(lambda _r, d, _a: d + b" " * (512 * 1024),
                 "Reply refused: too large to be a reply file: choose the .desk file "
                 f"desk-review reply wrote; {REFUSED}.", id="larger than 512 KiB"),
]


# --- 1. the desk refuses what it must not store ----------------------------------------------


def assert_refused(conversation: Conversation, data: bytes, expected: str,
                   source_id: str | None = None) -> None:
    """Upload `data` and check the page says exactly `expected` and nothing was stored."""
    before = desk_state(conversation.services)
    page = upload_reply(conversation.journalist, find_source(conversation, source_id), data)
    assert flashes(page) == [("error", expected)]
    assert desk_state(conversation.services) == before


@pytest.mark.parametrize(("tamper", "expected"), TAMPERED)
def test_tampered_reply_file_is_refused_with_its_reason_and_nothing_stored(
        conversation: Conversation, journalist: Keypair, tamper: Tamper, expected: str
        ) -> None:
    valid = ReplyFile.from_bytes(conversation.reply_file)
    assert_refused(conversation, tamper(valid, conversation.reply_file, journalist), expected)


def test_empty_upload_asks_for_the_reply_file(conversation: Conversation) -> None:
    assert_refused(conversation, b"",
                   "Choose the reply file (.desk) that desk-review reply wrote.")


def test_reply_file_signed_by_a_stranger_is_refused(
        conversation: Conversation, journalist: Keypair, second_journalist: Keypair,
        stranger: Keypair) -> None:
    data = hand_built(conversation, stranger, stranger, [journalist, second_journalist])
    assert_refused(conversation, data, SIGNATURE_REFUSED)


def test_copy_not_encrypted_to_bob_is_refused_naming_bob(
        conversation: Conversation, journalist: Keypair) -> None:
    data = hand_built(conversation, journalist, journalist, [journalist])
    assert_refused(conversation, data, (
        "Reply refused: the journalists' copy is wrong: it is not encrypted to every journalist "
        "key of this desk (missing: bob); export a fresh bundle, import it and write the reply "
        f"again; {REFUSED}."))


def test_copy_also_encrypted_to_a_stranger_is_refused(
        conversation: Conversation, journalist: Keypair, second_journalist: Keypair,
        stranger: Keypair) -> None:
    # Encrypted in the stranger's home, which holds all three public keys; signed by alice.
    data = hand_built(conversation, journalist, stranger,
                      [journalist, second_journalist, stranger])
    before = desk_state(conversation.services)
    page = upload_reply(conversation.journalist, find_source(conversation, None), data)
    [(category, text)] = flashes(page)
    assert category == "error"
    assert "it is also encrypted to keys that are not journalist keys of this desk" in text
    assert desk_state(conversation.services) == before


def test_copy_that_is_not_openpgp_is_refused_naming_every_journalist(
        conversation: Conversation, journalist: Keypair) -> None:
    valid = ReplyFile.from_bytes(conversation.reply_file)
    copy = b"the copy, in the clear"
    data = ReplyFile(valid.box, copy, sign(journalist, valid.box, copy)).to_bytes()
    assert_refused(conversation, data, (
        "Reply refused: the journalists' copy is wrong: it is not encrypted to every journalist "
        "key of this desk (missing: alice, bob); export a fresh bundle, import it and write the "
        f"reply again; {REFUSED}."))


def test_reply_file_for_another_source_is_refused(conversation: Conversation) -> None:
    assert_refused(conversation, conversation.reply_file, (
        f"Reply refused: this reply was written for another source, not "
        f"{conversation.other_designation}: check the source named in desk-review reply; "
        f"{REFUSED}."), source_id=conversation.other_id)


def test_hand_built_reply_file_signed_by_bob_is_stored_as_his(
        copied: Conversation, journalist: Keypair, second_journalist: Keypair,
        stranger: Keypair) -> None:
    # Built as the refused files above are, with nothing wrong: the desk stores it, and records
    # the signer, not the uploader, as its author.
    data = hand_built(copied, second_journalist, stranger, [journalist, second_journalist])
    page = upload_reply(copied.journalist, find_source(copied), data)
    assert flashes(page) == [("info", (
        f"Reply 2 to {copied.designation} stored. The desk cannot read it; the source sees it "
        "the next time they log in."))]
    reply_id = read_header(ReplyFile.from_bytes(data).box).reply_id
    with copied.services.sessions() as session:
        reply = session.get(Reply, reply_id)
        assert reply is not None
        assert (reply.author, reply.via, reply.number) == ("bob", "console", 2)
        about = reply.custody
    last = custody_entries(copied.services, "reply")[-1]
    assert (last.subject, last.actor) == (about.subject, "alice")


def test_a_reply_folder_left_by_a_crash_does_not_block_the_upload(
        copied: Conversation, journalist: Keypair, second_journalist: Keypair,
        stranger: Keypair) -> None:
    """A crash between publishing a reply's folder and committing its row leaves the folder
    alone; uploading the same file again must store it, not fail on the leftover."""
    data = hand_built(copied, journalist, stranger, [journalist, second_journalist])
    reply_id = read_header(ReplyFile.from_bytes(data).box).reply_id
    leftover = copied.services.store.reply_path(reply_id)
    leftover.mkdir()
    (leftover / "copy.gpg").write_bytes(b"half of something")

    page = upload_reply(copied.journalist, find_source(copied), data)

    assert flashes(page)[0][0] == "info"
    assert (leftover / "copy.gpg").read_bytes() == ReplyFile.from_bytes(data).copy
    assert verify_custody(copied.data_dir)[0] == 0


def test_reply_file_whose_version_is_true_is_refused(
        copied: Conversation, journalist: Keypair, second_journalist: Keypair,
        stranger: Keypair) -> None:
    data = hand_built(copied, journalist, stranger, [journalist, second_journalist])
    assert_refused(copied, with_fields(data, version=True), (
        "Reply refused: unsupported reply file version True: choose the .desk file "
        f"desk-review reply wrote; {REFUSED}."))


def test_a_reply_file_sent_again_after_retention_purged_it_is_refused(
        copied: Conversation, journalist: Keypair, second_journalist: Keypair,
        tmp_path: Path) -> None:
    # Carol signed a reply 40 days ago, and it was stored that day. Retention (30 days) purged
    # its row, and with it the only record of its id; the same file, uploaded again, must not
    # reach the source as a new reply.
    def ago(days: int) -> datetime:
        return datetime.now(UTC) - timedelta(days=days)

    carol = make_keypair(tmp_path / "carol", "Carol", faked_time=f"{ago(60):%Y%m%dT%H%M%S}")
    add_account(copied.services, "carol", carol)
    for colleague in (journalist, second_journalist):
        gpg(carol.home, "--import", str(colleague.public_key))
    box = seal_reply(copied.reply_public_key, REPLY_TEXT)
    header = read_header(box)
    copy = ReplyCopy(header.reply_id, copied.designation, header.recipient.hex(), ago(40),
                     "carol", "console", REPLY_TEXT)
    encrypted = encrypt(carol.home, copy.to_json(), [journalist, second_journalist, carol])
    signature = gpg(carol.home, "--local-user", carol.fingerprint, "--detach-sign", "--output",
                    "-", stdin=signed_payload(box, encrypted),
                    faked_time=f"{ago(40):%Y%m%dT%H%M%S}").stdout
    old_file = ReplyFile(box, encrypted, signature).to_bytes()
    assert "stored" in upload_reply(copied.journalist, find_source(copied), old_file)
    with copied.services.transaction() as db:
        db.execute(update(Reply).where(Reply.id == header.reply_id)
                   .values(created_on=ago(40).date()))
    data_dir = copied.services.config.data_dir
    for command in (("settings", "--retention-days", "30"), ("purge",)):
        assert run_desk(*command, data_dir=data_dir).returncode == 0
    with copied.services.sessions() as session:
        assert session.get(Reply, header.reply_id) is None

    assert_refused(copied, old_file, (
        f"Reply refused: this reply file was signed on {ago(40).date().isoformat()}, before "
        "the desk's retention period of 30 days: the desk cannot tell it from a reply sent "
        f"and deleted since; write the reply again; {REFUSED}."))
    # A reply file signed today is stored as ever.
    fresh = hand_built(copied, journalist, carol, [journalist, second_journalist, carol])
    assert "stored" in upload_reply(copied.journalist, find_source(copied), fresh)


# --- 2. the console says why it cannot write a reply -----------------------------------------


EARLIER_REPLY = b"an earlier reply file, not to be overwritten"
# A fingerprint of no key here, starting with a letter as most do.
NOT_A_JOURNALIST = "DEADBEEF" * 5


@pytest.mark.parametrize(("case", "message", "hint"), [
    ("unknown source", "no reply key for source 'nobody we know' in this workspace",
     "sources you can reply to: {sources}"),
    ("empty message", "the message file {message_file} is empty",
     "write the reply into the file first"),
    ("message not UTF-8", "the message file {message_file} is not UTF-8 text",
     "save the message as plain UTF-8 text"),
    ("message too long", "the message file {message_file} is too long for a reply (at most "
     "64 KiB)", "shorten it, or send it as two replies"),
    ("message file missing", "cannot use {message_file}: No such file or directory",
     "check the path and its permissions"),
    ("out already exists", "the output file {out} already exists", "choose another --out name"),
    ("no journalist secret key", "none of the secret keys in this GnuPG home is a journalist "
     "key of this desk", "use --gnupghome for the home with your journalist secret key"),
    ("signer not a journalist", "--signer {signer} is not a journalist key of this desk",
     "use the fingerprint of your own journalist key"),
])
def test_console_reply_failure_is_one_line_and_a_hint(
        conversation: Conversation, journalist: Keypair, stranger: Keypair, case: str,
        message: str, hint: str, tmp_path: Path) -> None:
    source, home, extra = conversation.designation, journalist.home, []
    message_file, out = tmp_path / "reply.txt", tmp_path / "reply.desk"
    message_file.write_text("a question for the source\n", encoding="utf-8")
    if case == "unknown source":
        source = "nobody we know"
    elif case == "empty message":
        message_file.write_text(" \n\n", encoding="utf-8")
    elif case == "message not UTF-8":
        message_file.write_bytes(b"caf\xe9 at the station")
    elif case == "message too long":
        message_file.write_text("x" * (64 * 1024), encoding="utf-8")
    elif case == "message file missing":
        message_file.unlink()
    elif case == "out already exists":
        out.write_bytes(EARLIER_REPLY)
    elif case == "no journalist secret key":
        home = stranger.home
    elif case == "signer not a journalist":
        extra = ["--signer", NOT_A_JOURNALIST]

    result = review(conversation.workspace, home, "reply", source, "--message-file",
                    str(message_file), "--out", str(out), *extra)

    sources = ", ".join(sorted((conversation.designation, conversation.other_designation)))
    names = {"message_file": message_file, "out": out, "signer": NOT_A_JOURNALIST,
             "sources": sources}
    assert diagnostic(result) == (message.format(**names), hint.format(**names))
    if case == "out already exists":
        assert out.read_bytes() == EARLIER_REPLY
    else:
        assert not out.exists()


# --- 3. the stored reply: readable to every journalist, never to the desk --------------------


@pytest.mark.parametrize("reader", ["journalist", "second_journalist"])
def test_stored_copy_decrypts_with_stock_gpg_for_each_journalist(
        stored: StoredReply, reader: str, request: pytest.FixtureRequest) -> None:
    keypair: Keypair = request.getfixturevalue(reader)
    copy = json.loads(keypair.decrypt(stored.folder / "copy.gpg"))
    conversation = stored.conversation
    assert (copy["format"], copy["version"]) == ("desk-reply-copy", 1)
    assert copy["text"] == REPLY_TEXT
    assert (copy["reply_id"], copy["source"]) == (stored.reply_id, conversation.designation)
    assert (copy["author"], copy["via"]) == ("alice", "console")


def test_stored_box_and_the_desk_hold_no_reply_text(stored: StoredReply) -> None:
    box = (stored.folder / "box").read_bytes()
    assert read_header(box).reply_id == stored.reply_id
    assert [marker for marker in MARKERS if marker in box] == []
    assert find_markers(MARKERS, stored.conversation.data_dir) == []


def test_custody_verifies_the_stored_reply(stored: StoredReply) -> None:
    status, output = verify_custody(stored.conversation.data_dir)
    assert status == 0, output
    assert "1 replies match what was sent" in output
    sent, = custody_entries(stored.conversation.services, "reply")
    with stored.conversation.services.sessions() as session:
        reply = session.get(Reply, stored.reply_id)
        assert reply is not None
    assert Subject(stored.reply_id, stored.digest, reply.custody_key).matches(sent.entry())


# --- 4. bundles carry the reply's copy, and refuse it changed --------------------------------


@pytest.fixture(scope="module")
def reply_bundle(stored: StoredReply, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`desk export --all` of the desk holding the stored reply."""
    return export(stored.conversation.services,
                  tmp_path_factory.mktemp("bundle") / "replied.tar")


def copy_member(members: list[tuple[str, bytes]], reply_id: str) -> str:
    """The name of a reply's copy in a bundle's members."""
    name = f"desk-bundle/replies/{reply_id}/copy.gpg"
    assert name in [n for n, _ in members]
    return name


def test_bundle_with_the_reply_imports_its_copy(
        stored: StoredReply, reply_bundle: Path, journalist: Keypair, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    ok(review(workspace, journalist.home, "import", str(reply_bundle)))
    history = ok(review(workspace, journalist.home, "replies",
                        stored.conversation.designation))
    assert REPLY_TEXT in history
    assert (workspace / "replies" / f"{stored.reply_id}.gpg").is_file()


@pytest.mark.parametrize(("change", "reason", "hint"), [
    ("flip a byte in the reply's copy",
     "bundle refused: reply {reply_id}: copy differs from what the desk sent",
     "nothing was imported; ask the desk for a fresh export and keep this bundle as evidence"),
    ("drop the reply's copy",
     "bundle refused: the manifest lists reply {reply_id}, which the bundle lacks",
     "nothing was imported"),
])
def test_bundle_with_a_changed_reply_copy_is_refused_and_imports_nothing(
        stored: StoredReply, reply_bundle: Path, journalist: Keypair, change: str,
        reason: str, hint: str, tmp_path: Path) -> None:
    members = tar_members(reply_bundle)
    copy = copy_member(members, stored.reply_id)
    if change == "flip a byte in the reply's copy":
        members = [(n, flip(d) if n == copy else d) for n, d in members]
    else:
        members = [(n, d) for n, d in members if n != copy]
    bundle = write_tar(members, tmp_path / "tampered.tar")
    workspace = tmp_path / "ws"

    refused = review(workspace, journalist.home, "import", str(bundle))

    assert diagnostic(refused) == (reason.format(reply_id=stored.reply_id), hint)
    assert_nothing_imported(workspace, journalist.home)
    assert list((workspace / "replies").glob("*")) == []


# --- 5. custody notices a stored reply changed or gone ---------------------------------------


@pytest.mark.parametrize(("change", "reason"), [
    ("flip a byte in the copy", "stored copy differs from what was sent"),
    ("remove the copy", "is missing from the store"),
    ("delete the row", "the reply it brought in is gone without a delete entry"),
])
def test_custody_verify_names_a_reply_changed_behind_its_back(
        copied: Conversation, stored: StoredReply, change: str, reason: str) -> None:
    copy = copied.services.store.reply_path(stored.reply_id) / "copy.gpg"
    if change == "flip a byte in the copy":
        copy.write_bytes(flip(copy.read_bytes()))
    elif change == "remove the copy":
        copy.unlink()
    else:
        copied.services.engine.dispose()
        with sqlite3.connect(copied.data_dir / "desk.db") as db:
            db.execute("DELETE FROM replies WHERE id = ?", (stored.reply_id,))
        db.close()

    status, output = verify_custody(copied.data_dir)

    assert status != 0
    if change == "delete the row":
        # The reply entry names it only through its custody key, which went with the row.
        sent, = custody_entries(copied.services, "reply")
        assert output == f"desk: custody entry {sent.seq}: {reason}"
    else:
        assert output == f"desk: reply {stored.reply_id}: {reason}"


# --- 6. deleting a source deletes its replies, on the record ---------------------------------


def test_deleting_a_source_deletes_its_replies_with_custody_entries(
        copied: Conversation) -> None:
    client, page = copied.journalist, copied.journalist.get(f"/sources/{copied.source_id}")
    typed = client.post(f"/sources/{copied.source_id}/replies", data={
        "csrf_token": csrf_token(page.text), "text": "and a second question"})
    assert typed.status_code == 302
    with copied.services.sessions() as session:
        replies = {r.id: r.custody for r in session.scalars(select(Reply))}
    assert len(replies) == 2
    store = copied.services.store
    assert sorted(p.name for p in store.replies.iterdir()) == sorted(replies)

    deleted = client.post(f"/sources/{copied.source_id}/delete", data={
        "csrf_token": csrf_token(page.text), "confirm": "yes"}, follow_redirects=True)

    assert deleted.status_code == 200
    assert ("info", f"Deleted {copied.designation} and everything it sent.") in \
        flashes(deleted.text)
    assert list(store.replies.iterdir()) == []
    with copied.services.sessions() as session:
        assert session.scalars(select(Reply.id)).all() == []
        assert session.get(Source, copied.source_id) is None
    named = {about.subject: reply_id for reply_id, about in replies.items()}
    removed = {named[str(e.subject)]: (e.digest, e.actor)
               for e in custody_entries(copied.services, "delete") if e.subject in named}
    assert removed == {reply_id: (about.digest, "alice") for reply_id, about in replies.items()}
    status, output = verify_custody(copied.data_dir)
    assert status == 0, output
    assert "0 replies match what was sent" in output


def test_bundle_with_a_manifest_written_by_someone_else_is_refused(
        stored: StoredReply, reply_bundle: Path, journalist: Keypair, stranger: Keypair,
        tmp_path: Path) -> None:
    """Anyone with the journalists' public keys can encrypt a manifest of their own. One that
    adds their key to the recipients (so the next console reply's copy is encrypted to them
    too) must be refused: the desk's signing key did not sign it."""
    members = tar_members(reply_bundle)
    name = f"{BUNDLE_ROOT}/manifest.gpg"
    manifest = json.loads(gpg(journalist.home, "--decrypt", stdin=dict(members)[name]).stdout)
    manifest["recipients"].append({
        "username": "mallory", "fingerprint": stranger.fingerprint,
        "public_key": stranger.public_key.read_text()})
    forged = encrypt(stranger.home, json.dumps(manifest).encode(), [journalist])
    bundle = write_tar([(n, forged if n == name else d) for n, d in members],
                       tmp_path / "forged.tar")
    workspace = tmp_path / "ws"

    refused = review(workspace, journalist.home, "import", str(bundle))

    assert diagnostic(refused) == (
        "bundle refused: the manifest is not signed by the desk's signing key",
        "nothing was imported")
    assert_nothing_imported(workspace, journalist.home)
