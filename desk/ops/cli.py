"""The `desk` command: setting up, administering and serving a desk."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.custody import CLI_ACTOR
from crypto.durable import write_durably
from crypto.errors import CryptoError
from crypto.names import TOR_DIR
from desk.app import Interface, create_app
from desk.config import Config, load_config
from desk.errors import DeskError
from desk.intake.tus import purge_expired_uploads
from desk.ops.tor import AUTH_TYPE, ClientKey, OnionLayout, write_tor_config
from desk.outbound.export import export_bundle, select_item_ids
from desk.records.accounts import (
    EnrolmentLink,
    add_journalist,
    find_journalist,
    issue_enrolment,
    remove_journalist,
    replace_key,
    set_password,
)
from desk.records.credentials import (
    check_password_rules,
    totp_code,
    totp_secret_text,
    totp_uri,
)
from desk.records.custody import verify_desk
from desk.records.db import make_engine, make_sessionmaker, scrub_journal, scrub_pending
from desk.records.instance import init_desk, load_instance, update_settings
from desk.records.items import purge_expired
from desk.records.models import Journalist, Source
from desk.records.recipients import key_statuses
from desk.records.sources import purge_unused_sources
from desk.services import open_services
from desk.storage.store import Store

DEFAULT_PORTS: dict[Interface, int] = {"source": 8080, "journalist": 8081}
# Where the front (desk/ops/front.py) listens for tor's streams to the source interface.
FRONT_PORT = 8082

P = ParamSpec("P")
R = TypeVar("R")


class _Failure(click.ClickException):
    """One clear line on stderr, prefixed `desk:`, and exit status 1."""

    def show(self, file: object = None) -> None:
        click.echo(f"desk: {self.format_message()}", err=True)


def _config() -> Config:
    try:
        return load_config(os.environ)
    except DeskError as exc:
        raise _Failure(str(exc)) from exc


def _source_app() -> Flask:
    return create_app(_config(), "source")


class DeskGroup(FlaskGroup):
    """Flask's command group (so `desk shell` and `desk routes` work) that lists its commands
    without building the app: `desk --help` must work before `desk init`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The desk's commands and Flask's built-in ones."""
        return sorted(click.Group.list_commands(self, ctx))


@click.group(cls=DeskGroup, create_app=_source_app, add_version_option=False,
             load_dotenv=False, set_debug_flag=False)
def cli() -> None:
    """Run and administer a desk. The data directory is DESK_DATA (default ./desk-data)."""


def _fail_on_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn desk and crypto errors into one clear line and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (DeskError, CryptoError) as exc:
            raise _Failure(str(exc)) from exc

    return wrapper


@cli.command("init", with_appcontext=False)
@_fail_on_errors
def init_command() -> None:
    """Create (or upgrade) the data directory, keyring and database."""
    config = _config()
    new = init_desk(config, click.echo)
    click.echo(f"{'Created' if new else 'Checked'} desk data directory {config.data_dir}")
    if new:
        click.echo("Next: desk journalist add USERNAME --key FILE.asc --admin")


@cli.group("journalist")
def journalist_group() -> None:
    """Journalist accounts and their keys."""


_BASE_URL_HELP = ("The journalist interface's address, such as http://<56 letters>.onion, to "
                  "print the whole enrolment link (default: only its path).")


@journalist_group.command("add", with_appcontext=False)
@click.argument("username")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The journalist's OpenPGP public key (armored or binary).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file whose first line is the password, for a scripted setup: the TOTP "
                   "secret is then printed here. Default: print a one-time enrolment link, "
                   "with which the journalist chooses both.")
@click.option("--admin", is_flag=True, help="Make this journalist an administrator.")
@click.option("--base-url", help=_BASE_URL_HELP)
@_fail_on_errors
def journalist_add(username: str, key_file: Path, password_file: Path | None,
                   admin: bool, base_url: str | None) -> None:
    """Add a journalist, pin the fingerprint of their public key, and print a one-time
    enrolment link with which they choose their passphrase and set up two-factor."""
    key_data = _read_file(key_file)
    password = None if password_file is None else _password(password_file)
    services = open_services(_config())
    with services.sessions() as db:
        journalist = add_journalist(db, services.gpg, username, key_data, admin,
                                    password=password, kdf=services.config.kdf)
        db.flush()
        link = None if password is not None else issue_enrolment(db, journalist, CLI_ACTOR)
        db.commit()
    click.echo(f"Added {journalist.username}{' (admin)' if admin else ''}.")
    click.echo(f"Pinned key fingerprint: {_spaced(journalist.fingerprint)}")
    click.echo("Compare it with the journalist over another channel before relying on it.")
    if link is not None:
        _print_link(journalist, link, base_url)
    elif journalist.totp_secret is not None:
        _print_totp(journalist.username, journalist.totp_secret)


@journalist_group.command("set-password", with_appcontext=False)
@click.argument("username")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file whose first line is the password (default: ask).")
@_fail_on_errors
def journalist_set_password(username: str, password_file: Path | None) -> None:
    """Set a journalist's password (and give them a TOTP secret if they have none)."""
    password = _password(password_file)
    if password is None:
        raise _Failure("no password given: use --password-file or run on a terminal")
    services = open_services(_config())
    with services.sessions() as db:
        new_secret = set_password(db, find_journalist(db, username), password,
                                  services.config.kdf)
        db.commit()
    click.echo(f"Password set for {username}; their sessions have ended.")
    if new_secret is not None:
        _print_totp(username, new_secret)


