"""The console trusts only the keys the newsroom pinned, never what a later bundle says.

A bundle's manifest is signed with the desk's own key, which a compromised server holds. Each
test makes a desk (alice and bob, one source), imports its first bundle into a console
workspace, then lets the desk's own code change what it offers, exactly as a compromised server
could: a journalist key added, a journalist removed, another reply key for the source, a second
desk that knows a source by the same designation. The console must import such a bundle, keep
the change pending and say so, write replies only to pinned keys, and take the change only
after `desk-review keys accept FINGERPRINT`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from crypto.reply import SEED_BYTES, key_from_seed, key_id, read_header
from crypto.replyfile import ReplyFile
from desk.app import create_app
from desk.records.models import Source
from desk.services import Services
from tests.harness.console import diagnostic, export, ok, review
from tests.harness.desks import add_account, desk_config, new_desk, run_desk
from tests.harness.gpg import Keypair, gpg, make_keypair
from tests.harness.web import SourceBrowser

REPLY_TEXT = "Meet our reporter at the north exit at nine."


@pytest.fixture(scope="module")
def mallory(tmp_path_factory: pytest.TempPathFactory) -> Keypair:
    """A key the server's operator holds: not a journalist of the newsroom."""
    return make_keypair(tmp_path_factory.mktemp("keys") / "mallory", "Mallory")


@dataclass
class Newsroom:
    """A desk with alice and bob and one source, and alice's workspace after its first
    import."""

    services: Services
    workspace: Path
    home: Path
    designation: str
    root: Path
    first_import: str
    bundles: int = 0

    def export(self) -> Path:
        """A new bundle of everything the desk holds."""
        self.bundles += 1
        return export(self.services, self.root / f"bundle-{self.bundles}.tar")

    def review(self, *args: str) -> Any:
        """desk-review in alice's workspace, with her GnuPG home."""
        return review(self.workspace, self.home, *args)

    def keys(self) -> list[dict[str, Any]]:
        """`desk-review keys --json`."""
        listed: list[dict[str, Any]] = json.loads(ok(self.review("keys", "--json")))
        return listed

    def reply(self, name: str, *extra: str) -> Any:
        """`desk-review reply` to the source, into `name` under the newsroom's folder."""
        message = self.root / "message.txt"
        message.write_text(REPLY_TEXT, encoding="utf-8")
        return self.review("reply", self.designation, "--message-file", str(message),
                           "--out", str(self.root / name), *extra)


def make_newsroom(root: Path, journalist: Keypair, second_journalist: Keypair) -> Newsroom:
    """A desk, its source, and alice's workspace after importing the first bundle."""
    config = desk_config(root / "data")
    services = new_desk(config)
    add_account(services, "alice", journalist, admin=True)
    add_account(services, "bob", second_journalist)
    browser = SourceBrowser(create_app(config, "source", services=services).test_client())
    browser.get_codename()
    assert browser.send("the recording from the depot").status_code == 200
    with services.sessions() as session:
        (source,) = session.scalars(select(Source))
    newsroom = Newsroom(services, root / "ws", journalist.home, source.designation, root, "")
    newsroom.first_import = ok(newsroom.review("import", str(newsroom.export())))
    return newsroom


@pytest.fixture
def newsroom(tmp_path: Path, journalist: Keypair, second_journalist: Keypair
             ) -> Any:
    """make_newsroom in the test's own folder."""
    made = make_newsroom(tmp_path, journalist, second_journalist)
    yield made
    made.services.engine.dispose()


def grouped(fingerprint: str) -> str:
    """A fingerprint in groups of four, as the console prints it."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))


def copy_of(path: Path) -> bytes:
    """The journalists' copy (OpenPGP) inside a reply file."""
    return ReplyFile.from_bytes(path.read_bytes()).copy


def can_decrypt(keypair: Keypair, data: bytes) -> bool:
    """Whether stock gpg with `keypair`'s home opens `data`."""
    result = gpg(keypair.home, "--decrypt", stdin=data, check=False)
    return result.returncode == 0 and REPLY_TEXT.encode() in result.stdout


def journalists(listing: dict[str, Any]) -> dict[str, str]:
    """username -> state, from one desk of `keys --json`."""
    return {j["username"]: j["state"] for j in listing["journalists"]}


# --- the first import pins ----------------------------------------------------------------------


