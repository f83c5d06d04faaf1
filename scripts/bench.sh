#!/usr/bin/env bash
# Benchmarks, side by side in one run (pinned to one CPU: this VM halts idle
# CPUs, so a round trip to the other one costs ~40 us and would dominate):
#   1. nmdb-bench: the server's ops/s for every mode over TCP and UDP, next
#      to an echo server answering the same messages (the loopback limit);
#   2. tests/c/bench.c: libnmdb's time per call, next to nmdb-bench's raw
#      protocol client doing the same loop against the same kind of server.
# Usage: scripts/bench.sh [OPS]   (needs `make` first)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
rel=${CARGO_TARGET_DIR:-$top/target}/release
ops=${1:-20000}
cpu=${BENCH_CPU:-0}
work=$(mktemp -d)
# The servers are waited for: a server still writing its database as it
# exits would put files back into what rm is removing.
trap 'kill $(jobs -p) 2>/dev/null || true; wait || true; rm -rf "$work"' EXIT

echo "== server: nmdb vs echo (taskset -c $cpu, $ops ops per client)"
taskset -c "$cpu" "$rel/nmdb-bench" --ops "$ops" --clients 8

echo
echo "== library: C bench through libnmdb (taskset -c $cpu)"
cc -std=c99 -O2 -I "$top/include" -I "$top/tests/c" "$top/tests/c/bench.c" \
    "$rel/libnmdb.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -o "$work/bench"
taskset -c "$cpu" "$rel/nmdb" -f --no-tipc --no-sctp -T 127.0.0.1 -U 127.0.0.1 -t 0 -u 0 \
    -d "$work/db" -o "$work/log" &
until grep -q ready "$work/log" 2>/dev/null; do sleep 0.05; done
tcp=$(grep -o 'listening on tcp 127.0.0.1:[0-9]*' "$work/log" | grep -o '[0-9]*$')
udp=$(grep -o 'listening on udp 127.0.0.1:[0-9]*' "$work/log" | grep -o '[0-9]*$')
taskset -c "$cpu" "$work/bench" tcp 127.0.0.1 "$tcp" "$ops"
taskset -c "$cpu" "$work/bench" udp 127.0.0.1 "$udp" "$ops"
