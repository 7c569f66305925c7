"""The deployment: a torrc that tor accepts, the journalists' client key, gunicorn's settings as
gunicorn itself reads them, what a real server sends and logs, the systemd units and the
install script.

tor and shellcheck are installed by `make test` and `.ci/run`: in CI (CI set) a missing one is
a failure, elsewhere the test is skipped. systemd-analyze ships with systemd.
"""

from __future__ import annotations

import base64
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from desk.ops.cli import DEFAULT_PORTS, FRONT_PORT
from desk.ops.front import CIRCUIT_CONNECTIONS, CIRCUIT_REQUESTS, FRONT_CONNECTIONS
from desk.ops.serve import GUNICORN_SETTINGS
from desk.ops.tor import OnionLayout, render_torrc
from desk.ops.worker import connection_budget
from desk.services import Services
from tests.harness.desks import read_objects, run_desk
from tests.harness.forms import FormBody
from tests.harness.front import circuit_socket, haproxy, running_front
from tests.harness.gpg import Keypair
from tests.harness.http import HttpBrowser
from tests.harness.paths import DESK_COMMAND, REPO
from tests.harness.servers import Server, StartFailed, start_server

DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
IN_CI = bool(os.environ.get("CI"))
KEY_LINE_RE = re.compile(r"^descriptor:x25519:([A-Z2-7]{52})$")
CLIENT_LINE_RE = re.compile(r"^\s+([a-z2-7]{56}):descriptor:x25519:([A-Z2-7]{52})$", re.MULTILINE)
INSTANCE_DEFAULTS = Path("/usr/share/tor/tor-service-defaults-torrc-instances")
TIMEOUT = 30
# Runs a command under PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN), the kernel's own form of
# MemoryDenyWriteExecute=yes, which passes to every child; exit status 77 if the kernel has none.
MDWE_WRAPPER = ("import ctypes, os, sys\n"
                "if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0: sys.exit(77)\n"
                "os.execv(sys.argv[1], sys.argv[1:])\n")


# Helpers


def require(tool: str, package: str) -> str:
    """The path of `tool`; a failure in CI when it is missing, a skip elsewhere."""
    path = shutil.which(tool)
    if path is not None:
        return path
    if IN_CI:
        pytest.fail(f"{tool} is missing: CI must run this test (.ci/run installs {package})")
    pytest.skip(f"{tool} is not installed (apt-get install {package})")


def require_haproxy() -> str:
    """HAProxy's path; a failure in CI when it is missing, a skip elsewhere."""
    path = haproxy()
    if path is not None:
        return path
    return require("haproxy", "haproxy")


