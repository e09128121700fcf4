#!/usr/bin/env bash
# `make e2e-kind`: the product's e2e scenarios on a kind cluster, for machines with
# Docker (the local cluster of `make up` needs none; this is the same story on the
# cluster most developers already have).
#
#   1. builds the two images with `docker build` from the unchanged Dockerfile.serving
#      and Dockerfile.operator, tagged as the local cluster tags them;
#   2. creates a kind cluster (kind from the pin in hack/versions.env) with its own
#      kubeconfig, never touching ~/.kube/config;
#   3. `kind load docker-image` both images (pods use imagePullPolicy: Never);
#   4. copies the sample dataset into a directory of the kind node, behind the
#      PersistentVolume knn-local-data that examples/local-cluster/products.yaml claims;
#   5. installs the CRDs and the Helm chart charts/knn-operator as the local cluster
#      does (knn_devtools.incluster.install_operator);
#   6. runs the scenarios of tests/e2e/test_operator.py through kubectl
#      (python -m knn_devtools.kind scenarios; its docstring says why not pytest);
#   7. deletes the cluster, unless KIND_KEEP=1 or it existed before.
#
# Environment:
#   KIND_CLUSTER_NAME  cluster name (default knn-e2e); an existing one is reused and kept
#   KIND_KEEP=1        keep the cluster at the end (the script prints how to use it)
#   KIND_NODE_IMAGE    kindest/node image (default: the pinned kind's default)
#   KIND, KUBECTL      binaries to use instead of the pinned builds
#   DOCKER_BUILD_ARGS  extra `docker build` arguments, e.g. "--build-arg CFLAGS=
#                      --build-arg CXXFLAGS=" for a CPU without AVX2 (generic x86-64)
#   PYTHON             the project's Python (default .venv/bin/python, made by make install)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
name=${KIND_CLUSTER_NAME:-knn-e2e}
# A directory of the kind node (inside its container), behind the PersistentVolume.
node_data=/var/local/knn-data
# The uid the product's images run as (Dockerfiles: USER 65532): builder pods write there.
image_uid=65532

log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'e2e-kind: %s\n' "$*" >&2; exit 2; }

command -v docker >/dev/null 2>&1 || die "needs Docker (docker CLI and a running daemon); without Docker use make test (its e2e tier runs the local cluster)"
docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon (docker info failed); start it or set DOCKER_HOST"
[ -x "$py" ] || die "$py not found; run make install first (or set PYTHON)"

began=$(date +%s)
tools=$("$py" -m knn_devtools.kind tools)
{ read -r kind; read -r kubectl; } <<<"$tools"
log "kind: $kind ($("$kind" version)); kubectl: $kubectl"

images=$("$py" -m knn_devtools.kind images)
{ read -r serving operator; read -r -a portable; } <<<"$images"
build_args=()
for a in "${portable[@]}"; do build_args+=(--build-arg "$a"); done
# hnswlib's default baseline (x86-64-v3 in Dockerfile.serving) is x86-only: on an arm64
# Docker host (Apple silicon) build for the generic target of that architecture.
arch=$(docker version --format '{{.Server.Arch}}')
case $arch in
  amd64 | x86_64) ;;
  *) build_args+=(--build-arg CFLAGS= --build-arg CXXFLAGS=) ;;
esac
extra=()
# Word splitting is the point: DOCKER_BUILD_ARGS holds several arguments.
read -r -a extra <<<"${DOCKER_BUILD_ARGS:-}"

log "docker build -f Dockerfile.serving -t $serving"
docker build -f Dockerfile.serving "${build_args[@]}" "${extra[@]}" -t "$serving" .
log "docker build -f Dockerfile.operator -t $operator"
docker build -f Dockerfile.operator "${extra[@]}" -t "$operator" .

work=$(mktemp -d "${TMPDIR:-/tmp}/knn-kind.XXXXXX")
kubeconfig=$work/kubeconfig
cluster=none # none, created (deleted at the end unless KIND_KEEP=1) or reused (kept)
cleanup() {
  local code=$?
  if [ "$cluster" = created ] && [ "${KIND_KEEP:-0}" != 1 ]; then
    log "kind delete cluster --name $name"
    "$kind" delete cluster --name "$name" --kubeconfig "$kubeconfig" || true
  elif [ "$cluster" != none ]; then
    log "the cluster $name stays up: kind export kubeconfig --name $name (or KUBECONFIG=$kubeconfig); kind delete cluster --name $name removes it"
    exit "$code"
  fi
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT

if "$kind" get clusters 2>/dev/null | grep -qx "$name"; then
  log "reusing the existing kind cluster $name (it is kept at the end)"
  cluster=reused
  "$kind" get kubeconfig --name "$name" >"$kubeconfig"
else
  log "kind create cluster --name $name"
  node_image=()
  [ -z "${KIND_NODE_IMAGE:-}" ] || node_image=(--image "$KIND_NODE_IMAGE")
  # Set first: a half-created cluster is deleted too.
  cluster=created
  "$kind" create cluster --name "$name" --kubeconfig "$kubeconfig" "${node_image[@]}" --wait 180s
fi

log "kind load docker-image $serving $operator"
"$kind" load docker-image --name "$name" "$serving" "$operator"

# One node (kind's default); a multi-node cluster would need the data on every node
# the builder and serving pods may land on.
node=$("$kind" get nodes --name "$name" | head -n 1)
[ -n "$node" ] || die "kind get nodes --name $name listed no node"
log "sample dataset -> $node:$node_data/datasets/products.npy"
"$py" -m knn_devtools.kind dataset "$work/products.npy"
docker exec "$node" mkdir -p "$node_data/datasets"
docker cp "$work/products.npy" "$node:$node_data/datasets/products.npy"
docker exec "$node" chown -R "$image_uid:$image_uid" "$node_data"

log "installing CRDs, RBAC, the operator Deployment"
"$py" -m knn_devtools.kind install --kubeconfig "$kubeconfig" --kubectl "$kubectl" \
  --serving-image "$serving" --operator-image "$operator" --data-path "$node_data"

log "scenarios"
"$py" -m knn_devtools.kind scenarios --kubeconfig "$kubeconfig" --kubectl "$kubectl" \
  --serving-image "$serving"
log "passed in $(($(date +%s) - began))s"
