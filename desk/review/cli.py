"""`desk-review`: the offline review console.

Terminal rules: only requested data goes to stdout; diagnostics go to stderr as one line
prefixed `desk-review:` in lower case without a full stop, then an optional `hint:` line;
progress bars go to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from sqlalchemy import select

from crypto.custody import file_sha256
from crypto.errors import CryptoError
from crypto.gpg import GnuPG
from crypto.names import OPEN_SCRATCH_PREFIX, REPORT_SHEET_PREFIX
from desk.review.decrypt import decrypted_copy, drop_item, open_item, wipe_item
from desk.review.errors import ReviewError
from desk.review.importer import import_bundle
from desk.review.index import Item, PendingKey, Recipient
from desk.review.inert import cell, inert, json_text, plain
from desk.review.inspect import inspect_file
from desk.review.keys import (
    ADDED,
    CHANGED,
    JOURNALIST,
    REMOVED,
    SOURCE,
    KeyNote,
    accept_key,
    grouped,
    list_keys,
)
from desk.review.publish import is_still_image, publish_copy
from desk.review.replies import read_message, reply_history, write_reply
from desk.review.report import render_report, write_report
from desk.review.server import start_viewer
from desk.review.sheet import contact_sheet
from desk.review.workspace import Workspace, default_workspace, log_action

P = ParamSpec("P")
R = TypeVar("R")
stderr = Console(stderr=True)


class ConsoleFailure(click.ClickException):
    """One diagnostic line and an optional hint, exit status 1."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: object = None) -> None:
        """Print in the console's style."""
        message = self.format_message().rstrip(".")
        first = message.split(" ", 1)[0]
        # A capitalised word ("Cannot") becomes lower case; a value (a path, a fingerprint) is
        # shown exactly as it is.
        if first.isalpha() and first[:1].isupper() and first[1:].islower():
            message = message[:1].lower() + message[1:]
        # Messages can quote a bundle (a designation, a member's name): never raw.
        click.echo(f"desk-review: {inert(message)}", err=True)
        if self.hint:
            click.echo(f"hint: {inert(self.hint)}", err=True)


def failures(func: Callable[P, R]) -> Callable[P, R]:
    """Turn console and crypto errors into the console's one-line diagnostics."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ReviewError as exc:
            raise ConsoleFailure(str(exc), exc.hint) from exc
        except CryptoError as exc:
            raise ConsoleFailure(str(exc)) from exc
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise ConsoleFailure(f"cannot use{where}: {exc.strerror or exc}",
                                 "check the path and its permissions") from exc

    return wrapper


class Context:
    """The workspace and GnuPG home chosen on the command line."""

    def __init__(self, workspace: Path, gnupghome: Path | None) -> None:
        self.workspace_path = workspace
        self.gnupghome = gnupghome

    def workspace(self) -> Workspace:
        """Open the workspace."""
        return Workspace.open(self.workspace_path)

    def gpg(self) -> GnuPG:
        """The local GnuPG with the journalist's secret key."""
        home = self.gnupghome or Path(os.environ.get("GNUPGHOME") or Path.home() / ".gnupg")
        if not home.is_dir():
            raise ReviewError(f"no GnuPG home at {home}",
                              "pass --gnupghome DIR, or set GNUPGHOME, to the folder that "
                              "holds your journalist secret key")
        return GnuPG(home)


@click.group()
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path),
              help="Workspace folder (default $DESK_REVIEW_HOME or ~/.desk-review).")
@click.option("--gnupghome", type=click.Path(file_okay=False, path_type=Path),
              help="GnuPG home with your secret key (default $GNUPGHOME or ~/.gnupg).")
@click.pass_context
def main(ctx: click.Context, workspace: Path | None, gnupghome: Path | None) -> None:
    """Review desk bundles on the offline machine: import, verify, decrypt, inspect."""
    ctx.obj = Context(workspace or default_workspace(os.environ), gnupghome)


@contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[int], None]]:
    """A byte progress bar on stderr (hidden when stderr is not a terminal)."""
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=stderr, transient=True,
                  disable=not stderr.is_terminal) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


