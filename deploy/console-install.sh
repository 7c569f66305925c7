#!/usr/bin/env bash
# On the air-gapped machine: install the review console from a folder made by
# deploy/console-wheelhouse.sh, with no network at all:
#
#   deploy/console-install.sh WHEELHOUSE [PREFIX]      # PREFIX: a new virtualenv, default
#                                                      # ~/.local/share/desk-review
#
# Every file is checked against the folder's SHA256SUMS first, then pip installs from the
# folder only (--no-index, and none of pip's configuration or environment, so no index or
# other folder is ever looked at), requiring each wheel's hash from the lock: a wheel that
# differs by one byte is refused and nothing is installed. Then `desk-review --help` runs.
# The console also needs gnupg, ffmpeg and libimage-exiftool-perl from Debian.
set -euo pipefail

readonly PYTHON=${DESK_PYTHON:-python3}

die() { printf 'desk-console-install: %s\n' "$*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 WHEELHOUSE [PREFIX]"
house=$(cd "$1" && pwd) || die "no folder $1"
prefix=${2:-$HOME/.local/share/desk-review}
[[ -f $house/SHA256SUMS && -f $house/requirements.txt ]] \
  || die "$house has no SHA256SUMS or requirements.txt: make it with deploy/console-wheelhouse.sh"
[[ ! -e $prefix ]] || die "$prefix exists already; give a new folder (or remove the old one)"

printf 'desk-console-install: fingerprint of SHA256SUMS: %s (compare it with the one written\n' \
  "$(sha256sum "$house/SHA256SUMS" | cut -d' ' -f1)"
printf 'desk-console-install: down where the folder was made)\n'
(cd "$house" && sha256sum --quiet --strict -c SHA256SUMS) \
  || die "a file in $house does not match SHA256SUMS (above); nothing was installed"

"$PYTHON" -m venv "$prefix" || die "python3 -m venv failed (apt-get install python3-venv)"
if ! env -i PATH=/usr/bin:/bin PIP_CONFIG_FILE=/dev/null HOME="$HOME" \
    "$prefix/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
    --find-links "$house" --require-hashes --only-binary :all: --no-deps \
    -r "$house/requirements.txt"; then
  rm -rf "$prefix"
  die "pip refused the wheelhouse (above); nothing was installed"
fi
"$prefix/bin/desk-review" --help >/dev/null || die "desk-review does not start (above)"
printf 'desk-console-install: the console is in %s; run %s/bin/desk-review\n' "$prefix" "$prefix"
