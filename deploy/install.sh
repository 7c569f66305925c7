#!/usr/bin/env bash
# Install or upgrade a desk on Debian 12 from this checkout:
#
#   sudo deploy/install.sh
#
# Safe to run again: it keeps the data directory, the onion services' keys and the journalists'
# client key, and restarts the desk only when its code or units changed. deploy/README.md says
# what it does and why.
set -euo pipefail

readonly PREFIX=/opt/desk                      # the running release (a symbolic link)
readonly RELEASES=/opt/desk-releases           # two virtualenvs: the running one, the next
readonly PYTHON=/usr/bin/python3               # Debian's, whatever else is on root's PATH
readonly DATA=/var/lib/desk                    # DESK_DATA, mode 0700, owned by DESK_USER
readonly DESK_USER=desk
readonly TOR_INSTANCE=desk                     # Debian's tor@desk.service
readonly TOR_USER=_tor-$TOR_INSTANCE
readonly TOR_DIR=/var/lib/tor-instances/$TOR_INSTANCE
readonly TORRC=/etc/tor/instances/$TOR_INSTANCE/torrc
readonly UNIT_DIR=/etc/systemd/system
readonly UNITS=(desk@journalist.socket desk@source.service desk@journalist.service
                desk-front.service desk-purge.timer desk-keys-check.timer)
# The journalist interface's Unix socket (desk@journalist.socket), open to tor's group only.
readonly JOURNALIST_SOCKET=/run/desk/journalist.sock
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO

# The virtualenv must be readable by the desk user; the desk sets its own files' modes.
umask 022
export DEBIAN_FRONTEND=noninteractive

say() { printf 'desk-install: %s\n' "$*"; }
die() { printf 'desk-install: %s\n' "$*" >&2; exit 1; }
as_desk() { (cd / && umask 077 && runuser -u "$DESK_USER" -- env HOME="$DATA" DESK_DATA="$DATA" "$@"); }


[[ $(id -u) -eq 0 ]] || die "run this as root: sudo $0"
[[ -d /run/systemd/system ]] || die "systemd is not running here; this script needs it"
# shellcheck source=/dev/null
. /etc/os-release
[[ ${ID:-} == debian && ${VERSION_ID:-} == 12 ]] \
  || say "warning: written for Debian 12, this is ${PRETTY_NAME:-unknown}; going on"