@journalist_group.command("remove", with_appcontext=False)
@click.argument("username")
@_fail_on_errors
def journalist_remove(username: str) -> None:
    """Remove a journalist, their sessions, and their key if nobody else pins it."""
    services = open_services(_config())
    with services.sessions() as db:
        remove_journalist(db, services.gpg, find_journalist(db, username), CLI_ACTOR)
        db.commit()
    click.echo(f"Removed {username}.")


@journalist_group.command("reset-2fa", with_appcontext=False)
@click.argument("username")
@click.option("--base-url", help=_BASE_URL_HELP)
@_fail_on_errors
def journalist_reset_2fa(username: str, base_url: str | None) -> None:
    """End a journalist's two-factor and sessions, and print a one-time enrolment link with
    which they set up two-factor again, typing the passphrase they keep."""
    services = open_services(_config())
    with services.sessions() as db:
        journalist = find_journalist(db, username)
        link = issue_enrolment(db, journalist, CLI_ACTOR,
                               keep_passphrase=journalist.password_hash is not None)
        db.commit()
        _print_link(journalist, link, base_url)


@journalist_group.command("reset-login", with_appcontext=False)
@click.argument("username")
@click.option("--base-url", help=_BASE_URL_HELP)
@_fail_on_errors
def journalist_reset_login(username: str, base_url: str | None) -> None:
    """End a journalist's passphrase, two-factor and sessions, and print a one-time enrolment
    link with which they choose both again (also: a new link when the last one expired)."""
    services = open_services(_config())
    with services.sessions() as db:
        journalist = find_journalist(db, username)
        link = issue_enrolment(db, journalist, CLI_ACTOR)
        db.commit()
        _print_link(journalist, link, base_url)


@journalist_group.command("key", with_appcontext=False)
@click.argument("username")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@_fail_on_errors
def journalist_key(username: str, key_file: Path) -> None:
    """Replace a journalist's public key."""
    key_data = _read_file(key_file)
    services = open_services(_config())
    with services.sessions() as db:
        fingerprint = replace_key(db, services.gpg, find_journalist(db, username),
                                  key_data)
        db.commit()
    click.echo(f"Pinned key fingerprint: {_spaced(fingerprint)}")


@journalist_group.command("list", with_appcontext=False)
@_fail_on_errors
def journalist_list() -> None:
    """List journalists and their pinned fingerprints."""
    services = open_services(_config())
    with services.sessions() as db:
        for journalist in db.scalars(select(Journalist).order_by(Journalist.username)):
            role = "admin" if journalist.is_admin else "journalist"
            click.echo(f"{journalist.username}\t{role}\t{journalist.fingerprint}")


@cli.group("keys")
def keys_group() -> None:
    """Journalist key health."""


@keys_group.command("check", with_appcontext=False)
@_fail_on_errors
def keys_check() -> None:
    """List every pinned key with its expiry; exit 1 if any key needs attention."""
    services = open_services(_config())
    now = datetime.now(UTC)
    with services.sessions() as db:
        statuses = key_statuses(db, services.gpg, now)
    attention = False
    for status in statuses:
        expiry = f"expires {status.expires:%Y-%m-%d}" if status.expires else "no expiry"
        algorithm = status.key.primary.algorithm_name if status.key else "-"
        if status.problems:
            verdict = "UNUSABLE: " + "; ".join(status.problems)
        elif status.warning:
            verdict = "WARNING: " + status.warning
        else:
            verdict = "ok"
        attention |= verdict != "ok"
        click.echo(f"{status.username}\t{status.fingerprint}\t{algorithm}\t{expiry}\t{verdict}")
    usable = sum(status.usable for status in statuses)
    if usable:
        click.echo(f"Accepting submissions: encrypting to {usable} key(s).")
    else:
        click.echo("NOT accepting submissions: no valid journalist key. "
                   "Add one with `desk journalist add`.")
    sys.exit(1 if attention or not usable else 0)


