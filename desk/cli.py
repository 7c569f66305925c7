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

from crypto.errors import CryptoError
from desk.app import create_app
from desk.config import Config, load_config
from desk.errors import DeskError
from desk.instance import init_desk
from desk.journalists import add_journalist
from desk.models import Journalist
from desk.recipients import key_statuses
from desk.services import open_services

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
    new = init_desk(config)
    click.echo(f"{'Created' if new else 'Checked'} desk data directory {config.data_dir}")
    if new:
        click.echo("Next: desk journalist add USERNAME --key FILE.asc")


@cli.group("journalist")
def journalist_group() -> None:
    """Journalist accounts and their keys."""


@journalist_group.command("add", with_appcontext=False)
@click.argument("username")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The journalist's OpenPGP public key (armored or binary).")
@click.option("--admin", is_flag=True, help="Make this journalist an administrator.")
@_fail_on_errors
def journalist_add(username: str, key_file: Path, admin: bool) -> None:
    """Add a journalist and pin the fingerprint of their public key."""
    try:
        key_data = key_file.read_bytes()
    except OSError as exc:
        raise _Failure(f"cannot read {key_file}: {exc.strerror}") from exc
    services = open_services(_config())
    with services.sessions() as session:
        journalist = add_journalist(session, services.gpg, username, key_data, admin)
        session.commit()
    click.echo(f"Added {journalist.username}{' (admin)' if admin else ''}.")
    click.echo(f"Pinned key fingerprint: {_spaced(journalist.fingerprint)}")
    click.echo("Compare it with the journalist over another channel before relying on it.")


@journalist_group.command("list", with_appcontext=False)
@_fail_on_errors
def journalist_list() -> None:
    """List journalists and their pinned fingerprints."""
    services = open_services(_config())
    with services.sessions() as session:
        for journalist in session.scalars(select(Journalist).order_by(Journalist.username)):
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
    with services.sessions() as session:
        statuses = key_statuses(session, services.gpg, now)
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
@click.argument("interface", type=click.Choice(["source"]))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@_fail_on_errors
def serve_command(interface: str, host: str, port: int) -> None:
    """Serve an interface under gunicorn with threaded workers."""
    from desk.serve import serve

    config = _config()
    open_services(config)  # fail here, clearly, rather than in every worker
    serve(lambda: create_app(config, "source"), host, port)


@cli.command("demo", with_appcontext=False)
@click.option("--dir", "directory", default="./desk-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-serve", is_flag=True, help="Set up only; do not start the server.")
@_fail_on_errors
def demo_command(directory: Path, port: int, no_serve: bool) -> None:
    """Set up a demo desk with a demo journalist keypair and serve it on 127.0.0.1."""
    from desk.demo import setup_demo
    from desk.serve import serve

    demo = setup_demo(directory.absolute(), os.environ)
    click.echo(demo.instructions(port))
    if not no_serve:
        serve(lambda: create_app(demo.config, "source"), "127.0.0.1", port)


def _spaced(fingerprint: str) -> str:
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))
