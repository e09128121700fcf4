#!/usr/bin/env bash
# Installs the Debian packages the tests, benchmarks and the local cluster need:
# prometheus (and promtool) for the monitoring tier, wrk as the load generator;
# for the local node (make up, tests/e2e): iptables (kube-proxy, kubelet, traffic
# guard), libseccomp-dev + pkg-config (runc is built with cgo and seccomp), gcc's
# static libc (the pause binary), mmdebstrap (the stand-in Python base image);
# the linter of the scripts under hack/ and .ci/ for `make lint` (shellcheck); and
# Lua 5.1, the Lua of Argo CD's health checks, to test gitops/argocd (lua5.1).
# Idempotent: does nothing when every command is already there.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ] || need+=(libc6-dev)
pkg-config --exists libseccomp 2>/dev/null || need+=(libseccomp-dev)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v lua5.1 >/dev/null 2>&1 || need+=(lua5.1)
# jq, to test the Argo CD ignoreDifferences (jqPathExpressions) in gitops/argocd.
command -v jq >/dev/null 2>&1 || need+=(jq)
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
# Wait for a concurrent apt/dpkg (another terminal) instead of failing on its lock.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# The package's service cannot start without systemd; the tests start their own server.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
