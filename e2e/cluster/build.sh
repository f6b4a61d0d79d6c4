#!/usr/bin/env bash
# Build, once, the control plane berth's tests run against, and print the folder of binaries.
#
# Versions are pinned in go.mod beside this script (k8s.io/kubernetes, sigs.k8s.io/kwok): the
# binaries are cached under ~/.cache/berth-k8s keyed by go.mod and go.sum, so a second run
# only prints the path; kwok's stage files sit beside them in stages/. etcd comes from
# Debian's etcd-server, installed if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

need_go=$(cat "$here/go-version")
have_go=$(go env GOVERSION)
case "$have_go" in
    go"$need_go"|go"$need_go".*) ;;
    *) echo "build.sh: Kubernetes $(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes) is built with Go $need_go.x, found $have_go" >&2
       echo "  (Go 1.27's default jsonv2 breaks kube-apiserver's /openapi/v2)" >&2
       exit 1 ;;
esac

key=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
k8s=$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
bin=${BERTH_K8S_CACHE:-$HOME/.cache/berth-k8s}/$k8s-$key/bin
commands="kube-apiserver kube-controller-manager kube-scheduler kwok"

if ! command -v etcd >/dev/null; then
    echo "build.sh: installing etcd-server from Debian" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >&2
fi
command -v openssl >/dev/null || {
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >&2; }

missing=0
for c in $commands; do [ -x "$bin/$c" ] || missing=1; done
if [ "$missing" = 1 ]; then
    echo "build.sh: building $commands at $k8s (first time: several minutes on 2 cores)" >&2
    start=$(date +%s)
    mkdir -p "$(dirname "$bin")"
    tmp=$(mktemp -d "${bin%/bin}.tmp.XXXX") && chmod 755 "$tmp"
    major=${k8s#v}; major=${major%%.*}
    minor=${k8s#v*.}; minor=${minor%%.*}
    flags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags="$flags -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    done
    (cd "$here" && go build -trimpath -ldflags "$flags" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        sigs.k8s.io/kwok/cmd/kwok) >&2
    rm -rf "$bin" && mv "$tmp" "$bin"
    echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
fi

# kwok runs only the stages it is given (kwokctl injects these same defaults): node
# initialisation and heartbeat, pods ready, complete (Job-owned) and deleted, taken from the
# pinned kwok module so they stay in step with the binary.
stages=$(dirname "$bin")/stages
if [ ! -d "$stages" ]; then
    kwok_dir=$(cd "$here" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
    mkdir -p "$stages.tmp"
    cp "$kwok_dir/kustomize/stage/node/fast/node-initialize.yaml" \
       "$kwok_dir/kustomize/stage/node/heartbeat/node-heartbeat.yaml" \
       "$kwok_dir"/kustomize/stage/pod/fast/pod-{ready,complete,delete}.yaml "$stages.tmp/"
    chmod u+w "$stages.tmp"/*
    mv "$stages.tmp" "$stages"
fi
echo "$bin"
