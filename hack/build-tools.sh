#!/usr/bin/env bash
# Builds the Kubernetes control plane, etcd, kubectl, helm and kubeconform (and,
# for `make bench` only, the vegeta load generator) from their Go modules at the versions pinned in hack/versions.env, into a cache
# outside the repository keyed by version. A tool already in the cache is not
# rebuilt, so only the first run on a machine is slow.
#
# Usage: hack/build-tools.sh [TOOL ...]   (default: kube etcd helm kubeconform)
#   TOOLS: kube etcd helm kubeconform vegeta
# Prints the cache bin directory on the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
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

# Prints field $2 of `go mod download -json $1` (a module@version).
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
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local missing=0
  for n in "${names[@]}"; do [ -x "$bin_dir/$n-v$v" ] || missing=1; done
  if [ $missing = 0 ]; then log "kubernetes v$v cached"; return; fi

  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/knn-kube-build.XXXXXX")
  trap 'rm -rf "$work"' RETURN
  log "building kubernetes v$v in $work (first build is slow)"
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
    go get "${cmds[@]}" >/dev/null
    local ld="-s -w"
    local pkgs="k8s.io/client-go/pkg/version k8s.io/component-base/version"
    for p in $pkgs; do
      ld="$ld -X $p.gitVersion=v$v -X $p.gitMajor=${v%%.*} -X $p.gitMinor=$(echo "$v" | cut -d. -f2)"
      ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    mkdir -p out
    timed kubernetes-v$v go build -trimpath -ldflags "$ld" -o out/ \
      k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl
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
    timed etcd-v$v go build -trimpath -ldflags "-s -w" -o out/etcd go.etcd.io/etcd/server/v3
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
    timed vegeta-v$v go build -trimpath -ldflags "-s -w -X main.Version=v$v" -o out/vegeta \
      github.com/tsenart/vegeta/v12
    install_bin out/vegeta "$bin_dir/vegeta-v$v"
  )
}

# Version-free names point at the pinned build, for PATH use by tests and users.
link_all() {
  local n
  for n in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$bin_dir/$n-v$KUBE_VERSION" ] && ln -sf "$n-v$KUBE_VERSION" "$bin_dir/$n"
  done
  [ -x "$bin_dir/etcd-v$ETCD_VERSION" ] && ln -sf "etcd-v$ETCD_VERSION" "$bin_dir/etcd"
  [ -x "$bin_dir/helm-v$HELM_VERSION" ] && ln -sf "helm-v$HELM_VERSION" "$bin_dir/helm"
  [ -x "$bin_dir/kubeconform-v$KUBECONFORM_VERSION" ] && ln -sf "kubeconform-v$KUBECONFORM_VERSION" "$bin_dir/kubeconform"
  [ -x "$bin_dir/vegeta-v$VEGETA_VERSION" ] && ln -sf "vegeta-v$VEGETA_VERSION" "$bin_dir/vegeta"
  return 0
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(etcd helm kubeconform kube)
for t in "${tools[@]}"; do
  case $t in
    kube) build_kube ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    kubeconform) build_kubeconform ;;
    vegeta) build_vegeta ;;
    *) echo "build-tools: unknown tool '$t' (known: kube etcd helm kubeconform vegeta)" >&2; exit 2 ;;
  esac
done
link_all
echo "$bin_dir"