@main.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--accept-new-desk-key", is_flag=True,
              help="Accept a bundle signed by a desk key this workspace has not seen.")
@click.pass_obj
@failures
def import_command(obj: Context, bundle: Path, accept_new_desk_key: bool) -> None:
    """Verify a bundle completely, then import it; a bundle that fails imports nothing."""
    size = bundle.stat().st_size if bundle.exists() else 0
    with _progress(size, "verifying") as advance:
        result = import_bundle(obj.workspace(), obj.gpg(), bundle, advance,
                               accept_new_desk_key)
    click.echo(f"imported {result.new_items} new item(s) from {inert(result.desk_name)}"
               f"{f', {result.known_items} already here' if result.known_items else ''}; "
               f"custody verified ({result.custody_entries} entries)")
    if result.pinned:
        click.echo(f"pinned {len(result.pinned)} journalist key(s) of "
                   f"{inert(result.desk_name)}; compare each fingerprint with its owner in "
                   "person or by phone before replying:")
        for note in result.pinned:
            click.echo(f"  {inert(note.name)}  {grouped(note.fingerprint)}")
    _warn_pending(result.pending)


def _change_text(note: KeyNote) -> str:
    """One pending change in words."""
    what = {(JOURNALIST, ADDED): f"the desk lists a new journalist key for {inert(note.name)}",
            (JOURNALIST, REMOVED): f"the desk no longer lists {inert(note.name)}'s key",
            (SOURCE, CHANGED): f"the desk offers another reply key for {inert(note.name)}"}
    return f"{what.get((note.kind, note.change or ''), 'a key changed')} " \
        f"({grouped(note.fingerprint)})"


def _warn_pending(pending: list[KeyNote]) -> None:
    """Every key change awaiting confirmation, loudly, on stderr."""
    for note in pending:
        click.secho(f"desk-review: key change not accepted at {inert(note.desk)}: "
                    f"{_change_text(note)}", err=True, fg="red", bold=True)
    if pending:
        click.echo("hint: replies leave these changes out; compare the fingerprint with the "
                   "newsroom out of band, then `desk-review keys accept FINGERPRINT`", err=True)


