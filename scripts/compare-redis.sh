#!/usr/bin/env bash
# Compares ringkv with Redis on one machine: GET and SET/PUT throughput and latency.
#
# Why: Redis is the familiar yardstick for a key-value store on loopback. This script
# runs both under the same client concurrency and value size, interleaving the runs so
# background load on a shared machine hits both alike, and prints ringkv/Redis ratios.
# It is a measuring tool, not a test: CI never runs it.
#
#   scripts/compare-redis.sh                # 3 rounds of 100000 requests per run
#   OPS=50000 ROUNDS=5 CLUSTER_OPS=50000 scripts/compare-redis.sh
#   RINGKV=/path/to/ringkv scripts/compare-redis.sh   # skip the cargo build
#
# What it does:
#   1. installs redis-server and redis-tools from apt if missing;
#   2. starts redis-server on a free loopback port with persistence off;
#   3. starts `ringkv dev --nodes 1` in a temporary directory on free ports;
#   4. ROUNDS times: redis-benchmark -t set, ringkv bench put, redis-benchmark -t get,
#      ringkv bench get (50 clients / in flight, 100-byte values, 10000 uniform keys,
#      N=W=R=1); prints each pair's ratio and the median ratio;
#   5. starts `ringkv dev --nodes 3` and runs put and get with N=3/W=2/R=2 at 16 and 50
#      requests in flight (CLUSTER_OPS requests each).
# Everything it started is stopped on exit, and its temporary directory removed.

set -euo pipefail

