# Helpers shared by the measuring scripts (compare-redis.sh, kill-under-load.sh), sourced
# after each defines `ROOT`, `log` and `die` (whose message names the script).

# True when no TCP or UDP socket listens on any of the given ports.
ports_free() {
    local port
    for port in "$@"; do
        if ss -Htuln | awk '{print $5}' | grep -qE "[:.]${port}\$"; then
            return 1
        fi
    done
}

# A base port such that base+1 .. base+count are all free.
free_base_port() {
    local count=$1 base try ports
    for try in $(seq 1 200); do
        base=$((20000 + RANDOM % 40000))
        ports=$(seq $((base + 1)) $((base + count)))
        # shellcheck disable=SC2086
        if ports_free $ports; then
            echo "$base"
            return 0
        fi
    done
    die "no free ports found after $try tries"
}

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Sets RINGKV to the release binary, building it unless RINGKV already names one.
find_ringkv() {
    if [[ -n ${RINGKV:-} ]]; then
        [[ -x $RINGKV ]] || die "RINGKV=$RINGKV is not an executable"
        return 0
    fi
    log "building ringkv (release)"
    (cd "$ROOT" && cargo build --release -q -p ringkv-cli)
    RINGKV="${CARGO_TARGET_DIR:-$ROOT/target}/release/ringkv"
    [[ -x $RINGKV ]] || die "the build did not produce $RINGKV"
}