@cli.command("serve", with_appcontext=False)
@click.argument("interface", type=click.Choice(["source", "journalist"]))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535),
              help="Default 8080 for the source interface, 8081 for the journalist one.")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Listen on this Unix socket (mode 0660: its owner and group only) instead "
                   "of TCP: for the journalist interface, so that only tor reaches it.")
@_fail_on_errors
def serve_command(interface: str, host: str, port: int | None,
                  socket_path: Path | None) -> None:
    """Serve an interface under gunicorn with threaded workers."""
    from desk.ops.serve import serve

    if socket_path is not None:
        if port is not None or host != "127.0.0.1":
            raise _Failure("--socket replaces --host and --port: give one or the other")
        if socket_path.exists() and not socket_path.is_socket():
            raise _Failure(f"{socket_path} exists and is not a socket: choose another path")
        if not socket_path.parent.is_dir():
            raise _Failure(f"{socket_path.parent} does not exist: create it first")
    config = _config()
    open_services(config)  # fail here, clearly, rather than in every worker
    which: Interface = "source" if interface == "source" else "journalist"
    serve(lambda: create_app(config, which), host, port or DEFAULT_PORTS[which],
          None if socket_path is None else socket_path.absolute())


@cli.command("tor-config", with_appcontext=False)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the torrc.")
@click.option("--tor-dir", type=click.Path(file_okay=False, path_type=Path),
              help="tor's data directory, holding both onion services; it must belong to the "
                   "user tor runs as. Default: tor/ in the desk's data directory.")
@click.option("--front-port", type=click.IntRange(1, 65535), default=FRONT_PORT,
              show_default=True, help="Where the front (`desk front-config`) listens; the "
                                      "source onion service leads there.")
@click.option("--journalist-port", type=click.IntRange(1, 65535),
              default=DEFAULT_PORTS["journalist"], show_default=True)
@click.option("--journalist-socket", type=click.Path(dir_okay=False, path_type=Path),
              help="The Unix socket the journalist interface listens on (`desk serve "
                   "journalist --socket`, or desk@journalist.socket), instead of its port.")
@click.option("--new-client-key", is_flag=True,
              help="Make a new journalists' client key in place of the current one (which "
                   "stops working once tor reloads), and print it.")
@_fail_on_errors
def tor_config_command(out: Path, tor_dir: Path | None, front_port: int,
                       journalist_port: int, journalist_socket: Path | None,
                       new_client_key: bool) -> None:
    """Write a torrc for the two onion services and make the journalists' client key."""
    if front_port == journalist_port and journalist_socket is None:
        raise _Failure("the front and the journalist interface need different ports")
    config = _config()
    layout = OnionLayout((tor_dir or config.data_dir / TOR_DIR).absolute(), front_port,
                         journalist_port,
                         None if journalist_socket is None else journalist_socket.absolute())
    setup = write_tor_config(layout, config.data_dir, out.absolute(), new_client_key)
    click.echo(f"Wrote {setup.torrc} (tor's data directory: {layout.tor_dir})")
    for name, address, directory in (
            ("Source interface", setup.source_address, layout.source_dir),
            ("Journalist interface", setup.journalist_address, layout.journalist_dir)):
        click.echo(f"{name}: {address}" if address else
                   f"{name}: the address appears in {directory / 'hostname'} once tor has "
                   "started")
    # The private key is printed by the run that makes it and by no other: install and
    # upgrade run this again and again, and what they print stays in scrollback and logs.
    key, line = setup.client_key, setup.client_line
    if key is not None and setup.client_key_created:
        if new_client_key:
            click.echo(f"Made a new journalists' client key: tor reads its public half from "
                       f"{layout.authorized_client_file} when it starts or reloads, and from "
                       "then on the earlier key no longer opens the journalist address.")
        else:
            click.echo(f"Made the journalists' client key; tor reads its public half from "
                       f"{layout.authorized_client_file} when it starts or reloads.")
        _echo_client_key(key, line)
        click.echo(f"It is kept in {layout.client_key_file}: delete that file once every "
                   "journalist has the key.")
    elif key is not None:
        click.echo(f"The journalists' client key was made by an earlier run and is not printed "
                   f"again: it is in {layout.client_key_file}; delete that file once the key is "
                   "in every journalist's Tor Browser.")
    else:
        click.echo(f"The journalists' client key was made by an earlier run and its private "
                   f"half is no longer on this server ({layout.client_key_file}): to make a new "
                   "one, run this again with --new-client-key and reload tor.")
    if setup.source_address is None or setup.journalist_address is None:
        click.echo(f"Once tor has started, print the onion addresses with:\n"
                   f"  {setup.rerun_command()}")


