#!/usr/bin/env bash
# A/B of server builds through libnmdb: runs tests/c/bench.c's loops
# against each given nmdb binary in turn, twice, everything pinned to one
# CPU, and prints the time per iteration and the server's CPU time (from
# /proc/PID/task/*/schedstat) for:
#   - 1 client: 50000 `set` (asynchronous writes), 30000 `set-get`
#     (a write, then a read of a key never written);
#   - 8 clients at once: 10000 `set` each;
#   - with SYNC=1, also synchronous writes: 1 client 3000 `set-sync`, 8
#     clients at once 1000 `set-sync` each;
# over TCP and UDP.
# Usage: scripts/compare-servers.sh NMDB_BINARY...   (needs `make` first)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
rel=${CARGO_TARGET_DIR:-$top/target}/release
cpu=${BENCH_CPU:-0}
work=$(mktemp -d)
# The servers are waited for: a server still writing its database as it
# exits would put files back into what rm is removing.
trap 'kill $(jobs -p) 2>/dev/null || true; wait || true; rm -rf "$work"' EXIT
[ $# -ge 1 ] || { echo "usage: $0 NMDB_BINARY..." >&2; exit 2; }

cc -std=c99 -O2 -I "$top/include" -I "$top/tests/c" "$top/tests/c/bench.c" \
    "$rel/libnmdb.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -o "$work/bench"

# Milliseconds of CPU all threads of process $1 have used.
cpu_ms() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s / 1e6}'; }

# 1 client on transport $1, port $2, doing $3 calls of loop $4: the time
# per call and the server's CPU time. Uses $server, $bin, $round.
one_client() {
    local before line
    before=$(cpu_ms "$server")
    line=$(taskset -c "$cpu" "$work/bench" "$1" 127.0.0.1 "$2" "$3" "$4" | head -1)
    echo "round $round $(basename "$bin"): 1 client, $line; server $(($(cpu_ms "$server") - before)) ms"
}

# 8 clients at once on transport $1, port $2, each doing $3 calls of loop
# $4: the wall time and the server's CPU time. Uses $server, $bin, $round.
eight_clients() {
    local before start took clients=()
    before=$(cpu_ms "$server")
    start=$(date +%s%N)
    for _ in 1 2 3 4 5 6 7 8; do
        taskset -c "$cpu" "$work/bench" "$1" 127.0.0.1 "$2" "$3" "$4" >/dev/null &
        clients+=($!)
    done
    wait "${clients[@]}"
    took=$((($(date +%s%N) - start) / 1000000))
    echo "round $round $(basename "$bin"): 8 clients, $1 $3 calls each: $4 $took ms; server $(($(cpu_ms "$server") - before)) ms"
}

for round in 1 2; do
    for bin in "$@"; do
        dir=$(mktemp -d -p "$work")
        taskset -c "$cpu" "$bin" -f --no-tipc --no-sctp -T 127.0.0.1 -U 127.0.0.1 -t 0 -u 0 \
            -d "$dir/db" -o "$dir/log" &
        server=$!
        until grep -q ready "$dir/log" 2>/dev/null; do sleep 0.05; done
        for t in tcp udp; do
            port=$(grep -o "listening on $t 127.0.0.1:[0-9]*" "$dir/log" | grep -o '[0-9]*$')
            one_client "$t" "$port" 50000 set
            one_client "$t" "$port" 30000 set-get
            eight_clients "$t" "$port" 10000 set
            if [ "${SYNC:-0}" = 1 ]; then
                one_client "$t" "$port" 3000 set-sync
                eight_clients "$t" "$port" 1000 set-sync
            fi
        done
        kill "$server"
        wait "$server" 2>/dev/null || true
    done
done
