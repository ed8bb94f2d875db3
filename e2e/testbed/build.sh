#!/usr/bin/env bash
# Builds the test bed's binaries (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, kwok, helm) from the upstream Go modules into a version-keyed cache outside
# the repository, and only what is missing. Prints the binary folder on its last line.
#
#   e2e/testbed/build.sh          build what is missing, print the folder
#   e2e/testbed/build.sh --dir    print the folder only (nothing is built)
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.8
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.21.4

here=$(cd "$(dirname "$0")" && pwd)
tools=$(cd "$here/../tools" && pwd)
cache=${NODEHEALER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodehealer}

# The key covers the pinned versions and the tools modules' go.sum, so a change to either
# builds into a new folder and never mixes binaries of two releases.
key=$(cat "$tools/k8s/go.sum" "$tools/etcd/go.sum" | sha256sum | cut -c1-10)
bin="$cache/testbed-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION-$key"

if [[ "${1:-}" == "--dir" ]]; then
  echo "$bin"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$bin"

phase() { printf '[testbed] %-28s %s\n' "$1" "$2" >&2; }
timed() {
  local name=$1; shift
  local start=$SECONDS
  "$@"
  phase "$name" "built in $((SECONDS - start)) s"
}

k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/') \
 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/') \
 -X k8s.io/component-base/version.gitTreeState=clean"

build_k8s() {
  (cd "$tools/k8s" && go build -trimpath -tags notest -ldflags "$k8s_ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  (cd "$tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_helm() {
  GOBIN="$bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# kwok alone has no default Stages. Pods use the ones kwok's module ships (what kwok's own
# cluster mode uses); nodes use ours, in e2e/testbed/stages/, which stamp condition
# transitions as a real kubelet does.
write_pod_stages() {
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  {
    for f in pod-ready.yaml pod-complete.yaml pod-delete.yaml; do
      echo "---"
      cat "$dir/kustomize/stage/pod/fast/$f"
    done
  } > "$bin/kwok-pod-stages.yaml.tmp"
  mv "$bin/kwok-pod-stages.yaml.tmp" "$bin/kwok-pod-stages.yaml"
}

total=$SECONDS
if [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" && -x "$bin/kube-scheduler" && -x "$bin/kubectl" ]]; then
  phase "kubernetes $K8S_VERSION" cached
else
  timed "kubernetes $K8S_VERSION" build_k8s
fi
if [[ -x "$bin/etcd" ]]; then phase "etcd $ETCD_VERSION" cached; else timed "etcd $ETCD_VERSION" build_etcd; fi
if [[ -x "$bin/kwok" ]]; then phase "kwok $KWOK_VERSION" cached; else timed "kwok $KWOK_VERSION" build_kwok; fi
if [[ -x "$bin/helm" ]]; then phase "helm $HELM_VERSION" cached; else timed "helm $HELM_VERSION" build_helm; fi
if [[ -s "$bin/kwok-pod-stages.yaml" ]]; then phase "kwok pod stages" cached; else timed "kwok pod stages" write_pod_stages; fi
phase total "$((SECONDS - total)) s"
echo "$bin"