def tor_config(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `desk tor-config` for the desk in `data`, writing `data/../torrc`."""
    return run_desk("tor-config", "--out", str(data.parent / "torrc"), *args, data_dir=data)


def install_tor_dir(data: Path) -> Path:
    """A tor directory where install.sh keeps it: outside the desk's data directory, in a
    folder of its own (/var/lib/tor-instances/desk), given with --tor-dir."""
    return data.parent / "tor-instances" / "desk"


def printed_key(result: subprocess.CompletedProcess[str]) -> str:
    """The private client key a run of tor-config printed on a line of its own."""
    keys = re.findall(r"(?m)^  ([A-Z2-7]{52})$", result.stdout)
    assert len(keys) == 1, result.stdout
    return keys[0]


def refusal(link: Path) -> list[str]:
    """What tor-config says, and all it says on stderr, when it meets `link` in tor's
    directory."""
    return [f"desk: {link} is a symbolic link: tor-config follows no link in tor's directory; "
            "remove it (if you did not make it, something else wrote there) and run this again"]


def torrc_options(torrc: Path) -> list[tuple[str, str]]:
    """The (option, value) lines of a torrc, in order."""
    options = []
    for line in torrc.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            option, _, value = line.strip().partition(" ")
            options.append((option, value))
    return options


def service_blocks(torrc: Path) -> dict[str, list[tuple[str, str]]]:
    """Each HiddenServiceDir's options, by its directory's last name."""
    blocks: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for option, value in torrc_options(torrc):
        if option == "HiddenServiceDir":
            current = blocks.setdefault(Path(value.strip('"')).name, [])
        elif current is not None:
            current.append((option, value))
    return blocks


def key_from_file(path: Path) -> str:
    """The base32 key in a `descriptor:x25519:KEY` file."""
    match = KEY_LINE_RE.match(path.read_text().strip())
    assert match, f"{path} is not a descriptor:x25519 line"
    return match.group(1)


def public_of(private_base32: str) -> str:
    """The base32 x25519 public key that belongs to a base32 private key."""
    private = X25519PrivateKey.from_private_bytes(base64.b32decode(private_base32 + "===="))
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b32encode(raw).decode().rstrip("=")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An empty desk data directory (tor-config needs no initialised desk)."""
    path = tmp_path / "desk data"  # a space, so paths in the torrc must be quoted
    path.mkdir(mode=0o700)
    return path


def start_offline_tor(tor: str, torrc: Path, log: Path) -> subprocess.Popen[bytes]:
    """tor with `torrc` and no network at all: it still makes its keys and hostname files."""
    with log.open("wb") as out:
        return subprocess.Popen([tor, "-f", str(torrc), "--DisableNetwork", "1"],
                                stdout=out, stderr=subprocess.STDOUT)


def wait_for(paths: list[Path], process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until every path exists and is not empty."""
    deadline = time.monotonic() + TIMEOUT
    while not all(path.is_file() and path.stat().st_size for path in paths):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"tor wrote no hostname files:\n{log.read_text()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a child process and wait for it."""
    process.terminate()
    try:
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=TIMEOUT)


# The torrc and the journalists' client key


@pytest.mark.parametrize("ports", [(), ("--front-port", "9080", "--journalist-port", "9081"),
                                   ("--journalist-socket", "{data}/run dir/journalist.sock")])
def test_tor_accepts_the_generated_torrc_as_it_is(data: Path, ports: tuple[str, ...]) -> None:
    tor = require("tor", "tor")
    result = tor_config(data, *(arg.format(data=data) for arg in ports))
    assert result.returncode == 0, result.stderr
    torrc = data.parent / "torrc"

    check = subprocess.run([tor, "--verify-config", "-f", str(torrc)], capture_output=True,
                           text=True, timeout=TIMEOUT, check=False)

    assert check.returncode == 0, check.stdout
    assert "Configuration was valid" in check.stdout


@pytest.mark.skipif(not INSTANCE_DEFAULTS.is_file(), reason="not Debian's tor package")
def test_torrc_overrides_debians_instance_defaults(data: Path, tmp_path: Path) -> None:
    """tor@desk.service reads Debian's defaults first; ours must win and still verify."""
    tor = require("tor", "tor")
    assert tor_config(data).returncode == 0
    # As tor@desk would, but as this user (the instance's user does not exist here).
    defaults = tmp_path / "defaults"
    defaults.write_text(re.sub(
        r"(?m)^User .*$", f"User {pwd.getpwuid(os.getuid()).pw_name}",
        INSTANCE_DEFAULTS.read_text().replace("@@NAME@@", "desk")))

    check = subprocess.run(
        [tor, "--verify-config", "--defaults-torrc", str(defaults),
         "-f", str(data.parent / "torrc")],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)

    assert check.returncode == 0, check.stdout


def test_torrc_has_the_required_options(data: Path) -> None:
    assert tor_config(data, "--front-port", "9080", "--journalist-port", "9081").returncode == 0
    torrc = data.parent / "torrc"
    options = dict(torrc_options(torrc)[:6])
    blocks = service_blocks(torrc)

    assert options == {"DataDirectory": f'"{data / "tor"}"', "SocksPort": "0",
                       "ControlPort": "0", "ControlSocket": "0", "SafeLogging": "1",
                       "Log": "notice stdout"}
    assert ("HiddenServicePort", "80 127.0.0.1:9080") in blocks["source"]
    assert ("HiddenServiceExportCircuitID", "haproxy") in blocks["source"]
    assert ("HiddenServicePoWDefensesEnabled", "1") in blocks["source"]
    assert ("HiddenServicePort", "80 127.0.0.1:9081") in blocks["journalist"]
    # Only the front reads PROXY lines; the journalist interface would take one as a request.
    assert "HiddenServiceExportCircuitID" not in dict(blocks["journalist"])
    assert stat.S_IMODE(torrc.stat().st_mode) == 0o644


def test_default_ports_match_desk_serve_and_the_front(data: Path, tmp_path: Path) -> None:
    assert tor_config(data).returncode == 0
    blocks = service_blocks(data.parent / "torrc")
    front = tmp_path / "front.cfg"
    assert run_desk("front-config", "--out", str(front), data_dir=data).returncode == 0
    config = front.read_text()

    assert ("HiddenServicePort", f"80 127.0.0.1:{FRONT_PORT}") in blocks["source"]
    assert f"bind 127.0.0.1:{FRONT_PORT} accept-proxy" in config
    assert f"server desk 127.0.0.1:{DEFAULT_PORTS['source']} " in config
    assert (("HiddenServicePort", f"80 127.0.0.1:{DEFAULT_PORTS['journalist']}")
            in blocks["journalist"])


def test_tor_config_says_where_the_addresses_will_appear(data: Path) -> None:
    result = tor_config(data)

    assert result.returncode == 0, result.stderr
    for service in ("source", "journalist"):
        assert f"{data / 'tor' / service / 'hostname'} once tor has started" in result.stdout
    assert f"DESK_DATA='{data}' desk tor-config --out" in result.stdout  # to print the addresses


def test_journalist_auth_file_holds_the_public_half_of_the_saved_key(data: Path) -> None:
    assert tor_config(data).returncode == 0
    auth = data / "tor" / "journalist" / "authorized_clients" / "journalist.auth"
    saved = data / "tor" / "journalist.client_key"

    assert public_of(key_from_file(saved)) == key_from_file(auth)
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth.parent.stat().st_mode) == 0o700


