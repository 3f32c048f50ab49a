#!/bin/sh
# Brings up the system programs the tests need (the list is test/system-packages.txt): runs before `npm test`
# (package.json "pretest") and from .ci/run. Nothing missing: silent. Missing and running as root with apt-get:
# one line saying what it installs, then `apt-get update` once and `apt-get install`. Otherwise it stops before
# any test runs and prints the exact command to run.
#   --check   only report (exit 1 with the command to run when something is missing); never installs.
# GPRXY_SYSTEM_PACKAGES=FILE reads another list (the tests of this script use it).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
list=${GPRXY_SYSTEM_PACKAGES:-$here/test/system-packages.txt}
mode=${1:-install}

missing_packages() {
  # Prints the packages whose program is not found, each once, space-separated.
  out=""
  while read -r program package _rest; do
    case "$program" in ''|'#'*) continue ;; esac
    if ! command -v "$program" >/dev/null 2>&1; then
      case " $out " in *" $package "*) ;; *) out="$out $package" ;; esac
    fi
  done <"$list"
  echo "${out# }"
}

need=$(missing_packages)
[ -z "$need" ] && exit 0

hint="apt-get update && apt-get install -y --no-install-recommends $need"
if [ "$mode" = "--check" ]; then
  echo "the tests need these system packages, which are missing: $need" >&2
  echo "run: npm test (as root it installs them), or: sudo sh -c '$hint'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "the tests need these Debian packages, which are missing: $need" >&2
  echo "this system has no apt-get: install the equivalent packages (programs listed in $list), then run npm test again" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "the tests need these system packages, which are missing: $need" >&2
  echo "run this, then npm test again: sudo sh -c '$hint'" >&2
  exit 1
fi

echo "npm test: installing missing system packages for the tests: $need (apt-get, once)"
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # $need is a list of package names
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $need; } >"$log" 2>&1; then
  tail -20 "$log" >&2
  rm -f "$log"
  echo "installing $need failed (output above); fix that, or run: $hint" >&2
  exit 1
fi
rm -f "$log"
still=$(missing_packages)
if [ -n "$still" ]; then
  echo "installed $need, but the programs of $still are still not found (PATH=$PATH); check test/system-packages.txt" >&2
  exit 1
fi
