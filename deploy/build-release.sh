#!/usr/bin/env bash
# Build one release of the desk into a new virtualenv, from this checkout and its lock only:
#
#   deploy/build-release.sh DIRECTORY [server|console]
#
# Every dependency comes from requirements/<set>.txt (exact versions, each file's SHA-256,
# wheels only: nothing is built from source), the installer and build backend from
# requirements/build.txt the same way, then the desk itself with no dependencies of its own and
# no build isolation. DIRECTORY must not exist yet. The release is checked before this returns:
# pip's own consistency check, and the entry point importing everything it needs. On any
# failure DIRECTORY is removed and the one line on stderr says which step failed; nothing else
# on the machine was touched, so deploy/install.sh runs this before it stops the running desk.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
readonly PYTHON=${DESK_PYTHON:-/usr/bin/python3}

die() { printf 'desk-build: %s\n' "$*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 DIRECTORY [server|console]"
target=$1
set_name=${2:-server}
case $set_name in
  server) entry=desk ;;
  console) entry=desk-review ;;
  *) die "unknown set '$set_name': server or console" ;;
esac
lock=$REPO/requirements/$set_name.txt
[[ -f $lock ]] || die "no lock $lock"
[[ ! -e $target ]] || die "$target exists already; a release is built into a new directory"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed() {
  rm -rf "$target"
  printf 'desk-build: %s failed; nothing was installed. pip said:\n' "$1" >&2
  tail -n 20 "$log" >&2
  exit 1
}

"$PYTHON" -m venv "$target" >"$log" 2>&1 || failed "creating the virtualenv $target"
pip=("$target/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --require-hashes --only-binary :all: --no-deps -r "$REPO/requirements/build.txt" \
  >"$log" 2>&1 || failed "installing pip and setuptools from requirements/build.txt"
"${pip[@]}" --require-hashes --only-binary :all: --no-deps -r "$lock" >"$log" 2>&1 \
  || failed "installing the dependencies from requirements/$set_name.txt"
"${pip[@]}" --no-deps --no-build-isolation "$REPO" >"$log" 2>&1 \
  || failed "building and installing the desk from $REPO"
"$target/bin/python" -m pip check >"$log" 2>&1 || failed "pip's check of the installed set"
"$target/bin/$entry" --help >"$log" 2>&1 || failed "running $entry --help"
printf 'desk-build: %s release ready in %s\n' "$set_name" "$target"
