#!/usr/bin/env bash
# Checks (and, as root, installs) what building and testing nmdb needs.
#   scripts/deps.sh build   - to build and run the server and library
#   scripts/deps.sh test    - to run every test as well
#   scripts/deps.sh kernel  - to boot the TIPC/SCTP test kernel under qemu
# Prints exactly what is missing when it cannot install it.
set -euo pipefail

purpose=${1:-build}
missing=()

need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" || missing+=("$1"); }

need_cmd cc gcc
need_cmd c++ g++
need_cmd make make
need_cmd pkg-config pkg-config
# rocksdb's bindings are generated at build time with libclang.
need_pkg libclang-dev
if [ "$purpose" = kernel ] || [ "$purpose" = test ]; then
    need_cmd qemu-system-x86_64 qemu-system-x86
    need_cmd busybox busybox-static
    need_cmd insmod kmod
    need_cmd python3 python3
fi
if [ "$purpose" = test ]; then
    need_cmd valgrind valgrind
    need_cmd groff groff-base
    # ss reads listen backlogs; mount makes the small file system of the
    # full-disk test.
    need_cmd ss iproute2
    need_cmd mount mount
    # systemd-analyze verifies the installed unit.
    need_cmd systemd-analyze systemd
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deps: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "deps: missing Debian packages: ${missing[*]}" >&2
        echo "deps: install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

for tool in cargo rustc; do
    command -v "$tool" >/dev/null || { echo "deps: $tool not found: install Rust (rustup) first" >&2; exit 1; }
done
if [ "$purpose" = test ] && ! python3 -c 'import pytest' 2>/dev/null; then
    echo "deps: installing pytest"
    python3 -m pip install -q pytest || { echo "deps: cannot install pytest (python3 -m pip install pytest)" >&2; exit 1; }
fi
# The metrics test parses /metrics with Prometheus's own parser.
if [ "$purpose" = test ] && ! python3 -c 'import prometheus_client.parser' 2>/dev/null; then
    echo "deps: installing prometheus-client (Python)"
    python3 -m pip install -q prometheus-client || { echo "deps: cannot install prometheus-client (python3 -m pip install prometheus-client)" >&2; exit 1; }
fi
if [ "$purpose" = test ] && ! cargo nextest --version >/dev/null 2>&1; then
    echo "deps: installing cargo-nextest"
    cargo install --locked cargo-nextest >/dev/null
fi