OPS=${OPS:-100000}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
VALUE_SIZE=${VALUE_SIZE:-100}
KEYS=${KEYS:-10000}
# Requests per run of the 3-node part: replication makes each one slower.
CLUSTER_OPS=${CLUSTER_OPS:-20000}
# Longest wait for a server to answer after it was started.
READY_TIMEOUT_S=30
# Longest wait for a server to stop after SIGINT before it is killed.
STOP_TIMEOUT_S=15

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-vs-redis.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
die() { log "compare-redis: $*"; exit 1; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# Stops one process this script started: SIGINT (ringkv dev stops its nodes cleanly),
# then SIGKILL if it is still there after STOP_TIMEOUT_S.
stop_pid() {
    local pid=$1 waited=0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -INT "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT_S * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# One numeric field of ringkv bench's one-line JSON object.
json_field() { jq -r ".$2" <<<"$1"; }

# A field of redis-benchmark --csv output (rps, p50_latency_ms, p99_latency_ms, ...).
csv_field() {
    awk -F, -v want="$2" '
        { gsub(/"/, "") }
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { print $(col[want]) }' <<<"$1"
}

install_redis() {
    if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
        return 0
    fi
    log "installing redis-server and redis-tools from apt"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "redis-server is missing and this is not root: install redis-server redis-tools"
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server redis-tools >/dev/null
}

start_redis() {
    REDIS_PORT=$(free_base_port 1)
    REDIS_PORT=$((REDIS_PORT + 1))
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
    PIDS+=($!)
    local waited=0
    until redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do
        ((waited < READY_TIMEOUT_S * 10)) || die "redis-server did not answer on port $REDIS_PORT; see $WORK/redis.log"
        sleep 0.1
        waited=$((waited + 1))
    done
    log "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$REDIS_PORT (no persistence)"
}

# Starts `ringkv dev --nodes COUNT` and waits until a write with W=COUNT succeeds.
start_ringkv_dev() {
    local count=$1 base waited=0
    base=$(free_base_port "$count")
    DEV_DIR="$WORK/dev-$count"
    RINGKV_ARGS=(--node "127.0.0.1:$((base + 1))" --certs "$DEV_DIR/certs")
    "$RINGKV" dev --nodes "$count" --base-port "$base" --dir "$DEV_DIR" >"$WORK/dev-$count.log" 2>&1 &
    DEV_PID=$!
    PIDS+=("$DEV_PID")
    until "$RINGKV" "${RINGKV_ARGS[@]}" put bench/ready yes --n "$count" --w "$count" >/dev/null 2>&1; do
        kill -0 "$DEV_PID" 2>/dev/null || die "ringkv dev exited; see $WORK/dev-$count.log"
        ((waited < READY_TIMEOUT_S * 10)) || die "ringkv dev --nodes $count did not answer; see $WORK/dev-$count.log"
        sleep 0.1
        waited=$((waited + 1))
    done
    log "ringkv dev: $count node(s) from 127.0.0.1:$((base + 1)), data in $DEV_DIR"
}

stop_ringkv_dev() { stop_pid "$DEV_PID"; }

# redis-benchmark for one test (set or get); prints "rps p50 p99".
redis_run() {
    local out
    out=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CLIENTS" -d "$VALUE_SIZE" \
        -r "$KEYS" -n "$OPS" -t "$1" --csv 2>/dev/null)
    echo "$(csv_field "$out" rps) $(csv_field "$out" p50_latency_ms) $(csv_field "$out" p99_latency_ms)"
}

# ringkv bench for one workload; prints "ops_per_sec p50 p99 errors".
ringkv_run() {
    local workload=$1 concurrency=$2 n=$3 w=$4 r=$5 ops=$6 out
    out=$("$RINGKV" "${RINGKV_ARGS[@]}" --json bench --workload "$workload" --ops "$ops" \
        --concurrency "$concurrency" --value-size "$VALUE_SIZE" --keys "$KEYS" \
        --distribution uniform --n "$n" --w "$w" --r "$r")
    echo "$(json_field "$out" ops_per_sec) $(json_field "$out" p50_ms) $(json_field "$out" p99_ms) $(json_field "$out" errors)"
}

main() {
    command -v jq >/dev/null || die "jq is needed to read ringkv's JSON: apt-get install jq"
    install_redis
    find_ringkv
    start_redis
    start_ringkv_dev 1

    echo "# ringkv vs Redis, 1 node, $CLIENTS in flight, $VALUE_SIZE-byte values, $KEYS uniform keys, $OPS requests per run"
    echo "# ringkv: N=W=R=1, LWW puts, sync=group (fsync per batch); Redis: --save \"\" --appendonly no"
    printf '%-5s %-4s %12s %9s %9s %12s %9s %9s %7s %7s\n' \
        round op redis_ops/s r_p50_ms r_p99_ms ringkv_ops/s k_p50_ms k_p99_ms errors ratio
    local round op ratio workload r_rps r_p50 r_p99 k_rps k_p50 k_p99 k_err
    local -A ratios=()
    for round in $(seq 1 "$ROUNDS"); do
        for op in set get; do
            if [[ $op == get ]]; then workload="get"; else workload="put"; fi
            read -r r_rps r_p50 r_p99 <<<"$(redis_run "$op")"
            read -r k_rps k_p50 k_p99 k_err <<<"$(ringkv_run "$workload" "$CLIENTS" 1 1 1 "$OPS")"
            ratio=$(awk -v k="$k_rps" -v r="$r_rps" 'BEGIN {printf "%.3f", (r > 0) ? k / r : 0}')
            ratios[$op]+="$ratio "
            printf '%-5s %-4s %12.0f %9s %9s %12.0f %9s %9s %7s %7s\n' \
                "$round" "$op" "$r_rps" "$r_p50" "$r_p99" "$k_rps" "$k_p50" "$k_p99" "$k_err" "$ratio"
        done
    done
    for op in set get; do
        # shellcheck disable=SC2086
        echo "median ringkv/redis ratio, $op: $(printf '%s\n' ${ratios[$op]} | median)"
    done
    stop_ringkv_dev

    start_ringkv_dev 3
    echo
    echo "# ringkv, 3 nodes (one process), N=3 W=2 R=2, $VALUE_SIZE-byte values, $KEYS uniform keys, $CLUSTER_OPS requests per run"
    printf '%-4s %9s %12s %9s %9s %7s\n' op in_flight ops/s p50_ms p99_ms errors
    local concurrency workload k_rps k_p50 k_p99 k_err
    for concurrency in 16 50; do
        for workload in put get; do
            read -r k_rps k_p50 k_p99 k_err <<<"$(ringkv_run "$workload" "$concurrency" 3 2 2 "$CLUSTER_OPS")"
            printf '%-4s %9s %12.0f %9s %9s %7s\n' "$workload" "$concurrency" "$k_rps" "$k_p50" "$k_p99" "$k_err"
        done
    done
    stop_ringkv_dev
}

main "$@"