def test_the_run_that_makes_the_key_prints_it(data: Path) -> None:
    result = tor_config(data)

    assert result.returncode == 0, result.stderr
    key = printed_key(result)
    assert key == key_from_file(data / "tor" / "journalist.client_key")
    auth = data / "tor" / "journalist" / "authorized_clients" / "journalist.auth"
    assert public_of(key) == key_from_file(auth)
    assert f"It is kept in {data / 'tor' / 'journalist.client_key'}: delete that file once " \
           "every journalist has the key." in result.stdout


def test_printed_key_line_matches_the_auth_file(data: Path) -> None:
    """When tor has already written the address, the run that makes the key prints the whole
    line a Tor client takes."""
    address = "a" * 55 + "d"
    journalist = data / "tor" / "journalist"
    journalist.mkdir(parents=True, mode=0o700)
    (journalist / "hostname").write_text(f"{address}.onion\n")

    result = tor_config(data)

    match = CLIENT_LINE_RE.search(result.stdout)
    assert match, result.stdout
    assert match.group(1) == address
    auth = data / "tor" / "journalist" / "authorized_clients" / "journalist.auth"
    assert public_of(match.group(2)) == key_from_file(auth)
    assert "Journalists' client key line, for each journalist's Tor Browser or " \
           "ClientOnionAuthDir (keep it secret):" in result.stdout
    assert "Tor Browser's prompt on the journalist address asks only for the last part: " \
           f"{match.group(2)}" in result.stdout


@pytest.mark.parametrize("address_known", [False, True])
def test_later_runs_never_print_the_key_and_say_where_it_is(data: Path,
                                                            address_known: bool) -> None:
    first = tor_config(data)
    key = printed_key(first)
    if address_known:
        (data / "tor" / "journalist" / "hostname").write_text("a" * 55 + "d.onion\n")

    again = tor_config(data)

    assert again.returncode == 0, again.stderr
    assert key not in again.stdout + again.stderr
    assert not CLIENT_LINE_RE.search(again.stdout)
    saved = data / "tor" / "journalist.client_key"
    assert [line for line in again.stdout.splitlines() if "client key" in line] == [
        f"The journalists' client key was made by an earlier run and is not printed again: it "
        f"is in {saved}; delete that file once the key is in every journalist's Tor Browser."]
    assert key_from_file(saved) == key


def test_running_tor_config_again_keeps_the_keys(data: Path) -> None:
    assert tor_config(data).returncode == 0
    files = [data / "tor" / "journalist" / "authorized_clients" / "journalist.auth",
             data / "tor" / "journalist.client_key", data.parent / "torrc"]
    first = [path.read_bytes() for path in files]

    again = tor_config(data)

    assert again.returncode == 0, again.stderr
    assert [path.read_bytes() for path in files] == first
    assert "Made the journalists' client key" not in again.stdout


def test_deleted_private_key_keeps_the_public_half_and_says_so(data: Path) -> None:
    assert tor_config(data).returncode == 0
    auth = data / "tor" / "journalist" / "authorized_clients" / "journalist.auth"
    before = auth.read_bytes()
    saved = data / "tor" / "journalist.client_key"
    saved.unlink()

    again = tor_config(data)

    assert again.returncode == 0, again.stderr
    assert auth.read_bytes() == before
    assert not saved.exists()
    assert [line for line in again.stdout.splitlines() if "client key" in line] == [
        f"The journalists' client key was made by an earlier run and its private half is no "
        f"longer on this server ({saved}): to make a new one, run this again with "
        "--new-client-key and reload tor."]