def test_the_first_import_pins_the_journalist_keys_and_prints_their_fingerprints(
        newsroom: Newsroom, journalist: Keypair, second_journalist: Keypair) -> None:
    printed = newsroom.first_import
    assert "pinned 2 journalist key(s) of desk" in printed
    assert f"alice  {grouped(journalist.fingerprint)}" in printed
    assert f"bob  {grouped(second_journalist.fingerprint)}" in printed
    (desk,) = newsroom.keys()
    assert journalists(desk) == {"alice": "pinned", "bob": "pinned"}
    assert [s["designation"] for s in desk["sources"]] == [newsroom.designation]
    assert desk["pending"] == []

    # A second import of the same keys pins nothing again and warns of nothing.
    again = newsroom.review("import", str(newsroom.export()))
    assert "pinned" not in ok(again)
    assert "key change" not in again.stderr


# --- finding 1: a key the desk gained ---------------------------------------------------------


def test_a_key_the_desk_gained_stays_pending_and_replies_leave_it_out(
        newsroom: Newsroom, journalist: Keypair, mallory: Keypair) -> None:
    # The reproduction: the desk's own code adds one more key to its recipients and exports.
    add_account(newsroom.services, "mallory", mallory)
    imported = newsroom.review("import", str(newsroom.export()))

    ok(imported)
    assert (f"desk-review: key change not accepted at desk: the desk lists a new journalist "
            f"key for mallory ({grouped(mallory.fingerprint)})") in imported.stderr
    (desk,) = newsroom.keys()
    assert journalists(desk) == {"alice": "pinned", "bob": "pinned"}
    assert desk["pending"] == [{"kind": "journalist", "name": "mallory", "change": "added",
                                "fingerprint": mallory.fingerprint}]

    written = newsroom.reply("first.desk")
    ok(written)
    copy_section = written.stderr.split("encrypted to these pinned keys:")[1]
    assert f"alice  {grouped(journalist.fingerprint)}" in copy_section
    assert f"left out, not accepted: mallory {grouped(mallory.fingerprint)}" in copy_section
    first = copy_of(newsroom.root / "first.desk")
    assert can_decrypt(journalist, first)
    assert not can_decrypt(mallory, first)

    accepted = ok(newsroom.review("keys", "accept", grouped(mallory.fingerprint)))
    assert f"pinned journalist key of mallory at desk: {grouped(mallory.fingerprint)}" \
        in accepted
    ok(newsroom.reply("second.desk"))
    assert can_decrypt(mallory, copy_of(newsroom.root / "second.desk"))
    (desk,) = newsroom.keys()
    assert (journalists(desk), desk["pending"]) == (
        {"alice": "pinned", "bob": "pinned", "mallory": "pinned"}, [])


def test_an_older_bundle_imported_later_changes_no_pin(newsroom: Newsroom,
                                                       mallory: Keypair) -> None:
    older = newsroom.export()
    add_account(newsroom.services, "mallory", mallory)
    ok(newsroom.review("import", str(newsroom.export())))
    ok(newsroom.review("keys", "accept", mallory.fingerprint))

    again = newsroom.review("import", str(older))  # it lacks mallory

    assert "key change" not in again.stderr
    (desk,) = newsroom.keys()
    assert journalists(desk)["mallory"] == "pinned"
    assert desk["pending"] == []


# --- a journalist the desk removed -------------------------------------------------------------


def test_a_journalist_the_desk_no_longer_lists_is_left_out_and_reported(
        newsroom: Newsroom, journalist: Keypair, second_journalist: Keypair) -> None:
    removed = run_desk("journalist", "remove", "bob", data_dir=newsroom.services.config.data_dir)
    assert removed.returncode == 0, removed.stderr
    newsroom.services.recipients.invalidate()

    imported = newsroom.review("import", str(newsroom.export()))

    assert (f"the desk no longer lists bob's key ({grouped(second_journalist.fingerprint)})"
            in imported.stderr)
    (desk,) = newsroom.keys()
    assert journalists(desk)["bob"] == "pinned, no longer listed by the desk"
    ok(newsroom.reply("reply.desk"))
    copy = copy_of(newsroom.root / "reply.desk")
    assert can_decrypt(journalist, copy)
    assert not can_decrypt(second_journalist, copy)

    ok(newsroom.review("keys", "accept", second_journalist.fingerprint))
    (desk,) = newsroom.keys()
    assert (journalists(desk), desk["pending"]) == ({"alice": "pinned"}, [])