def _echo_client_key(key: ClientKey, line: str | None) -> None:
    """Print the journalists' private client key: the whole line a Tor client takes once the
    journalist address is known, the key and how to make that line before."""
    if line is not None:
        click.echo("Journalists' client key line, for each journalist's Tor Browser or "
                   "ClientOnionAuthDir (keep it secret):")
        click.echo(f"  {line}")
        click.echo("Tor Browser's prompt on the journalist address asks only for the last part: "
                   f"{key.private_base32}")
        return
    click.echo("Journalists' client key, for each journalist's Tor Browser (keep it secret); "
               "Tor Browser's prompt on the journalist address asks for it:")
    click.echo(f"  {key.private_base32}")
    click.echo(f"A ClientOnionAuthDir takes the line ADDRESS:{AUTH_TYPE}{key.private_base32}, "
               "ADDRESS being the journalist address without .onion.")


@cli.command("front-config", with_appcontext=False)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write HAProxy's configuration.")
@click.option("--port", type=click.IntRange(1, 65535), default=FRONT_PORT, show_default=True,
              help="Where the front listens for tor's streams (tor-config's --front-port).")
@click.option("--source-port", type=click.IntRange(1, 65535),
              default=DEFAULT_PORTS["source"], show_default=True,
              help="Where the source interface listens (desk serve source).")
@_fail_on_errors
def front_config_command(out: Path, port: int, source_port: int) -> None:
    """Write the front's HAProxy configuration: per-circuit limits and deadlines before the
    source interface."""
    from desk.ops.front import write_front_config

    write_front_config(out.absolute(), port, source_port)
    click.echo(f"Wrote {out.absolute()}: the front listens on 127.0.0.1:{port} for tor and "
               f"serves the source interface on 127.0.0.1:{source_port}. Check it with "
               f"`haproxy -c -f {out}`.")


@cli.command("export", with_appcontext=False)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the bundle (.tar).")
@click.option("--all", "everything", is_flag=True, help="Every stored object.")
@click.option("--unseen", is_flag=True, help="Objects no journalist has seen yet (default).")
@click.option("--source", "designation", help="Everything from one source, by designation.")
@_fail_on_errors
def export_command(out: Path, everything: bool, unseen: bool, designation: str | None) -> None:
    """Write an export bundle for the offline machine, as the web interface would stream it."""
    if sum((everything, unseen, designation is not None)) > 1:
        raise _Failure("choose one of --all, --unseen and --source")
    # Check the destination first: the export is recorded in custody before it is written.
    if out.exists():
        raise _Failure(f"{out} already exists: choose another --out")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise _Failure(f"cannot write to {out.parent}: it is not a writable folder")
    services = open_services(_config())
    with services.sessions() as db:
        source = None
        if designation is not None:
            source = db.scalar(select(Source).where(Source.designation == designation))
            if source is None:
                raise _Failure(f"no source called {designation!r}")
        chosen = select_item_ids(db, unseen=not everything and source is None, source=source)
    if not chosen:
        raise _Failure("nothing to export")
    bundle = export_bundle(services, chosen, CLI_ACTOR)
    try:
        write_durably(out, bundle.chunks)
    except OSError as exc:
        raise _Failure(f"writing {out} failed ({exc.strerror}); the export was recorded in "
                       "custody but no bundle was written, so run it again") from exc
    finally:
        bundle.close()
    click.echo(f"Wrote {bundle.count} object(s), {bundle.size} bytes, to {out}")


@cli.group("custody")
def custody_group() -> None:
    """The signed chain of custody."""


