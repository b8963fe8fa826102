#!/usr/bin/env bash
# Latency through a `kill -9`: five real `ringkv node` processes on 127.0.0.1, a mixed
# load through n1, and one other node SIGKILLed in the middle of it.
#
# Why: the in-process simulations measure what the protocol does; this measures what a
# client sees from separate OS processes when one dies without warning — connections
# reset, QUIC idle timeouts, failure detection, stand-ins taking over. The per-second
# timeline of `ringkv bench` has p99 only and cannot isolate the seconds after the kill,
# so the load writes per-request records (`--latency-out`) and this script takes the
# percentiles of the window after the kill itself. It is a measuring tool, not a test:
# CI never runs it.
#
#   scripts/kill-under-load.sh                    # 3 interleaved rounds of each kind
#   ROUNDS=5 scripts/kill-under-load.sh
#   RINGKV=/path/to/ringkv scripts/kill-under-load.sh   # skip the cargo build
#
# What it does (certificates made once; each round on a fresh cluster with new data):
#   1. starts n1..n5 (`ringkv node`, static peers, default settings);
#   2. runs `ringkv bench --workload mixed --n 3 --w 2 --r 2 --concurrency 32
#      --duration-s 16` with --node n1,n2,..,n5 (n1 first: the client learns the
#      cluster from it) and --latency-out;
#   3. a kill round SIGKILLs n3 6 s into the timed run; a baseline round kills nothing;
#   4. reports, over the requests in flight at the kill or started in the 10 s after it
#      (at 6 s for a baseline), p99, p99.9 and max of the successful ones, how many took
#      over 500 ms, and the failed count.
# Rounds alternate kill, baseline, kill, ... and the medians close the report. Every
# process it started is killed on exit and its temporary directory removed.

set -euo pipefail

