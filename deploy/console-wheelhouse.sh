#!/usr/bin/env bash
# On a machine with a network: gather everything the offline review console installs, checked
# against the lock, into one folder to carry across the air gap:
#
#   deploy/console-wheelhouse.sh DIRECTORY
#
# DIRECTORY gets the wheels of requirements/console.txt (each checked against its SHA-256 in the
# lock as it downloads; wheels only, nothing to build on the offline machine, and no flask,
# gunicorn or alembic), the desk's own wheel built from this checkout, `requirements.txt` (the
# lock plus the desk wheel's hash), and `SHA256SUMS` of every file. The wheels are for this
# machine's Python and platform; build on the same Debian release and architecture as the
# offline machine. deploy/console-install.sh installs from the folder with no network.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
readonly PYTHON=${DESK_PYTHON:-python3}

die() { printf 'desk-wheelhouse: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 DIRECTORY"
out=$1
[[ ! -e $out ]] || die "$out exists already; give a new folder"
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The wheels of the lock, each checked against its hash by pip as it arrives.
"$PYTHON" -m pip download --quiet --disable-pip-version-check --require-hashes \
  --only-binary :all: --no-deps -r "$REPO/requirements/console.txt" -d "$out" \
  || die "downloading requirements/console.txt failed (above); nothing was kept in $out"
# The desk's own wheel, built with the locked build backend in a throwaway virtualenv.
"$PYTHON" -m venv "$work/build"
"$work/build/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
  --only-binary :all: --no-deps -r "$REPO/requirements/build.txt" \
  || die "installing the build backend from requirements/build.txt failed (above)"
"$work/build/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
  --no-build-isolation -w "$out" "$REPO" || die "building the desk's wheel failed (above)"

wheel=$(cd "$out" && ls desk-*.whl)
version=${wheel#desk-}
version=${version%%-*}
{
  grep -v '^\s*#' "$REPO/requirements/console.txt"
  printf 'desk==%s \\\n    --hash=sha256:%s\n' "$version" \
    "$(sha256sum "$out/$wheel" | cut -d' ' -f1)"
} >"$out/requirements.txt"
(cd "$out" && sha256sum -- *.whl requirements.txt >SHA256SUMS)
printf 'desk-wheelhouse: %s files in %s\n' "$(wc -l <"$out/SHA256SUMS")" "$out"
# The desk's own wheel is held only to SHA256SUMS: write this down and compare it on the
# offline machine, which prints the same line before it installs.
printf 'desk-wheelhouse: fingerprint of SHA256SUMS: %s\n' \
  "$(sha256sum "$out/SHA256SUMS" | cut -d' ' -f1)"