@main.group("keys", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def keys_command(ctx: click.Context, as_json: bool) -> None:
    """Pinned journalist and source keys, and key changes waiting for confirmation."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Context = ctx.obj
    _list_keys(obj, as_json)


@failures
def _list_keys(obj: Context, as_json: bool) -> None:
    listings = list_keys(obj.workspace())
    if as_json:
        click.echo(json_text([{
            "desk": k.desk, "desk_key": k.signing_key,
            "journalists": [{"username": u, "fingerprint": f, "state": state}
                            for u, f, state in k.journalists],
            "sources": [{"designation": d, "fingerprint": f} for d, f in k.sources],
            "pending": [{"kind": n.kind, "name": n.name, "fingerprint": n.fingerprint,
                         "change": n.change} for n in k.pending],
        } for k in listings]))
        return
    if not listings:
        click.echo("no keys yet: desk-review import BUNDLE.tar", err=True)
        return
    for listing in listings:
        click.echo(f"{inert(listing.desk)} (desk signing key {listing.signing_key[:16]}...)")
        click.echo("  journalist keys (replies are encrypted to the pinned ones):")
        for username, fingerprint, state in listing.journalists:
            click.echo(f"    {inert(username)}  {grouped(fingerprint)}  {state}")
        click.echo(f"  source reply keys ({len(listing.sources)} pinned):")
        for designation, fingerprint in listing.sources:
            click.echo(f"    {inert(designation)}  {grouped(fingerprint)}")
        if listing.pending:
            click.echo("  PENDING, not accepted:")
            for note in listing.pending:
                click.echo(f"    {_change_text(note)}")
    _warn_pending([note for listing in listings for note in listing.pending])


@keys_command.command("accept")
@click.argument("fingerprint")
@click.pass_obj
@failures
def keys_accept_command(obj: Context, fingerprint: str) -> None:
    """Pin a pending key change after comparing FINGERPRINT out of band."""
    for note in accept_key(obj.workspace(), fingerprint):
        what = "removed" if note.change == REMOVED else "pinned"
        click.echo(f"{what} {note.kind} key of {inert(note.name)} at {inert(note.desk)}: "
                   f"{grouped(note.fingerprint)}")


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@click.pass_obj
@failures
def list_command(obj: Context, as_json: bool) -> None:
    """Sources and items in this workspace."""
    workspace = obj.workspace()
    with workspace.session() as session:
        items = list(session.scalars(select(Item).order_by(Item.source, Item.received_at)))
        rows = [{
            "id": i.id, "source": i.source, "kind": i.kind, "filename": i.filename,
            "content_type": i.content_type, "size": i.size, "sha256": i.sha256,
            "received_on": i.received_on.isoformat(), "decrypted": i.decrypted_path is not None,
            "decrypted_path": i.decrypted_path, "verified": i.verified,
        } for i in items]
    if as_json:
        click.echo(json_text(rows))
        return
    if not rows:
        click.echo("no items yet: desk-review import BUNDLE.tar", err=True)
        return
    table = Table("id", "source", "kind", "filename", "size", "received", "decrypted",
                  "custody")
    for row in rows:
        # Names and designations come from the bundle: cells of plain text, never markup.
        table.add_row(cell(row["id"]), cell(row["source"]), cell(row["kind"]),
                      cell(row["filename"]), f"{row['size']:,}", cell(row["received_on"]),
                      "yes" if row["decrypted"] else "no",
                      "verified" if row["verified"] else "NOT VERIFIED")
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@main.command("reply")
@click.argument("source")
@click.option("--message-file", "message_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="UTF-8 text file with the reply.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Reply file to write (upload it on the source's page).")
@click.option("--signer", help="Fingerprint of your journalist key, if several are here.")
@click.option("--desk", help="The desk's name, if several desks here know SOURCE.")
@click.pass_obj
@failures
def reply_command(obj: Context, source: str, message_file: Path, out: Path,
                  signer: str | None, desk: str | None) -> None:
    """Write an end-to-end reply to SOURCE (its designation) for upload to the desk."""
    text = read_message(message_file)

    def announce(recipients: list[Recipient], left: list[PendingKey]) -> None:
        click.echo("the journalists' copy is encrypted to these pinned keys:", err=True)
        for recipient in recipients:
            click.echo(f"  {inert(recipient.username)}  {grouped(recipient.fingerprint)}",
                       err=True)
        for change in left:
            click.secho(f"desk-review: left out, not accepted: {inert(change.name)} "
                        f"{grouped(change.fingerprint)}", err=True, fg="red", bold=True)

    written = write_reply(obj.workspace(), obj.gpg(), source, text, out, signer, desk,
                          announce)
    source, author = inert(written.source), inert(written.author)
    click.echo(f"wrote {inert(written.path)}: a reply to {source}, sealed to their codename "
               f"and signed by {author}; upload it on {source}'s page of the journalist "
               "interface")


@main.command("replies")
@click.argument("source")
@click.option("--desk", help="The desk's name, if several desks here know SOURCE.")
@click.pass_obj
@failures
def replies_command(obj: Context, source: str, desk: str | None) -> None:
    """Show every reply sent to SOURCE, from the bundles imported so far."""
    shown = reply_history(obj.workspace(), obj.gpg(), source, desk)
    if not shown:
        click.echo(f"no replies to {inert(source)} in this workspace", err=True)
        return
    for reply in shown:
        how = "offline, end to end" if reply.via == "console" else "typed on the desk"
        click.echo(f"#{reply.number} {reply.sent_on.isoformat()} by "
                   f"{inert(reply.author or '?')} ({how})")
        click.echo(inert(reply.text, lines=True) if reply.text is not None
                   else f"[cannot open this copy: {inert(reply.problem)}]")
        click.echo()


@main.command("open")
@click.argument("item")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the decrypted file (default: the workspace).")
@click.pass_obj
@failures
def open_command(obj: Context, item: str, out_dir: Path | None) -> None:
    """Decrypt an item, check every part's SHA-256, and print the file's SHA-256."""
    workspace = obj.workspace()
    with workspace.session() as session:
        size = workspace.item(session, item).size
    with _progress(size, "decrypting") as advance:
        opened = open_item(workspace, obj.gpg(), item, out_dir, advance)
    if opened.text is not None:
        # The source's own words: its lines kept, its escape sequences shown, not obeyed.
        click.echo(inert(opened.text, lines=True))
        return
    click.echo(f"{opened.sha256}  {inert(opened.path)}")


@main.command("wipe")
@click.argument("item")
@click.pass_obj
@failures
def wipe_command(obj: Context, item: str) -> None:
    """Delete an item's decrypted copy from this machine (the ciphertext stays), and what an
    interrupted command left in the workspace's scratch folder."""
    wiped = wipe_item(obj.workspace(), item)
    if wiped.kept:
        left = "; ".join(f"{inert(str(path))} ({why})" for path, why in wiped.kept)
        raise ReviewError(f"removed {len(wiped.removed)} decrypted file(s) but left "
                          f"{len(wiped.kept)} that open recorded: {left}",
                          "check each one and delete it by hand if it holds the plaintext")
    click.echo(f"removed {len(wiped.removed)} decrypted file(s)", err=True)


@main.command("drop")
@click.argument("item")
@click.option("--yes", is_flag=True, help="Drop without asking.")
@click.pass_obj
@failures
def drop_command(obj: Context, item: str, yes: bool) -> None:
    """Remove an item from this workspace: its ciphertext, its index rows and any decrypted
    copy. For an item you no longer want here, or one the console cannot show."""
    workspace = obj.workspace()
    with workspace.session() as session:
        record = workspace.item(session, item)
        what = f"item {record.id} ({inert(record.filename or record.kind)}, from " \
               f"{inert(record.source)})"
    if not yes:
        if not sys.stdin.isatty():
            raise ReviewError(f"dropping {what} needs confirmation",
                              "run it in a terminal, or pass --yes")
        if not click.confirm(f"drop {what} from this workspace? importing a bundle that "
                             "holds it brings it back", default=False, err=True):
            raise ReviewError("nothing was dropped")
    dropped = drop_item(workspace, record.id)
    click.echo(f"dropped {what}: its ciphertext, its index rows and "
               f"{len(dropped.decrypted)} decrypted file(s); the action log keeps the record",
               err=True)


@contextmanager
def _plaintext(obj: Context, workspace: Workspace, item_id: str) -> Iterator[tuple[Item, Path]]:
    """The item's decrypted file: the one `open` made, or a temporary one deleted after use."""
    with workspace.session() as session:
        item = workspace.item(session, item_id)
    if item.kind != "file":
        raise ReviewError(f"item {item.id} is a message, not a file",
                          f"read it with `desk-review open {item.id}`")
    if (intact := decrypted_copy(item)) is not None:
        yield item, intact
        return
    scratch = workspace.staging / f"{OPEN_SCRATCH_PREFIX}{os.urandom(6).hex()}"
    try:
        with _progress(item.size, "decrypting") as advance:
            opened = open_item(workspace, obj.gpg(), item.id, scratch, advance)
        if opened.path is None:  # pragma: no cover - files always decrypt to a path
            raise ReviewError(f"item {item.id} did not decrypt to a file")
        yield item, opened.path
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        with workspace.session() as session:
            record = workspace.item(session, item_id)
            if record.decrypted_path and Path(record.decrypted_path).is_relative_to(scratch):
                record.decrypted_path = record.decrypted_sha256 = None


@main.command("inspect")
@click.argument("item")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
@failures
def inspect_command(obj: Context, item: str, as_json: bool) -> None:
    """Container and stream facts, and everything that could identify the source."""
    workspace = obj.workspace()
    with _plaintext(obj, workspace, item) as (record, path):
        report = inspect_file(path, workspace.staging)
    with workspace.session() as session:
        log_action(session, record.id, "inspect", findings=len(report.findings))
    if as_json:
        click.echo(json_text(report.to_json()))
        return
    # Every value below is the file's or the bundle's: plain Text cells, never markup.
    out = Console(width=200 if not sys.stdout.isatty() else None)
    out.print(plain(record.filename or record.id, style="bold") + f"  {record.size:,} bytes")
    facts = Table("fact", "value", title="file")
    for key, value in report.facts.items():
        if value not in (None, "", 0):
            facts.add_row(key.replace("_", " "), cell(value))
    out.print(facts)
    streams = Table("#", "type", "codec", "size", "frame rate", "duration", "created",
                    "encoder", "rotation", title="streams")
    for s in report.streams:
        streams.add_row(*(cell(v) for v in (
            s["index"], s["type"], s["codec"],
            f"{s['width']}x{s['height']}" if s["width"] else None, s["frame_rate"],
            s["duration_seconds"], s["creation_time"], s["encoder"], s["rotation"])))
    out.print(streams)
    if not report.findings:
        out.print("[green]could identify the source: nothing found[/green]")
        return
    found = Table("what", "where", "value", title="[bold red]could identify the source[/bold red]")
    for finding in report.findings:
        found.add_row(cell(finding.category), cell(finding.where), cell(finding.value))
    out.print(found)


@main.command("publish-copy")
@click.argument("item")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the cleaned copy (.mp4, .mov, .mkv, .webm, .jpg, .png).")
@click.pass_obj
@failures
def publish_copy_command(obj: Context, item: str, out: Path) -> None:
    """Write a copy without identifying metadata, proven clean by inspecting it again."""
    workspace = obj.workspace()
    with _plaintext(obj, workspace, item) as (record, path):
        # Image or video is read from the content, not from the declared name or type.
        publish_copy(path, out, workspace.staging)
    digest = file_sha256(out)[1]
    with workspace.session() as session:
        log_action(session, record.id, "publish-copy", out=str(out), sha256=digest)
    click.echo(f"{digest}  {out}")


@main.command("sheet")
@click.argument("item")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the contact sheet (.png).")
@click.option("--frames", "frames_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also save each keyframe here, for reverse image search elsewhere.")
@click.pass_obj
@failures
def sheet_command(obj: Context, item: str, out: Path, frames_dir: Path | None) -> None:
    """A contact sheet of keyframes with their timestamps."""
    workspace = obj.workspace()
    with _plaintext(obj, workspace, item) as (record, path):
        frames = contact_sheet(path, out, frames_dir, is_image=is_still_image(path),
                               scratch=workspace.staging)
    with workspace.session() as session:
        log_action(session, record.id, "sheet", out=str(out), frames=len(frames))
    click.echo(str(out))


@main.command("report")
@click.argument("item")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the evidence report (.html).")
@click.pass_obj
@failures
def report_command(obj: Context, item: str, out: Path) -> None:
    """An evidence report a verifier can check independently."""
    if out.exists():
        raise ReviewError(f"the output file {out} already exists", "choose another --out")
    workspace = obj.workspace()
    staging = workspace.staging
    with _plaintext(obj, workspace, item) as (record, path):
        digest = file_sha256(path)[1]
        report = inspect_file(path, staging)
        sheet = staging / f"{REPORT_SHEET_PREFIX}{os.urandom(6).hex()}.png"
        try:
            contact_sheet(path, sheet, is_image=is_still_image(path), scratch=staging)
            sheet_png = sheet.read_bytes()
        except ReviewError:
            sheet_png = None  # no picture to show (a document, say); the rest still stands
        finally:
            sheet.unlink(missing_ok=True)
    with workspace.session() as session:
        log_action(session, record.id, "report", out=str(out), sha256=digest)
    write_report(render_report(workspace, record.id, digest, report, sheet_png), out)
    click.echo(str(out))


@main.command("serve")
@click.option("--no-browser", is_flag=True, help="Print the address; do not open a browser.")
@click.pass_obj
@failures
def serve_command(obj: Context, no_browser: bool) -> None:
    """A local viewer on 127.0.0.1, at a random port and a random secret address."""
    workspace = obj.workspace()
    try:
        gpg: GnuPG | None = obj.gpg()
    except ReviewError:
        gpg = None  # messages then show as "not decrypted"; files still preview
    server, url = start_viewer(workspace, gpg)
    click.echo(url)
    click.echo("only this machine can reach it; stop with Ctrl-C", err=True)
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
