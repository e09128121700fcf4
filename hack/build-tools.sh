#!/usr/bin/env bash
# Builds the Kubernetes control plane and node binaries, etcd, kubectl, helm,
# kubeconform, the local node's runtime (containerd, runc, CNI plugins), CoreDNS and
# BuildKit (and on request the vegeta load generator for `make bench`, kind for
# `make e2e-kind`) from their Go modules at the versions pinned in hack/versions.env,
# into a cache outside the repository keyed by version. A tool already in the cache is not rebuilt, so only
# the first run on a machine is slow. Independent groups build in parallel
# (KNN_BUILD_JOBS, default 3: on 2 cores a third build overlaps downloads and
# linking; peak RSS stays well under 10 GB).
#
# Usage: hack/build-tools.sh [TOOL ...]
#   TOOLS: kube etcd helm kubeconform containerd runc cni coredns buildkit prometheus traefik vegeta kind
#   (default: all but vegeta and kind)
# Prints the cache bin directory on the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"

cache_root=${KNN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/knn-operator}
bin_dir="$cache_root/bin"
mkdir -p "$bin_dir"

if ! command -v go >/dev/null 2>&1; then
  echo "build-tools: Go is not installed or not on PATH; install Go >= 1.26 (https://go.dev/doc/install or your distribution's golang package)" >&2
  exit 2
fi