@custody_group.command("verify", with_appcontext=False)
@_fail_on_errors
def custody_verify() -> None:
    """Check every custody signature and link, and every stored ciphertext against it."""
    services = open_services(_config())
    with services.sessions() as db:
        report = verify_desk(db, services.store, services.signing_key.public_hex)
    click.echo(f"Custody intact: {report.entries} entries, {report.objects_checked} stored "
               f"objects match what was received, {report.replies_checked} replies match "
               "what was sent.")


@cli.command("settings", with_appcontext=False)
@click.option("--name", help="The desk's name, shown to journalists.")
@click.option("--max-upload", help="Largest sending, e.g. 4GiB; '' for DESK_MAX_UPLOAD_BYTES.")
@click.option("--retention-days", help="Delete submissions older than this; '' keeps them.")
@_fail_on_errors
def settings_command(name: str | None, max_upload: str | None,
                     retention_days: str | None) -> None:
    """Show or change the desk's name, upload limit and retention."""
    services = open_services(_config())
    with services.sessions() as db:
        instance = load_instance(db)
        if name is not None or max_upload is not None or retention_days is not None:
            update_settings(
                db, instance.name if name is None else name,
                str(instance.max_upload_bytes or "") if max_upload is None else max_upload,
                str(instance.retention_days or "") if retention_days is None
                else retention_days)
            db.commit()
        limit = instance.max_upload_bytes or services.config.max_upload_bytes
        click.echo(f"name: {instance.name}")
        click.echo(f"max upload: {limit} bytes"
                   f"{'' if instance.max_upload_bytes else ' (DESK_MAX_UPLOAD_BYTES)'}")
        click.echo(f"retention: {instance.retention_days or 'keep until deleted'}"
                   f"{' days' if instance.retention_days else ''}")


@cli.command("purge", with_appcontext=False)
@_fail_on_errors
def purge_command() -> None:
    """Delete submissions and replies past the retention period (recording each in custody),
    resumable uploads past their expiry or still empty after a settle, sources with nothing
    left after a day (codenames never used among them), and expired sessions; then empty the
    database's journal."""
    from desk.web.sessions import sweep_expired

    services = open_services(_config())
    # Expired items and replies go in short batches of their own, so that sources' uploads
    # commit in between; the rest are rows without custody entries, deleted at once.
    deleted, replies = purge_expired(services.writers, services.store, services.signing_key)
    with services.writers() as db:
        uploads = purge_expired_uploads(db, services.store)
        sources = purge_unused_sources(db)
        sessions = sweep_expired(db)
        db.commit()
    scrub_pending()
    # Also when nothing was deleted now: a journal an earlier deletion could not empty.
    if not scrub_journal(services.engine):
        raise _Failure("the database's journal could not be emptied (readers held it); "
                       "run `desk purge` again")
    click.echo(f"Purged {deleted} expired object(s), {replies} expired reply(ies), {uploads} "
               f"expired upload(s), {sources} source(s) with nothing left and {sessions} "
               "expired session(s).")


@cli.command("settle", with_appcontext=False)
@_fail_on_errors
def settle_command() -> None:
    """Settle the desk now: clear journalists' expired login times from the database and empty
    its write-ahead log, then re-birth what arrived since the last settle, refill the pool and
    set every file time to the start of the UTC day. A running desk does this every
    DESK_SETTLE_INTERVAL; this waits for one under way to finish first."""
    from desk.ops.settling import settle_desk

    config = _config()
    if not config.store_dir.is_dir():
        raise _Failure(f"{config.data_dir} is not a desk data directory: run `desk init`")
    desk_report = settle_desk(config)
    report = desk_report.files
    seconds = (report.finished_ns - report.started_ns) / 1e9
    click.echo(f"Settled in {seconds:.2f} s: {desk_report.forgotten} expired login value(s) "
               f"cleared, {report.reborn} file(s) and folder(s) re-born, {report.restamped} "
               f"restamped, {report.pooled} added to the pool.")
    for path in report.skipped:
        click.echo(f"in use, left for the next settle: {path}")
    if not desk_report.database_settled:
        raise _Failure("the database could not be settled (busy, or readers kept its "
                       "write-ahead log from being emptied); run `desk settle` again")


@cli.command("doctor", with_appcontext=False)
@click.option("--repair", is_flag=True,
              help="Remove what interrupted writes left (never a row, never anything the "
                   "custody log recorded). Stop both interfaces first.")
