#!/usr/bin/env bash
# Builds the Kubernetes control plane, etcd, kubectl, helm and kubeconform from
# their Go modules at the versions pinned in hack/versions.env, into a cache
# outside the repository keyed by version. A tool already in the cache is not
# rebuilt, so only the first run on a machine is slow.
#
# Usage: hack/build-tools.sh [TOOL ...]   (default: all)
#   TOOLS: kube etcd helm kubeconform
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
  local name=$1 pkg=$2 v=$3
  if [ -x "$bin_dir/$name-v$v" ]; then log "$name v$v cached"; return; fi
  local gobin
  gobin=$(mktemp -d "${TMPDIR:-/tmp}/knn-gobin.XXXXXX")
  log "building $name v$v"
  GOBIN=$gobin timed "$name-v$v" go install -trimpath -ldflags "-s -w" "$pkg@v$v"
  install_bin "$gobin/$name" "$bin_dir/$name-v$v"
  rm -rf "$gobin"
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
  return 0
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(etcd helm kubeconform kube)
for t in "${tools[@]}"; do
  case $t in
    kube) build_kube ;;
    etcd) build_etcd ;;
    helm) build_go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" ;;
    kubeconform) build_go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" ;;
    *) echo "build-tools: unknown tool '$t' (known: kube etcd helm kubeconform)" >&2; exit 2 ;;
  esac
done
link_all
echo "$bin_dir"