say "packages"
missing=()
command -v tor >/dev/null 2>&1 || missing+=(tor)
[[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
"$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
tor_was_installed=yes
[[ " ${missing[*]} " == *" tor "* ]] && tor_was_installed=no
haproxy_was_installed=yes
[[ " ${missing[*]} " == *" haproxy "* ]] && haproxy_was_installed=no
if ((${#missing[@]})); then
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi
# Debian starts a tor client (tor@default, SOCKS on 127.0.0.1:9050) when it installs tor. The
# desk's tor needs none, and a SOCKS port on loopback is a way out to the network for any local
# process, a compromised desk included. Stop it, unless it was here before us.
if [[ $tor_was_installed == no ]]; then
  systemctl stop tor@default.service
  systemctl mask tor@default.service
elif systemctl is-active --quiet tor@default.service; then
  say "warning: tor@default.service (Debian's tor client) is running; the desk does not need"
  say "it, and its SOCKS port lets local processes reach the network. If nothing else uses"
  say "it: systemctl mask --now tor@default.service"
fi

# Debian starts its own HAProxy (haproxy.service, /etc/haproxy/haproxy.cfg) when it installs
# it. The desk runs its front as desk-front.service with a configuration of its own; a second
# HAProxy would only be one more process reading what clients send. Stop it, unless it was
# here before us.
if [[ $haproxy_was_installed == no ]]; then
  systemctl stop haproxy.service
  systemctl mask haproxy.service
fi

say "user $DESK_USER and data directory $DATA"
if ! getent passwd "$DESK_USER" >/dev/null; then
  useradd --system --user-group --home-dir "$DATA" --no-create-home \
    --shell /usr/sbin/nologin --comment "desk" "$DESK_USER"
fi
install -d -m 0700 -o "$DESK_USER" -g "$DESK_USER" "$DATA"

say "the desk, in $PREFIX"
# The new release is built and checked beside the running one, from requirements/server.txt
# only (exact versions with their hashes, wheels only): if anything fails here, the desk goes
# on running as it was. A virtualenv cannot move, so releases alternate between two slots.
running=
if [[ -L $PREFIX ]]; then
  running=$(readlink -f "$PREFIX")
elif [[ -e $PREFIX ]]; then
  running=$PREFIX                              # installed before releases had slots
fi
next=$RELEASES/a
[[ $running == "$RELEASES/a" ]] && next=$RELEASES/b
install -d -m 0755 "$RELEASES"
rm -rf "$next"
DESK_PYTHON=$PYTHON "$REPO/deploy/build-release.sh" "$next" server \
  || die "the new release could not be built (above); the running desk was not touched"

# Switching releases and `desk init` (which may migrate the database) must not happen under
# running interfaces or timers. Stopping them cuts off an upload in progress; with JavaScript
# on, the source's browser resumes it. The socket too: a connection to it would start the
# journalist interface again.
stop_desk() {
  systemctl stop desk-purge.timer desk-keys-check.timer desk-purge.service \
    desk-keys-check.service desk-front.service desk@journalist.socket desk@source.service \
    desk@journalist.service 2>/dev/null || true
}
start_desk() {
  systemctl start desk@journalist.socket
  systemctl start desk@source.service desk@journalist.service
  systemctl restart desk-front.service
  systemctl start desk-purge.timer desk-keys-check.timer
}
point_at() { ln -sfn "$1" "$PREFIX.switch" && mv -T "$PREFIX.switch" "$PREFIX"; }
stop_desk
if [[ -n $running && ! -L $PREFIX ]]; then
  mv -T "$PREFIX" "$RELEASES/previous"        # the old layout's virtualenv, kept to go back to
  running=$RELEASES/previous
fi
point_at "$next"
if ! as_desk "$PREFIX/bin/desk" init; then
  if [[ -n $running ]]; then
    point_at "$running"
    start_desk
    die "desk init failed with the new release (above); the previous release is running again"
  fi
  die "desk init failed (above)"
fi

say "tor instance $TOR_INSTANCE"
getent passwd "$TOR_USER" >/dev/null || tor-instance-create "$TOR_INSTANCE"
install -d -m 0755 "$(dirname "$TORRC")"
tor_config() {
  DESK_DATA="$DATA" "$PREFIX/bin/desk" tor-config --out "$TORRC" --tor-dir "$TOR_DIR" \
    --journalist-socket "$JOURNALIST_SOCKET"
  # tor refuses onion service directories that are not its own.
  chown -R "$TOR_USER:$TOR_USER" "$TOR_DIR"
}
# On a new desk this run makes the journalists' client key and is the only one that prints
# its private half (tor-config never prints it again); it is shown at the end, after the
# addresses.
first_run=$(tor_config)

say "systemd units"
for unit in "$REPO"/deploy/systemd/*; do
  target=$UNIT_DIR/$(basename "$unit")
  if ! cmp -s "$unit" "$target"; then
    install -m 0644 "$unit" "$target"
  fi
done
systemctl daemon-reload
systemctl enable --quiet "${UNITS[@]}" tor.service
# The front writes its configuration from the installed desk each time it starts: the restart
# in start_desk picks up an upgrade.
start_desk
# Reloading (SIGHUP) keeps tor's circuits; it starts tor@desk if it is not running.
systemctl reload-or-restart tor@desk.service

say "waiting for tor to write the onion addresses"
for _ in $(seq 120); do
  [[ -s $TOR_DIR/source/hostname && -s $TOR_DIR/journalist/hostname ]] && break
  sleep 1
done
[[ -s $TOR_DIR/source/hostname && -s $TOR_DIR/journalist/hostname ]] \
  || die "tor wrote no onion addresses in 2 minutes: see journalctl -u tor@desk.service"

echo
# tor-config reads the addresses without following a link tor's user could plant; root does not
# read tor's files itself.
final_run=$(tor_config)
printf '%s\n' "$final_run"
if [[ $first_run == *"Made the journalists' client key"* ]]; then
  printf '%s\n' "$first_run" | sed -n "/^Made the journalists' client key/,/^It is kept in/p"
fi
journalist_address=$(printf '%s\n' "$final_run" \
  | sed -n 's/^Journalist interface: \([a-z2-7]\{56\}\.onion\)$/\1/p')
cat <<EOF

The desk is running. Next, add the journalists (their public keys only):

  sudo -u $DESK_USER DESK_DATA=$DATA $PREFIX/bin/desk journalist add NAME --key NAME.asc --admin \\
    --base-url http://$journalist_address

Each gets a one-time enrolment link: hand it over, and they choose their own passphrase and
two-factor with it. Check the keys with: sudo -u $DESK_USER DESK_DATA=$DATA $PREFIX/bin/desk keys check
EOF
if [[ -e $TOR_DIR/journalist.client_key ]]; then
  cat <<EOF
The journalists' client key is in $TOR_DIR/journalist.client_key (Tor Browser asks for the
part after the last colon): give it to each journalist over a safe channel, and once it is in
every journalist's Tor Browser delete that file: sudo rm $TOR_DIR/journalist.client_key
EOF
fi
