#!/usr/bin/env bash
# Fetch, once, Debian's prometheus package (prometheus and promtool, static Go binaries) and
# print the folder holding them. The package is unpacked, not installed: no service starts, no
# root needed. Cached under ~/.cache/berth-prometheus by package version.
set -euo pipefail
cache=${BERTH_PROMETHEUS_CACHE:-$HOME/.cache/berth-prometheus}
version=$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "prometheus.sh: apt knows no prometheus package; run apt-get update" >&2
    exit 1
fi
dir=$cache/${version//[^A-Za-z0-9.+-]/_}
if [ ! -x "$dir/usr/bin/prometheus" ] || [ ! -x "$dir/usr/bin/promtool" ]; then
    echo "prometheus.sh: fetching Debian's prometheus $version" >&2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download -q "prometheus=$version" >&2 2>/dev/null) || {
        echo "prometheus.sh: apt-get download prometheus=$version failed" >&2; exit 1; }
    mkdir -p "$tmp/x" && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    rm -rf "$dir" && mkdir -p "$dir/usr" && mv "$tmp/x/usr/bin" "$dir/usr/bin"
fi
echo "$dir/usr/bin"