log() { printf '[build-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# One build at a time per cache: a second run (another terminal, a test fixture)
# waits here and then finds the tools cached instead of building them twice.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.build.lock"
  if ! flock -n 9; then
    log "another build-tools.sh is running on $cache_root; waiting for it"
    flock 9
  fi
fi

# Prints field $2 of `go mod download -json $1` (a module@version), or nothing if
# the field is absent: Origin is only reported by the call that downloads the module,
# not by later calls that find it in the module cache.
mod_field() {
  go mod download -json "$1" | python3 -c 'import json,sys
d = json.load(sys.stdin)
if "Error" in d: sys.exit("build-tools: " + d["Error"])
v = d
for k in sys.argv[1].split("."): v = v.get(k, "") if isinstance(v, dict) else ""
print(v)' "$2"
}

# A cached binary that does not report its pinned version (e.g. built by an older
# recipe without version ldflags) is rebuilt rather than trusted.
reports_version() {
  local bin=$1 want=$2; shift 2
  [ -x "$bin" ] || return 1
  local got
  got=$("$bin" "$@" 2>/dev/null) || return 1
  got=${got%%$'\n'*}  # the first line: vegeta prints commit and runtime after it
  [ "$got" = "$want" ] && return 0
  log "$(basename "$bin") reports '$got', expected '$want'; rebuilding"
  return 1
}

# Runs "$@" and records wall time and peak RSS of the whole build tree.
timed() {
  local name=$1; shift
  local start end
  start=$(date +%s)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%M" -o "$cache_root/.peak-$name" "$@"
  else
    "$@"
  fi
  end=$(date +%s)
  log "$name built in $((end - start))s (peak RSS $(cat "$cache_root/.peak-$name" 2>/dev/null || echo '?') KiB)"
  printf '%s %s %s\n' "$name" "$((end - start))" "$(cat "$cache_root/.peak-$name" 2>/dev/null || echo '?')" >>"$cache_root/build-times.log"
}

# Installs built binaries atomically: a half-built binary never appears in the cache.
install_bin() {
  local src=$1 dst=$2
  cp "$src" "$dst.tmp.$$" && chmod 0755 "$dst.tmp.$$" && mv -f "$dst.tmp.$$" "$dst"
}

build_kube() {
  local v=$KUBE_VERSION
  # Control plane and node in ONE go build: the packages they share compile once.
  local all=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
  local names=() n
  for n in "${all[@]}"; do [ -x "$bin_dir/$n-v$v" ] || names+=("$n"); done
  if [ ${#names[@]} = 0 ]; then log "kubernetes v$v cached"; return; fi

  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-kube-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building kubernetes v$v (${names[*]}) in $work (first build is slow)"
  (
    cd "$work"
    # k8s.io/kubernetes refers to its staging modules by ./staging paths; a
    # module that depends on it must pin each one to the matching v0.x.y tag.
    local gomod minor
    gomod=$(go mod download -json "k8s.io/kubernetes@v$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    minor=${v#1.}
    {
      echo "module knn.dev/throwaway-kube"
      echo
      grep -E '^go ' "$gomod"
      echo
      sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#replace \1 => \1 v0.'"$minor"'#p' "$gomod"
    } >go.mod
    local cmds=()
    for n in "${names[@]}"; do cmds+=("k8s.io/kubernetes/cmd/$n@v$v"); done
    # Getting the command packages (not only the module) records every go.sum entry they need.
    quiet_go_get "$work" "${cmds[@]}"
    local ld="-s -w"
    local pkgs="k8s.io/client-go/pkg/version k8s.io/component-base/version"
    for p in $pkgs; do
      ld="$ld -X $p.gitVersion=v$v -X $p.gitMajor=${v%%.*} -X $p.gitMinor=$(echo "$v" | cut -d. -f2)"
      ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    mkdir -p out
    local pkgs=()
    for n in "${names[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$n"); done
    timed "kubernetes-v$v" go build -trimpath -ldflags "$ld" -o out/ "${pkgs[@]}"
    for n in "${names[@]}"; do install_bin "out/$n" "$bin_dir/$n-v$v"; done
  )
}

build_etcd() {
  local v=$ETCD_VERSION
  if [ -x "$bin_dir/etcd-v$v" ]; then log "etcd v$v cached"; return; fi
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-etcd-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building etcd v$v"
  (
    cd "$work"
    # etcd's server module points its sibling modules at ../ paths.
    cat >go.mod <<MOD
module knn.dev/throwaway-etcd

go 1.26.0

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v$v
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 v$v
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 v$v
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 v$v
)
MOD
    go get "go.etcd.io/etcd/server/v3@v$v" >/dev/null
    timed "etcd-v$v" go build -trimpath -ldflags "-s -w" -o out/etcd go.etcd.io/etcd/server/v3
    install_bin out/etcd "$bin_dir/etcd-v$v"
  )
}

build_go_install() {
  local name=$1 pkg=$2 v=$3 ldflags=$4
  local gobin
  gobin=$(mktemp -d "${TMPDIR:-/tmp}/knn-gobin.XXXXXX")
  log "building $name v$v"
  GOBIN=$gobin timed "$name-v$v" go install -trimpath -ldflags "-s -w $ldflags" "$pkg@v$v"
  install_bin "$gobin/$name" "$bin_dir/$name-v$v"
  rm -rf "$gobin"
}

build_helm() {
  local v=$HELM_VERSION
  if reports_version "$bin_dir/helm-v$v" "v$v" version --template '{{ .Version }}'; then
    log "helm v$v cached"; return
  fi
  # The same -X flags as helm's Makefile: without them `helm version` says "v3.22"
  # and charts are rendered for Kubernetes v1.20 (.Capabilities.KubeVersion).
  local mod="helm.sh/helm/v3@v$v" commit gomod k8s_minor ld p
  # The proxy does not always send Origin (seen 2026-12-01): the commit is then
  # unknown and `helm version` shows an empty GitCommit, nothing else changes.
  commit=$(mod_field "$mod" Origin.Hash)
  # Only `helm version` shows it; a module cached without its origin has none.
  [ -n "$commit" ] || commit=unknown
  gomod=$(mod_field "$mod" GoMod)
  k8s_minor=$(sed -n 's#^[[:space:]]*k8s\.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod")
  [ -n "$k8s_minor" ] || { echo "build-tools: cannot read k8s.io/client-go from $gomod" >&2; exit 1; }
  ld="-X helm.sh/helm/v3/internal/version.version=v$v"
  ld="$ld -X helm.sh/helm/v3/internal/version.metadata="
  ld="$ld -X helm.sh/helm/v3/internal/version.gitCommit=$commit"
  ld="$ld -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
  done
  build_go_install helm helm.sh/helm/v3/cmd/helm "$v" "$ld"
}

build_kubeconform() {
  local v=$KUBECONFORM_VERSION
  if reports_version "$bin_dir/kubeconform-v$v" "v$v" -v; then
    log "kubeconform v$v cached"; return
  fi
  # As its release build does (.goreleaser.yml); otherwise -v prints "development".
  build_go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$v" \
    "-X main.version=v$v"
}

build_vegeta() {
  local v=$VEGETA_VERSION
  if reports_version "$bin_dir/vegeta-v$v" "Version: v$v" -version; then
    log "vegeta v$v cached"; return
  fi
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-vegeta-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building vegeta v$v"
  (
    cd "$work"
    # `go install pkg@version` asks the proxy for the module's version list (for
    # deprecation notices), which this proxy refuses with 403 for vegeta; a
    # throwaway module that requires the exact version does not need it.
    printf 'module knn.dev/throwaway-vegeta\n\ngo 1.26.0\n' >go.mod
    go get "github.com/tsenart/vegeta/v12@v$v" >/dev/null
    timed "vegeta-v$v" go build -trimpath -ldflags "-s -w -X main.Version=v$v" -o out/vegeta \
      github.com/tsenart/vegeta/v12
    install_bin out/vegeta "$bin_dir/vegeta-v$v"
  )
}

build_kind() {
  local v=$KIND_VERSION
  if [ -x "$bin_dir/kind-v$v" ]; then log "kind v$v cached"; return; fi
  # Its version is a constant in the source: no -X flags needed for `kind version`.
  build_go_install kind sigs.k8s.io/kind "$v" ""
}

# A throwaway module in a fresh temporary directory ($1) that requires exactly the
# given package@version arguments: `go install pkg@version` needs the proxy's
# version list (refused for some modules) and cannot take replace directives.
# Getting package paths, not only the module, records every go.sum entry they need.
throwaway_module() {
  local dir=$1; shift
  printf 'module knn.dev/throwaway\n\ngo 1.26.0\n' >"$dir/go.mod"
  quiet_go_get "$dir" "$@"
}

# `go get` lists every module it adds on stderr: keep that in a log, show it on failure.
quiet_go_get() {
  local dir=$1; shift
  if ! (cd "$dir" && go get "$@" >"$dir/go-get.log" 2>&1); then
    cat "$dir/go-get.log" >&2
    return 1
  fi
}

build_containerd() {
  local v=$CONTAINERD_VERSION n missing=0
  for n in containerd ctr containerd-shim-runc-v2; do [ -x "$bin_dir/$n-v$v" ] || missing=1; done
  if [ $missing = 0 ]; then log "containerd v$v cached"; return; fi
  local work m=github.com/containerd/containerd/v2
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-containerd-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building containerd v$v"
  throwaway_module "$work" "$m/cmd/containerd@v$v" "$m/cmd/ctr@v$v" "$m/cmd/containerd-shim-runc-v2@v$v"
  (
    cd "$work"
    local ld="-s -w -X $m/version.Version=v$v -X $m/version.Revision=knn-operator"
    # no_btrfs: the btrfs snapshotter needs btrfs headers; the node uses overlayfs.
    CGO_ENABLED=1 timed "containerd-v$v" go build -trimpath -tags no_btrfs -ldflags "$ld" -o out/ \
      "$m/cmd/containerd" "$m/cmd/ctr" "$m/cmd/containerd-shim-runc-v2"
    for n in containerd ctr containerd-shim-runc-v2; do install_bin "out/$n" "$bin_dir/$n-v$v"; done
  )
}

build_runc() {
  local v=$RUNC_VERSION
  if [ -x "$bin_dir/runc-v$v" ]; then log "runc v$v cached"; return; fi
  if ! pkg-config --exists libseccomp 2>/dev/null; then
    echo "build-tools: runc needs libseccomp-dev and pkg-config (hack/install-system-deps.sh installs them)" >&2
    exit 1
  fi
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-runc-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building runc v$v"
  throwaway_module "$work" "github.com/opencontainers/runc@v$v"
  (
    cd "$work"
    # As runc's Makefile: BUILDTAGS=seccomp; its nsenter is C, so cgo is required.
    CGO_ENABLED=1 timed "runc-v$v" go build -trimpath -tags "seccomp urfave_cli_no_docs" \
      -ldflags "-s -w -X main.version=$v" -o out/runc github.com/opencontainers/runc
    install_bin out/runc "$bin_dir/runc-v$v"
  )
}

# The CNI plugins the node's network config uses; they live in their own directory
# because containerd's CNI bin_dirs is searched by plugin type name.
CNI_PLUGINS=(main/bridge main/loopback ipam/host-local meta/portmap)
build_cni() {
  local v=$CNI_PLUGINS_VERSION dir="$bin_dir/cni-v$CNI_PLUGINS_VERSION" p missing=0
  for p in "${CNI_PLUGINS[@]}"; do [ -x "$dir/${p#*/}" ] || missing=1; done
  if [ $missing = 0 ]; then log "cni plugins v$v cached"; return; fi
  local work m=github.com/containernetworking/plugins
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-cni-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building cni plugins v$v"
  local gets=() pkgs=()
  for p in "${CNI_PLUGINS[@]}"; do gets+=("$m/plugins/$p@v$v"); pkgs+=("$m/plugins/$p"); done
  throwaway_module "$work" "${gets[@]}"
  (
    cd "$work"
    timed "cni-plugins-v$v" go build -trimpath \
      -ldflags "-s -w -X $m/pkg/utils/buildversion.BuildVersion=v$v" -o out/ "${pkgs[@]}"
    mkdir -p "$dir"
    for p in "${CNI_PLUGINS[@]}"; do install_bin "out/${p#*/}" "$dir/${p#*/}"; done
  )
}

# CoreDNS with only the plugins cluster DNS uses (the full build pulls in every
# cloud SDK): the same main as coredns.go, a shorter plugin list. Static, so the
# binary alone makes the image.
COREDNS_PLUGINS=(errors log health ready cache kubernetes loadbalance loop reload forward)
build_coredns() {
  local v=$COREDNS_VERSION
  if [ -x "$bin_dir/coredns-v$v" ]; then log "coredns v$v cached"; return; fi
  local work m=github.com/coredns/coredns p
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-coredns-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building coredns v$v"
  mkdir -p "$work/cmd/coredns"
  {
    echo "package main"
    echo
    echo "import ("
    echo "	_ \"$m/core/dnsserver\""
    for p in "${COREDNS_PLUGINS[@]}"; do echo "	_ \"$m/plugin/$p\""; done
    echo "	\"$m/coremain\""
    echo ")"
    echo
    echo "func main() { coremain.Run() }"
  } >"$work/cmd/coredns/main.go"
  local gets=("$m/coremain@v$v" "$m/core/dnsserver@v$v")
  for p in "${COREDNS_PLUGINS[@]}"; do gets+=("$m/plugin/$p@v$v"); done
  throwaway_module "$work" "${gets[@]}"
  (
    cd "$work"
    CGO_ENABLED=0 timed "coredns-v$v" go build -trimpath \
      -ldflags "-s -w -X $m/coremain.GitCommit=v$v" -o out/coredns ./cmd/coredns
    install_bin out/coredns "$bin_dir/coredns-v$v"
  )
}

build_buildkit() {
  local v=$BUILDKIT_VERSION
  if [ -x "$bin_dir/buildkitd-v$v" ] && [ -x "$bin_dir/buildctl-v$v" ]; then
    log "buildkit v$v cached"; return
  fi
  local work src
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-buildkit-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building buildkit v$v"
  # `go install` refuses BuildKit (its go.mod has exclude directives) and a
  # throwaway module would ignore them: build inside a copy of the module itself.
  src=$(mod_field "github.com/moby/buildkit@v$v" Dir)
  cp -r "$src" "$work/src"
  chmod -R u+w "$work/src"
  (
    cd "$work/src"
    CGO_ENABLED=0 timed "buildkit-v$v" go build -trimpath \
      -ldflags "-s -w -X github.com/moby/buildkit/version.Version=v$v" -o "$work/out/" \
      ./cmd/buildkitd ./cmd/buildctl
    install_bin "$work/out/buildkitd" "$bin_dir/buildkitd-v$v"
    install_bin "$work/out/buildctl" "$bin_dir/buildctl-v$v"
  )
}

# Prometheus with only the Kubernetes service discovery (the local cluster's): built
# inside its module like BuildKit (its go.mod is the one its release uses). No web UI
# assets (the `builtinassets` tag needs an npm build); the HTTP API is complete.
# Only the versioned name is linked: the data-plane tests run Debian's `prometheus`.
build_prometheus() {
  local v=$PROMETHEUS_VERSION
  if [ -x "$bin_dir/prometheus-v$v" ]; then log "prometheus v$v cached"; return; fi
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*} patch=${v##*.}
  local modv="v0.$((major * 100 + minor)).$patch" work src m=github.com/prometheus/common
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-prometheus-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building prometheus v$v (module $modv)"
  src=$(mod_field "github.com/prometheus/prometheus@$modv" Dir)
  cp -r "$src" "$work/src"
  chmod -R u+w "$work/src"
  (
    cd "$work/src"
    # Its go.work names directories the module zip does not carry.
    GOWORK=off CGO_ENABLED=0 timed "prometheus-v$v" go build -trimpath \
      -tags "remove_all_sd enable_kubernetes_sd" \
      -ldflags "-s -w -X $m/version.Version=$v -X $m/version.Branch=knn-operator" \
      -o "$work/out/prometheus" ./cmd/prometheus
    install_bin "$work/out/prometheus" "$bin_dir/prometheus-v$v"
  )
}

# Traefik, the local cluster's Gateway API data plane. `go install` refuses its module
# (replace directives), so a throwaway main module takes Traefik's go.mod with three
# stand-ins from hack/traefik/ for modules the proxy does not serve (README there).
build_traefik() {
  local v=$TRAEFIK_VERSION lego_v=$TRAEFIK_LEGO_VERSION
  if [ -x "$bin_dir/traefik-v$v" ]; then log "traefik v$v cached"; return; fi
  local work src lego auth sum gomodsum
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-traefik-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building traefik v$v (first build is slow)"
  src=$(mod_field "github.com/traefik/traefik/v3@v$v" Dir)
  sum=$(mod_field "github.com/traefik/traefik/v3@v$v" Sum)
  gomodsum=$(mod_field "github.com/traefik/traefik/v3@v$v" GoModSum)
  lego=$(mod_field "github.com/go-acme/lego/v5@v$lego_v" Dir)
  auth=$(mod_field "github.com/abbot/go-http-auth@v0.4.0" Dir)
  (
    cd "$work"
    mkdir ext go-http-auth
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >ext/go.mod
    cp "$here/traefik/ext.go" ext/
    cp "$auth"/*.go go-http-auth/
    chmod -R u+w go-http-auth
    rm go-http-auth/*_test.go
    printf 'module github.com/abbot/go-http-auth\n\ngo 1.20\n' >go-http-auth/go.mod
    cp "$here/traefik/go-http-auth-shims.go" go-http-auth/zz_local_shims.go
    cp -r "$lego" lego
    chmod -R u+w lego
    rm lego/providers/dns/zz_gen_dns_providers.go lego/providers/dns/dns_providers_test.go
    cp "$here/traefik/lego-dns-stub.go" lego/providers/dns/zz_local_stub.go
    sed -e 's#^module github.com/traefik/traefik/v3#module knn.dev/throwaway-traefik#' \
      -e 's#=> ./pkg/config/dynamic/ext#=> ./ext#' \
      -e 's#github.com/abbot/go-http-auth => github.com/containous/go-http-auth .*#github.com/abbot/go-http-auth => ./go-http-auth#' \
      "$src/go.mod" >go.mod
    printf '\nrequire github.com/traefik/traefik/v3 v%s\n\nreplace github.com/go-acme/lego/v5 => ./lego\n' "$v" >>go.mod
    cp "$src/go.sum" go.sum
    chmod u+w go.sum
    printf 'github.com/traefik/traefik/v3 v%s %s\ngithub.com/traefik/traefik/v3 v%s/go.mod %s\n' \
      "$v" "$sum" "$v" "$gomodsum" >>go.sum
    GOWORK=off timed "traefik-v$v" go build -trimpath \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$v" \
      -o out/traefik github.com/traefik/traefik/v3/cmd/traefik
    install_bin out/traefik "$bin_dir/traefik-v$v"
  )
}

# Version-free names point at the pinned build, for PATH use by tests and users.
link_all() {
  local n
  for n in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    [ -x "$bin_dir/$n-v$KUBE_VERSION" ] && ln -sf "$n-v$KUBE_VERSION" "$bin_dir/$n"
  done
  for n in containerd ctr containerd-shim-runc-v2; do
    [ -x "$bin_dir/$n-v$CONTAINERD_VERSION" ] && ln -sf "$n-v$CONTAINERD_VERSION" "$bin_dir/$n"
  done
  [ -x "$bin_dir/runc-v$RUNC_VERSION" ] && ln -sf "runc-v$RUNC_VERSION" "$bin_dir/runc"
  [ -x "$bin_dir/coredns-v$COREDNS_VERSION" ] && ln -sf "coredns-v$COREDNS_VERSION" "$bin_dir/coredns"
  for n in buildkitd buildctl; do
    [ -x "$bin_dir/$n-v$BUILDKIT_VERSION" ] && ln -sf "$n-v$BUILDKIT_VERSION" "$bin_dir/$n"
  done
  [ -x "$bin_dir/etcd-v$ETCD_VERSION" ] && ln -sf "etcd-v$ETCD_VERSION" "$bin_dir/etcd"
  [ -x "$bin_dir/helm-v$HELM_VERSION" ] && ln -sf "helm-v$HELM_VERSION" "$bin_dir/helm"
  [ -x "$bin_dir/kubeconform-v$KUBECONFORM_VERSION" ] && ln -sf "kubeconform-v$KUBECONFORM_VERSION" "$bin_dir/kubeconform"
  [ -x "$bin_dir/vegeta-v$VEGETA_VERSION" ] && ln -sf "vegeta-v$VEGETA_VERSION" "$bin_dir/vegeta"
  [ -x "$bin_dir/kind-v$KIND_VERSION" ] && ln -sf "kind-v$KIND_VERSION" "$bin_dir/kind"
  [ -x "$bin_dir/traefik-v$TRAEFIK_VERSION" ] && ln -sf "traefik-v$TRAEFIK_VERSION" "$bin_dir/traefik"
  return 0
}

known=(kube etcd helm kubeconform containerd runc cni coredns buildkit prometheus traefik vegeta kind)
tools=("$@")
# The longest build first, so the parallel ones overlap it.
[ ${#tools[@]} -gt 0 ] || tools=(kube containerd buildkit traefik prometheus etcd coredns helm kubeconform runc cni)
for t in "${tools[@]}"; do
  case " ${known[*]} " in
    *" $t "*) ;;
    *) echo "build-tools: unknown tool '$t' (known: ${known[*]})" >&2; exit 2 ;;
  esac
done

# Each group builds in its own background job, at most $jobs at a time; a failed
# group fails the run after the others finish (their results stay cached).
jobs=${KNN_BUILD_JOBS:-3}
declare -A pids=()
failed=()
reap_one() {
  local t pid
  wait -n || true
  for t in "${!pids[@]}"; do
    pid=${pids[$t]}
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || failed+=("$t")
      unset "pids[$t]"
    fi
  done
}
for t in "${tools[@]}"; do
  while [ ${#pids[@]} -ge "$jobs" ]; do reap_one; done
  "build_$t" &
  pids[$t]=$!
done
while [ ${#pids[@]} -gt 0 ]; do reap_one; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "build-tools: failed to build: ${failed[*]} (see the messages above)" >&2
  exit 1
fi
link_all
echo "$bin_dir"