ROUNDS=${ROUNDS:-3}
NODES=5
# The node killed in a kill round (n1 is the client's seed and stays up).
VICTIM=3
DURATION_S=16
KILL_AT_MS=6000
WINDOW_MS=10000
CONCURRENCY=32
# Requests slower than this are counted apart (a stall behind the dead node).
SLOW_MS=500
# Longest wait for a node to say it listens.
READY_TIMEOUT_S=30
# Longest wait for the timed run to begin (connect and preload of 10000 keys).
RUN_START_TIMEOUT_S=120
# Longest wait for a bench to finish once its timed run began.
RUN_END_TIMEOUT_S=$((DURATION_S + 60))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-kill-under-load.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
die() { log "kill-under-load: $*"; exit 1; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
now_ms() { date +%s%3N; }

make_certs() {
    local i
    "$RINGKV" certs init --dir "$WORK/certs" >/dev/null
    for i in $(seq 1 "$NODES"); do
        "$RINGKV" certs issue --dir "$WORK/certs" --name "n$i" >/dev/null
    done
    "$RINGKV" certs issue --dir "$WORK/certs" --name client --client >/dev/null
}

# Starts n1..nNODES of round $1 on ports base+1..; sets NODE_PIDS and SEEDS.
start_cluster() {
    local round=$1 base i peers=() waited
    base=$(free_base_port "$NODES")
    for i in $(seq 1 "$NODES"); do
        peers+=(--peer "n$i=127.0.0.1:$((base + i))")
    done
    NODE_PIDS=()
    SEEDS=""
    for i in $(seq 1 "$NODES"); do
        "$RINGKV" node --name "n$i" --listen "127.0.0.1:$((base + i))" \
            --dir "$WORK/r$round/n$i" --certs "$WORK/certs" "${peers[@]}" \
            >"$WORK/r$round-n$i.log" 2>&1 &
        NODE_PIDS+=($!)
        PIDS+=($!)
        SEEDS+="${SEEDS:+,}127.0.0.1:$((base + i))"
    done
    for i in $(seq 1 "$NODES"); do
        waited=0
        until grep -q "listening on" "$WORK/r$round-n$i.log"; do
            kill -0 "${NODE_PIDS[$((i - 1))]}" 2>/dev/null ||
                die "n$i of round $round exited; see its log:$(tail -5 "$WORK/r$round-n$i.log")"
            ((waited < READY_TIMEOUT_S * 10)) || die "n$i of round $round did not listen within ${READY_TIMEOUT_S} s"
            sleep 0.1
            waited=$((waited + 1))
        done
    done
}

# Kills and reaps the round's nodes; the round's bench has been reaped already, so
# nothing this script started is left running and PIDS is emptied.
stop_cluster() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

# The run's start (Unix ms) from a latency file's first line, once it is written.
run_start_ms() {
    local file=$1 line
    [[ -s $file ]] || return 1
    line=$(head -n 1 "$file")
    [[ $line == "# run_start_unix_ms="* ]] || return 1
    echo "${line#*=}"
}

# "p99_ms p999_ms max_ms slow failed ok" over the requests of FILE in flight at FROM_US or
# started before TO_US (so those the kill caught mid-way count too): nearest-rank
# percentiles and maximum of the successful ones, and how many took over SLOW_MS.
window_figures() {
    local file=$1 from_us=$2 to_us=$3 failed
    failed=$(awk -F, -v from="$from_us" -v to="$to_us" \
        '$1 ~ /^[0-9]+$/ && $1 + $2 >= from && $1 < to && $3 == 0 {n++} END {print n + 0}' "$file")
    awk -F, -v from="$from_us" -v to="$to_us" \
        '$1 ~ /^[0-9]+$/ && $1 + $2 >= from && $1 < to && $3 == 1 {print $2}' "$file" |
        sort -n |
        awk -v failed="$failed" -v slow_us=$((SLOW_MS * 1000)) '
            {v[NR] = $1; if ($1 > slow_us) slow++}
            function rank(p,   i) { i = int(p * NR); if (i < p * NR) i++; if (i < 1) i = 1; return v[i] / 1000 }
            END {
                if (NR == 0) { printf "0 0 0 0 %d 0\n", failed; exit }
                printf "%.3f %.3f %.3f %d %d %d\n", rank(0.99), rank(0.999), v[NR] / 1000, slow, failed, NR
            }'
}

# One round: $1 = round number, $2 = kill or baseline. Appends a line to $WORK/results.
run_round() {
    local round=$1 kind=$2
    local lat="$WORK/r$round-latency.csv" out="$WORK/r$round-bench.json"
    local bench waited start kill_ms offset_ms=$KILL_AT_MS figures whole p99 p999 max slow failed ok
    start_cluster "$round"
    "$RINGKV" --json bench --workload mixed --n 3 --w 2 --r 2 \
        --concurrency "$CONCURRENCY" --duration-s "$DURATION_S" \
        --node "$SEEDS" --certs "$WORK/certs" --latency-out "$lat" \
        >"$out" 2>"$WORK/r$round-bench.log" &
    bench=$!
    PIDS+=($bench)
    waited=0
    until start=$(run_start_ms "$lat"); do
        kill -0 "$bench" 2>/dev/null || die "bench of round $round exited before its run began: $(tail -5 "$WORK/r$round-bench.log")"
        ((waited < RUN_START_TIMEOUT_S * 10)) || die "bench of round $round did not begin within ${RUN_START_TIMEOUT_S} s"
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ $kind == kill ]]; then
        # Sleep to the kill time in short steps, so the kill lands within ~20 ms of it.
        until (($(now_ms) >= start + KILL_AT_MS)); do
            sleep 0.02
        done
        kill -KILL "${NODE_PIDS[$((VICTIM - 1))]}"
        kill_ms=$(now_ms)
        offset_ms=$((kill_ms - start))
        # Reaped here, quietly (bash would otherwise announce the killed job).
        wait "${NODE_PIDS[$((VICTIM - 1))]}" 2>/dev/null || true
    fi
    waited=0
    while kill -0 "$bench" 2>/dev/null; do
        ((waited < RUN_END_TIMEOUT_S * 10)) || die "bench of round $round still runs ${RUN_END_TIMEOUT_S} s after its run began"
        sleep 0.1
        waited=$((waited + 1))
    done
    wait "$bench" || die "bench of round $round failed: $(tail -5 "$WORK/r$round-bench.log")"
    stop_cluster
    figures=$(window_figures "$lat" $((offset_ms * 1000)) $(((offset_ms + WINDOW_MS) * 1000)))
    read -r p99 p999 max slow failed ok <<<"$figures"
    whole=$(jq -c '{ops_per_sec, errors, p99_ms, p999_ms}' "$out")
    printf '%s %s %s %s %s %s %s %s %s\n' "$round" "$kind" "$offset_ms" "$p99" "$p999" "$max" "$slow" "$failed" "$ok" >>"$WORK/results"
    log "round $round ($kind): window from ${offset_ms} ms for ${WINDOW_MS} ms: p99 ${p99} ms, p99.9 ${p999} ms, max ${max} ms, ${slow} over ${SLOW_MS} ms, ${failed} failed of $((failed + ok)); whole run: $whole; load average after it: $(cut -d' ' -f1-3 /proc/loadavg)"
}

command -v jq >/dev/null || die "jq is needed to read bench's JSON: apt-get install jq"
find_ringkv
make_certs
: >"$WORK/results"
log "ringkv: $RINGKV; $(nproc) cores; $ROUNDS rounds of each kind, interleaved"
for r in $(seq 1 "$ROUNDS"); do
    run_round $((2 * r - 1)) kill
    run_round $((2 * r)) baseline
done

printf '\n%-6s %-9s %-14s %-10s %-10s %-10s %-9s %-7s %s\n' round kind window_from_ms \
    p99_ms p99.9_ms max_ms "over_${SLOW_MS}" failed requests
while read -r round kind offset p99 p999 max slow failed ok; do
    printf '%-6s %-9s %-14s %-10s %-10s %-10s %-9s %-7s %s\n' "$round" "$kind" "$offset" \
        "$p99" "$p999" "$max" "$slow" "$failed" "$((failed + ok))"
done <"$WORK/results"
for kind in kill baseline; do
    printf 'median %-9s p99 %s ms, p99.9 %s ms, max %s ms, over %s ms %s, failed %s\n' "$kind" \
        "$(awk -v k="$kind" '$2 == k {print $4}' "$WORK/results" | median)" \
        "$(awk -v k="$kind" '$2 == k {print $5}' "$WORK/results" | median)" \
        "$(awk -v k="$kind" '$2 == k {print $6}' "$WORK/results" | median)" \
        "$SLOW_MS" \
        "$(awk -v k="$kind" '$2 == k {print $7}' "$WORK/results" | median)" \
        "$(awk -v k="$kind" '$2 == k {print $8}' "$WORK/results" | median)"
done