@pytest.mark.parametrize("private_kept", [True, False])
def test_new_client_key_replaces_both_halves_and_prints_the_new_key_once(
        data: Path, private_kept: bool) -> None:
    old = printed_key(tor_config(data))
    address = "a" * 55 + "d"
    (data / "tor" / "journalist" / "hostname").write_text(f"{address}.onion\n")
    auth = data / "tor" / "journalist" / "authorized_clients" / "journalist.auth"
    saved = data / "tor" / "journalist.client_key"
    if not private_kept:
        saved.unlink()

    renewed = tor_config(data, "--new-client-key")

    assert renewed.returncode == 0, renewed.stderr
    match = CLIENT_LINE_RE.search(renewed.stdout)
    assert match, renewed.stdout
    new = match.group(2)
    assert match.group(1) == address
    assert new != old
    assert old not in renewed.stdout
    assert key_from_file(saved) == new
    assert public_of(new) == key_from_file(auth)
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert f"Made a new journalists' client key: tor reads its public half from {auth} when " \
           "it starts or reloads, and from then on the earlier key no longer opens the " \
           "journalist address." in renewed.stdout

    again = tor_config(data)

    assert again.returncode == 0, again.stderr
    assert new not in again.stdout + again.stderr
    assert key_from_file(saved) == new


def test_a_damaged_auth_file_is_refused_not_replaced(data: Path) -> None:
    assert tor_config(data).returncode == 0
    auth = data / "tor" / "journalist" / "authorized_clients" / "journalist.auth"
    auth.write_text("descriptor:x25519:NOTAKEY\n")

    again = tor_config(data)

    assert again.returncode == 1
    assert "journalist.auth is not a" in again.stderr
    assert auth.read_text() == "descriptor:x25519:NOTAKEY\n"


# Where a tor user that was broken into could plant a symbolic link before install.sh runs
# `desk tor-config` again as root, relative to the tor directory ("" is the tor directory
# itself), and whether it points at a folder or a file.
PLANTED_LINKS = [
    ("", "folder"),
    ("journalist", "folder"),
    ("journalist/authorized_clients", "folder"),
    ("source", "folder"),
    ("journalist.client_key", "file"),
    ("journalist/authorized_clients/journalist.auth", "file"),
    ("journalist/hostname", "file"),
    ("source/hostname", "file"),
]


def snapshot(path: Path) -> list[tuple[str, int, bytes | None]]:
    """Every name under `path` (itself included) with its mode and, for files, contents."""
    return [(str(entry.relative_to(path)), entry.lstat().st_mode,
             entry.read_bytes() if entry.is_file() else None)
            for entry in sorted([path, *path.rglob("*")])]


# How tor-config is run: with the tor directory in the desk's data directory (as for `make
# run`), outside it as install.sh keeps it, and so asked for a new client key.
RUNS = [(False, ()), (True, ()), (True, ("--new-client-key",))]


@pytest.mark.parametrize(("elsewhere", "options"), RUNS)
@pytest.mark.parametrize(("where", "kind"), PLANTED_LINKS)
def test_tor_config_refuses_a_symbolic_link_in_tors_directory(
        data: Path, tmp_path: Path, where: str, kind: str, elsewhere: bool,
        options: tuple[str, ...]) -> None:
    tor_dir = data / "tor"
    tor_dir_option: tuple[str, ...] = ()
    if elsewhere:
        tor_dir = install_tor_dir(data)
        tor_dir.parent.mkdir(mode=0o755)
        tor_dir_option = ("--tor-dir", str(tor_dir))
    assert tor_config(data, *tor_dir_option).returncode == 0
    (tor_dir / "source").mkdir(mode=0o700)  # as tor makes them when it first starts
    for service in ("source", "journalist"):
        (tor_dir / service / "hostname").write_text("a" * 55 + "d.onion\n")
    victim = tmp_path / "victim"  # anything root can change: /, /etc, /etc/shadow
    victim.mkdir(mode=0o755)
    (victim / "hostname").write_text("b" * 55 + "d.onion\n")
    (victim / "notes").write_text("not tor's\n")
    target = victim if kind == "folder" else victim / "hostname"
    link = tor_dir / where if where else tor_dir
    if link.is_dir():
        shutil.rmtree(link)
    else:
        link.unlink()
    link.symlink_to(target)
    before = snapshot(victim)

    result = tor_config(data, *tor_dir_option, *options)

    assert result.returncode == 1, result.stdout
    assert result.stderr.splitlines() == refusal(link)
    assert "b" * 55 not in result.stdout
    assert snapshot(victim) == before
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755


def test_tor_config_as_install_runs_it_leaves_a_linked_folder_alone(data: Path,
                                                                    tmp_path: Path) -> None:
    """tor's user replaced journalist/ with a link to a folder that is not its own; root, running
    tor-config for install.sh, must neither make that folder private nor put the key in it."""
    tor_dir = install_tor_dir(data)
    tor_dir.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim"
    victim.mkdir()
    victim.chmod(0o755)
    (tor_dir / "journalist").symlink_to(victim)
    torrc = tmp_path / "torrc"

    result = run_desk("tor-config", "--out", str(torrc), "--tor-dir", str(tor_dir),
                      "--journalist-socket", str(tmp_path / "journalist.sock"), data_dir=data)

    assert result.returncode == 1, result.stdout
    assert result.stderr.splitlines() == refusal(tor_dir / "journalist")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert list(victim.iterdir()) == []
    assert sorted(path.name for path in tor_dir.iterdir()) == ["journalist"]
    assert not torrc.exists()