# --- a source's reply key that changed ---------------------------------------------------------


def test_a_changed_reply_key_is_refused_until_accepted(newsroom: Newsroom) -> None:
    original = newsroom.keys()[0]["sources"][0]["fingerprint"]
    _, public = key_from_seed(os.urandom(SEED_BYTES))
    with newsroom.services.transaction() as db:
        db.execute(update(Source).values(reply_public_key=public))
    offered = key_id(public).hex()
    bundle = newsroom.export()

    imported = newsroom.review("import", str(bundle))

    assert (f"the desk offers another reply key for {newsroom.designation} "
            f"({grouped(offered)})") in imported.stderr
    message, hint = diagnostic(newsroom.reply("refused.desk"))
    assert message == (f"a bundle ({bundle.name}) offers another reply key for "
                       f"{newsroom.designation}; it is not pinned, and nothing was written")
    assert hint is not None
    assert hint.endswith(f"desk-review keys accept {offered}")
    assert not (newsroom.root / "refused.desk").exists()
    assert newsroom.keys()[0]["sources"][0]["fingerprint"] == original

    ok(newsroom.review("keys", "accept", offered))
    ok(newsroom.reply("sealed.desk"))
    box = ReplyFile.from_bytes((newsroom.root / "sealed.desk").read_bytes()).box
    assert read_header(box).recipient == key_id(public)


# --- a workspace made before keys were pinned --------------------------------------------------


def test_keys_an_older_console_kept_must_be_confirmed_before_a_reply(
        newsroom: Newsroom, journalist: Keypair) -> None:
    with closing(sqlite3.connect(newsroom.workspace / "index.db")) as index:
        index.execute("UPDATE recipients SET pinned_at = NULL")
        index.commit()

    message, hint = diagnostic(newsroom.reply("refused.desk"))

    assert message == "no pinned journalist keys for this desk in the workspace"
    assert hint is not None
    assert "desk-review keys accept FINGERPRINT" in hint
    assert journalists(newsroom.keys()[0]) == {"alice": "unconfirmed", "bob": "unconfirmed"}
    ok(newsroom.review("keys", "accept", journalist.fingerprint))
    ok(newsroom.reply("reply.desk"))
    assert can_decrypt(journalist, copy_of(newsroom.root / "reply.desk"))


def test_accepting_a_fingerprint_nothing_waits_for_is_one_line(newsroom: Newsroom) -> None:
    assert diagnostic(newsroom.review("keys", "accept", "DEAD BEEF" * 5)) == (
        f"no pending key change with fingerprint {'DEAD BEEF' * 5}",
        "run `desk-review keys` to see what waits for confirmation")


# --- two desks that know a source by the same designation (finding 12) --------------------------


def test_a_designation_known_at_two_desks_needs_desk(
        newsroom: Newsroom, tmp_path: Path, journalist: Keypair, second_journalist: Keypair,
        mallory: Keypair) -> None:
    other = make_newsroom(tmp_path / "other", journalist, second_journalist)
    try:
        with other.services.transaction() as db:
            db.execute(update(Source).values(designation=newsroom.designation))
        add_account(other.services, "mallory", mallory)
        bundle = other.export()
        imported = newsroom.review("import", str(bundle), "--accept-new-desk-key")
        ok(imported)
        # Its keys the newsroom confirmed for the first desk are pinned; mallory's is not.
        assert "pinned 2 journalist key(s)" in imported.stdout
        assert "new journalist key for mallory" in imported.stderr
        with other.services.sessions() as db:
            (source,) = db.scalars(select(Source))
        assert source.reply_public_key is not None
        signing_key = other.services.signing_key.public_hex

        message, hint = diagnostic(newsroom.reply("ambiguous.desk"))
        assert message.startswith(f"source {newsroom.designation!r} is known at several "
                                  "desks: ")
        assert hint is not None
        assert "--desk" in hint
        assert not (newsroom.root / "ambiguous.desk").exists()

        ok(newsroom.reply("other.desk", "--desk", signing_key[:8]))
        box = ReplyFile.from_bytes((newsroom.root / "other.desk").read_bytes()).box
        assert read_header(box).recipient == key_id(source.reply_public_key)
        assert not can_decrypt(mallory, copy_of(newsroom.root / "other.desk"))
    finally:
        other.services.engine.dispose()
