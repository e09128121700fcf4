#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks start for real:
# prometheus (and promtool) for the monitoring tier, wrk as the load generator.
# Idempotent: does nothing when every command is already there.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
[ ${#need[@]} -gt 0 ] || exit 0

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-system-deps: missing ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
    exit 2
  fi
else
  SUDO=
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 2
fi
echo "install-system-deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq
# The package's service cannot start without systemd; the tests start their own server.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