def test_tor_config_writes_no_torrc_through_a_link(data: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("not a torrc\n")
    victim.chmod(0o600)
    torrc = tmp_path / "torrc"
    torrc.symlink_to(victim)

    result = run_desk("tor-config", "--out", str(torrc), data_dir=data)

    assert result.returncode == 1, result.stdout
    assert result.stderr.splitlines() == [
        f"desk: {torrc} is a symbolic link: tor-config writes no torrc through a link; give "
        "--out the path of the file itself"]
    assert torrc.is_symlink()
    assert victim.read_text() == "not a torrc\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (data / "tor").exists()


def test_tor_runs_the_services_and_takes_both_halves_of_the_key(data: Path,
                                                                tmp_path: Path) -> None:
    """Offline tor reads the config and the auth file, and a Tor client the line made of the
    printed key and the address, as the first run says."""
    tor = require("tor", "tor")
    first = tor_config(data)
    key = printed_key(first)
    assert "A ClientOnionAuthDir takes the line ADDRESS:descriptor:x25519:" \
           f"{key}, ADDRESS being the journalist address without .onion." in first.stdout
    log = tmp_path / "tor.log"
    process = start_offline_tor(tor, data.parent / "torrc", log)
    hostnames = [data / "tor" / service / "hostname" for service in ("source", "journalist")]
    try:
        wait_for(hostnames, process, log)
    finally:
        stop(process)
    assert "Client authorization" not in log.read_text()

    result = tor_config(data)

    for hostname in hostnames:
        assert hostname.read_text().strip() in result.stdout
    address = hostnames[1].read_text().strip().removesuffix(".onion")
    # A Tor client parses its ClientOnionAuthDir while it checks its configuration.
    client = tmp_path / "client"
    (client / "auth").mkdir(parents=True, mode=0o700)
    (client / "auth" / "desk.auth_private").write_text(
        f"{address}:descriptor:x25519:{key}\n")
    (client / "torrc").write_text("")
    check = subprocess.run(
        [tor, "--verify-config", "-f", str(client / "torrc"), "--DataDirectory",
         str(client / "data"), "--SocksPort", "0", "--ClientOnionAuthDir", str(client / "auth")],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert check.returncode == 0, check.stdout
    assert "Client authorization" not in check.stdout


def test_journalist_onion_leads_to_the_socket_when_there_is_one(data: Path) -> None:
    socket = data / "run" / "journalist.sock"
    result = tor_config(data, "--journalist-socket", str(socket))
    assert result.returncode == 0, result.stderr
    blocks = service_blocks(data.parent / "torrc")

    assert ("HiddenServicePort", f'80 unix:"{socket}"') in blocks["journalist"]
    assert not any(value.startswith("80 127.0.0.1") for option, value in blocks["journalist"]
                   if option == "HiddenServicePort")
    assert ("HiddenServicePort", f"80 127.0.0.1:{FRONT_PORT}") in blocks["source"]


def test_torrc_example_is_what_install_writes() -> None:
    script = (DEPLOY / "install.sh").read_text()
    constants = dict(re.findall(r"(?m)^readonly (\w+)=(\S+)", script))
    layout = OnionLayout(Path("/var/lib/tor-instances/desk"), FRONT_PORT,
                         DEFAULT_PORTS["journalist"], Path(constants["JOURNALIST_SOCKET"]))

    assert (DEPLOY / "torrc.example").read_text() == render_torrc(layout, Path("/var/lib/desk"))


# The front


def write_front(data: Path, out: Path, *args: str) -> str:
    """`desk front-config` to `out`; its text."""
    result = run_desk("front-config", "--out", str(out), *args, data_dir=data)
    assert result.returncode == 0, result.stderr
    return out.read_text()


def test_haproxy_accepts_the_generated_front_config(data: Path, tmp_path: Path) -> None:
    binary = require_haproxy()
    out = tmp_path / "front.cfg"
    write_front(data, out)

    check = subprocess.run([binary, "-c", "-f", str(out)], capture_output=True, text=True,
                           timeout=TIMEOUT, check=False)

    assert check.returncode == 0, check.stdout + check.stderr
    assert "Configuration file is valid" in check.stdout
    assert "WARNING" not in check.stdout + check.stderr


def test_front_keeps_no_log_and_passes_on_no_address(data: Path, tmp_path: Path) -> None:
    lines = [line.strip() for line in write_front(data, tmp_path / "f").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    directives = [line.split()[0] for line in lines]

    assert "log" not in directives
    assert "option" in directives
    for passes_an_address in ("forwardfor", "send-proxy", "X-Forwarded", "originalto"):
        assert all(passes_an_address not in line for line in lines)


def test_front_config_refuses_one_port_for_both(data: Path, tmp_path: Path) -> None:
    result = run_desk("front-config", "--out", str(tmp_path / "f"), "--port", "9000",
                      "--source-port", "9000", data_dir=data)

    assert result.returncode == 1
    assert result.stderr.startswith("desk: ")
    assert "different ports" in result.stderr
    assert not (tmp_path / "f").exists()


def raw_exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send `data` on `sock` and read until the other side closes (or resets) it."""
    sock.sendall(data)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return out


def test_front_serves_the_desk_per_circuit_and_refuses_with_the_desks_page(
        desk: Services, server: Server, tmp_path: Path) -> None:
    require_haproxy()
    with running_front(desk.config.data_dir, tmp_path / "front", server.port) as front:
        page = raw_exchange(circuit_socket(front.port, 1),
                            b"GET / HTTP/1.1\r\nHost: desk.onion\r\nConnection: close\r\n\r\n")
        refused = raw_exchange(circuit_socket(front.port, 2), b"NOT A REQUEST\r\n\r\n")
        # One circuit sends at most CIRCUIT_REQUESTS requests in REQUEST_WINDOW seconds.
        answers = [raw_exchange(circuit_socket(front.port, 5),
                                b"GET /static/desk.css HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")
                   for _ in range(CIRCUIT_REQUESTS + 1)]
        # A stream tor did not open (no PROXY line) gets nothing at all.
        plain = socket.create_connection(("127.0.0.1", front.port), timeout=TIMEOUT)
        unannounced = raw_exchange(plain, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # One circuit holds at most CIRCUIT_CONNECTIONS streams; another still gets in.
        held = [circuit_socket(front.port, 3) for _ in range(CIRCUIT_CONNECTIONS)]
        for sock in held:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        # Each held stream counts once the front has read its PROXY line; on a busy machine
        # that can come after the next stream's, so let the front read them all first.
        time.sleep(1)
        one_too_many = raw_exchange(circuit_socket(front.port, 3),
                                    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        other = raw_exchange(circuit_socket(front.port, 4),
                             b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for sock in held:
            sock.close()

    assert page.startswith(b"HTTP/1.1 200 "), page[:200]
    assert b"Content-Security-Policy" in page or b"content-security-policy" in page
    # HAProxy 2.6 answers a request it cannot parse with its own short page, whatever the
    # configuration says; it names nothing.
    assert refused.startswith(b"HTTP/1.1 400 "), refused[:200]
    assert b"haproxy" not in refused.lower()
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers[:CIRCUIT_REQUESTS])
    over = answers[-1]
    assert over.startswith(b"HTTP/1.1 429 "), over[:200]
    assert b"This request could not be read, so nothing was kept." in over
    assert b"content-security-policy: default-src 'none'" in over.lower()
    assert b"haproxy" not in over.lower()
    assert unannounced == b""
    assert one_too_many == b""
    assert other.startswith(b"HTTP/1.1 200 "), other[:200]


def test_front_runs_under_memory_deny_write_execute(
        desk: Services, server: Server, tmp_path: Path) -> None:
    """desk-front.service sets MemoryDenyWriteExecute=yes too: HAProxy must live with it."""
    require_haproxy()
    try:
        with running_front(desk.config.data_dir, tmp_path / "front", server.port,
                           prefix=(sys.executable, "-c", MDWE_WRAPPER)) as front:
            page = raw_exchange(
                circuit_socket(front.port, 1),
                b"GET / HTTP/1.1\r\nHost: desk.onion\r\nConnection: close\r\n\r\n")
    except StartFailed as failed:
        if failed.returncode == 77:
            pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 and later)")
        raise

    assert page.startswith(b"HTTP/1.1 200 "), page[:200]


# gunicorn


def test_gunicorn_reads_the_desk_settings_from_deploy_conf(empty_desk: Services) -> None:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    env = {**os.environ, "DESK_DATA": str(empty_desk.config.data_dir)}

    result = subprocess.run(
        [str(gunicorn), "-c", str(DEPLOY / "gunicorn.conf.py"), "--print-config",
         "desk.ops.serve:interface_app('source')"],
        capture_output=True, text=True, env=env, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    settings = dict(re.findall(r"(?m)^(\w+)\s+= (.*)$", result.stdout))
    assert settings["worker_class"] == "desk.ops.worker.DeskWorker"
    assert settings["worker_connections"] == str(GUNICORN_SETTINGS["worker_connections"])
    assert int(settings["threads"]) >= 32
    assert int(settings["timeout"]) >= 120
    assert settings["max_requests"] == "0"
    assert settings["accesslog"] == "None"
    assert settings["forwarded_allow_ips"] == "[]"
    assert settings["proxy_allow_ips"] == "[]"
    assert settings["bind"] == "['127.0.0.1:8080']"
    assert "RequestFreeLogger" in settings["logger_class"]
    for name in ("workers", "threads", "timeout", "graceful_timeout", "keepalive"):
        assert settings[name] == str(GUNICORN_SETTINGS[name]), name


def test_responses_carry_no_server_header(server: Server) -> None:
    for path in ("/", "/no-such-page"):
        response = requests.get(server.url + path, timeout=TIMEOUT)

        assert "Server" not in response.headers, (path, response.headers)


def send_raw(server: Server, data: bytes) -> bytes:
    """Send `data` on a new connection and return the start of the answer."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        return sock.recv(200)


def test_error_log_quotes_no_request(server: Server) -> None:
    markers = [b"LINEMARKER", b"HEADERMARKER", b"CHUNKMARKER"]
    answers = [
        send_raw(server, b"GET /LINEMARKER\x01 HTTP/1.1\r\nHost: desk\r\n\r\n"),
        send_raw(server, b"GET / HTTP/1.1\r\nHost: desk\r\nX-Note: HEADERMARKER\x01\r\n\r\n"),
        send_raw(server, b"POST /submit HTTP/1.1\r\nHost: desk\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\nCHUNKMARKER\r\n"),
    ]
    deadline = time.monotonic() + TIMEOUT
    while server.log.read_text().count("[WARNING]") < 2:  # one for each malformed request
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)

    assert [answer.split(b"\r\n")[0] for answer in answers[:2]] == [b"HTTP/1.1 400 Bad Request"] * 2
    log = server.log.read_bytes()
    for marker in markers:
        assert marker not in log
    assert log.count(b"Refused a malformed request") == 2


def test_desk_serves_and_encrypts_with_memory_deny_write_execute(
        desk: Services, journalist: Keypair, tmp_path: Path) -> None:
    """The units set MemoryDenyWriteExecute=yes: the desk, gpg and the KDF must live with it."""
    # PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN) is the kernel's own form of the same rule; it
    # passes to every child, gpg included.
    try:
        served = start_server(desk.config.data_dir, log=tmp_path / "server.log",
                              prefix=(sys.executable, "-c", MDWE_WRAPPER), timeout=TIMEOUT)
    except StartFailed as failed:
        if failed.returncode == 77:
            pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 and later)")
        raise
    try:
        browser = HttpBrowser.with_codename(served.url)
        body = (FormBody().field("csrf_token", browser.form_token())
                .field("message", "Moved at dawn.").file("clip.mp4", os.urandom(4096)))
        sent = browser.post(body)
    finally:
        served.stop(timeout=TIMEOUT)

    assert sent.status_code == 200, served.log_tail()
    plaintexts = [obj.plaintext for obj in read_objects(desk.config, journalist)]
    assert len(plaintexts) == 2
    assert b"Moved at dawn." in plaintexts


# systemd units


def unit_settings(path: Path) -> list[tuple[str, str]]:
    """A unit file's (key, value) lines, in order."""
    settings = []
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.append((key, value))
    return settings


def hardening(path: Path) -> str:
    """The shared hardening block of a service unit."""
    text = path.read_text()
    start = text.index("# --- hardening")
    return text[start:text.index("# --- end of hardening ---", start)]


@pytest.fixture
def rendered_units(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this checkout's `desk`, as systemd needs it to exist."""
    target = tmp_path / "units"
    target.mkdir()
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/desk/bin/desk", DESK_COMMAND)
        (target / unit.name).write_text(text.replace("/usr/sbin/haproxy", require_haproxy()))
    return target


SERVICE_UNITS = sorted(path.name for path in UNITS.glob("*.service"))
INSTANCES = ["desk@source.service", "desk@journalist.service",
             *(name for name in SERVICE_UNITS if "@" not in name),
             *sorted(path.name for path in UNITS.glob("*.timer")),
             *sorted(path.name for path in UNITS.glob("*.socket"))]


def test_systemd_accepts_the_units(rendered_units: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")

    paths = [str(rendered_units / name) for name in INSTANCES]

    result = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True,
                            timeout=60, check=False, cwd=rendered_units)

    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines()
                  if str(rendered_units) in line or "desk" in line]
    assert complaints == []


def test_units_are_hardened_enough_for_systemd(rendered_units: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    for name in ("desk@source.service", "desk-front.service", "desk-purge.service",
                 "desk-keys-check.service"):
        # Exposure 1.5 of 10 at most ("OK"; 10 is a service with no sandboxing at all).
        result = subprocess.run(
            [analyze, "security", "--offline=yes", "--threshold=15", str(rendered_units / name)],
            capture_output=True, text=True, timeout=60, check=False, cwd=rendered_units)

        assert result.returncode == 0, result.stdout[-2000:]


REQUIRED_HARDENING = {
    "User": "desk", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/desk",
    "PrivateTmp": "yes", "NoNewPrivileges": "yes", "ProtectHome": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictNamespaces": "yes",
    "SystemCallFilter": "@system-service", "CapabilityBoundingSet": "", "UMask": "0077",
    "LimitCORE": "0", "MemorySwapMax": "0", "Environment": "DESK_DATA=/var/lib/desk",
}


# The front reads whatever clients send: it runs as a user of its own, not as the desk.
FRONT_UNIT = "desk-front.service"
AS_THE_DESK = ("User", "Environment")


@pytest.mark.parametrize("name", SERVICE_UNITS)
def test_every_service_unit_has_the_same_hardening(name: str) -> None:
    settings = dict(unit_settings(UNITS / name))
    required = {key: value for key, value in REQUIRED_HARDENING.items()
                if name != FRONT_UNIT or key not in AS_THE_DESK}

    assert {key: settings.get(key) for key in required} == required
    assert hardening(UNITS / name) == hardening(UNITS / "desk@.service")
    if name == FRONT_UNIT:
        assert settings["DynamicUser"] == "yes"
        assert "User" not in settings


@pytest.mark.parametrize("name", SERVICE_UNITS)
def test_every_service_unit_has_descriptors_for_its_connections(name: str) -> None:
    """Section 2 of the second review: the unit set no LimitNOFILE (1024), while gunicorn
    took 1,000 connections per worker and each upload needs more descriptors on top."""
    limit = int(dict(unit_settings(UNITS / name))["LimitNOFILE"])

    wanted = GUNICORN_SETTINGS["worker_connections"]
    assert connection_budget(limit, GUNICORN_SETTINGS["threads"], wanted) == wanted
    assert limit >= 2 * FRONT_CONNECTIONS + 100  # the front: two per connection, and its own


def test_units_and_install_script_agree_on_paths() -> None:
    script = (DEPLOY / "install.sh").read_text()
    constants = dict(re.findall(r"(?m)^readonly (\w+)=(\S+)", script))

    assert constants["PREFIX"] == "/opt/desk"
    assert constants["DATA"] == "/var/lib/desk"
    for name in SERVICE_UNITS:
        settings = unit_settings(UNITS / name)
        commands = [value for key, value in settings if key.startswith("Exec")]
        desk_commands = [c for c in commands if c.startswith(f"{constants['PREFIX']}/bin/desk ")]
        assert desk_commands, name
        assert dict(settings)["ReadWritePaths"] == constants["DATA"], name
    front = unit_settings(UNITS / FRONT_UNIT)
    assert ("ExecStartPre", "/opt/desk/bin/desk front-config --out /run/desk-front/haproxy.cfg"
            ) in front
    assert FRONT_UNIT in script
    socket = dict(unit_settings(UNITS / "desk@journalist.socket"))
    assert socket["ListenStream"] == constants["JOURNALIST_SOCKET"]
    assert (socket["SocketUser"], socket["SocketGroup"], socket["SocketMode"]) == (
        constants["DESK_USER"], constants["TOR_USER"].replace("$TOR_INSTANCE",
                                                              constants["TOR_INSTANCE"]), "0660")
    assert socket["RequiredBy"] == "desk@journalist.service"


# The install script


SCRIPTS = ["install.sh", "build-release.sh", "console-wheelhouse.sh", "console-install.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_install_script_is_valid_bash(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(DEPLOY / script)], capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_install_script_passes_shellcheck(script: str) -> None:
    shellcheck = require("shellcheck", "shellcheck")

    result = subprocess.run([shellcheck, str(DEPLOY / script)], capture_output=True,
                            text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stdout


def test_install_builds_the_release_before_it_stops_the_desk() -> None:
    script = (DEPLOY / "install.sh").read_text()
    build = script.index('"$REPO/deploy/build-release.sh" "$next" server')
    first_stop = script.index("\nstop_desk\n")
    assert build < first_stop
    assert "pip install" not in script  # every install goes through build-release.sh
    stop = script[script.index("stop_desk() {"):script.index("start_desk() {")]
    for unit in ("desk-purge.timer", "desk-keys-check.timer", "desk@source.service",
                 "desk@journalist.socket", "desk-front.service"):
        assert unit in stop, unit