@_fail_on_errors
def doctor_command(repair: bool) -> None:
    """Find what an interrupted write (a crash, a power cut) left in the store, rows whose
    files are gone, and database damage; one line each, exit 1 if anything is found."""
    from desk.ops.doctor import (
        Finding,
        database_in_use,
        database_problems,
        examine,
        key_findings,
        sole_session,
    )
    from desk.ops.doctor import repair as remove_debris

    config = _config()
    if not config.gnupg_home.is_dir() or not config.store_dir.is_dir():
        raise _Failure(f"{config.data_dir} is not a desk data directory: run `desk init`")
    # Not open_services: doctor must run whatever state the keys are in.
    engine = make_engine(config.database_url)
    store = Store(config.store_dir)

    def everything(db: Session) -> list[Finding]:
        return key_findings(config, db) + examine(db, store) + database_problems(db)

    if not repair:
        with make_sessionmaker(engine)() as db:
            found = everything(db)
        for finding in found:
            click.echo(finding.line())
        if not found:
            click.echo("Nothing found: every stored file has its row, every row its files, and "
                       "the database is intact.")
            return
        engine.dispose()  # its pooled connection would count as a server's
        if database_in_use(config.database_url):
            click.echo("desk: a server has the database open, so writes under way are listed "
                       "too; stop both interfaces for an exact report", err=True)
        removable = sum(finding.removable for finding in found)
        click.echo(f"{len(found)} finding(s); `desk doctor --repair` removes {removable} of them.")
        sys.exit(1)
    # Hold the database alone throughout: no server may start writing while debris goes; and
    # the settle lock, so that a `desk settle` run meanwhile cannot be mistaken for debris.
    from desk.storage.settle import settle_lock

    engine.dispose()
    with settle_lock(config.data_dir), sole_session(config.database_url) as db:
        removed = remove_debris(everything(db))
        left = everything(db)
    for finding in removed:
        click.echo(f"removed\t{finding.kind}\t{finding.where}")
    for finding in left:
        click.echo(finding.line())
    click.echo(f"Removed {len(removed)} thing(s) interrupted writes left; "
               + (f"{len(left)} finding(s) need a person." if left else "nothing else found."))
    sys.exit(1 if left else 0)


@cli.command("demo", with_appcontext=False)
@click.option("--dir", "directory", default="./desk-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="Source interface port; the journalist interface uses the next one.")
@click.option("--no-serve", is_flag=True, help="Set up only; do not start the servers.")
@click.option("--code", is_flag=True,
              help="Print the demo account's current two-factor code and exit.")
@_fail_on_errors
def demo_command(directory: Path, port: int, no_serve: bool, code: bool) -> None:
    """Set up a demo desk with a demo journalist and serve both interfaces on 127.0.0.1."""
    from desk.ops.demo import run_demo, setup_demo

    demo = setup_demo(directory.absolute(), os.environ)
    if code:
        click.echo(totp_code(demo.totp_secret, datetime.now(UTC)))
        return
    click.echo(demo.instructions(port, port + 1))
    if not no_serve:
        run_demo(demo, port, port + 1)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Failure(f"cannot read {path}: {exc.strerror}") from exc


def _password(password_file: Path | None) -> str | None:
    """The password from a file's first line, or asked for on a terminal, or None."""
    if password_file is not None:
        lines = _read_file(password_file).decode("utf-8", "replace").splitlines()
        password = lines[0] if lines else ""
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        return None
    check_password_rules(password)
    return password


def _print_link(journalist: Journalist, link: EnrolmentLink, base_url: str | None) -> None:
    what = ("types their passphrase and sets up two-factor again" if journalist.password_hash
            else "chooses a passphrase and sets up two-factor")
    address = (base_url or "http://<journalist-onion-address>").rstrip("/")
    click.echo(f"Enrolment link for {journalist.username} (works once, until the end of "
               f"{link.until.isoformat()} UTC):")
    click.echo(f"  {address}{link.path}")
    click.echo(f"Give it to {journalist.username} over a safe channel. In Tor Browser, on the "
               f"journalist interface, {journalist.username} {what}; nobody else sees either. "
               f"A new link: desk journalist reset-login {journalist.username}")


def _print_totp(username: str, secret: bytes) -> None:
    click.echo(f"TOTP secret: {totp_secret_text(secret)}")
    click.echo(f"Authenticator URI: {totp_uri(secret, username)}")
    click.echo("Shown once: enter it in the journalist's authenticator app now.")


def _spaced(fingerprint: str) -> str:
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))
