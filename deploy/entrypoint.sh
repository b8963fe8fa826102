#!/bin/sh
# The ringkv container's entrypoint (POSIX sh: the runtime image has no bash).
#
#   node           run a node; its settings come from RINGKV_* variables and/or the
#                  config file named by RINGKV_CONFIG (see README: Config file). The default.
#   certs          make the cluster CA, a certificate for each name in RINGKV_NODES
#                  (space- or comma-separated) and a `client` certificate in RINGKV_CERTS,
#                  keeping any that already exist, so running it again is harmless.
#   anything else  `ringkv ARGS`, e.g. `--version` or `--node 172.28.0.11:7101 status`.
#
# RINGKV_BIN names the binary (default: ringkv on PATH). RINGKV_ENTRYPOINT_DRY_RUN=1
# prints each command instead of running it, so the script can be checked without a node.
set -eu

bin="${RINGKV_BIN:-ringkv}"

# Runs (or, in a dry run, prints) one command; `exec` replaces the shell so the node gets
# the container's signals directly.
run() {
    if [ "${RINGKV_ENTRYPOINT_DRY_RUN:-0}" = 1 ]; then
        printf '%s\n' "$*"
    else
        "$@"
    fi
}

run_last() {
    if [ "${RINGKV_ENTRYPOINT_DRY_RUN:-0}" = 1 ]; then
        printf '%s\n' "$*"
    else
        exec "$@"
    fi
}

make_certs() {
    dir="${RINGKV_CERTS:?certs mode needs RINGKV_CERTS, the directory to write}"
    names="${RINGKV_NODES:?certs mode needs RINGKV_NODES, the node names (e.g. n1 n2 n3)}"
    if [ -f "$dir/ca.pem" ]; then
        echo "entrypoint: keeping the CA in $dir"
    else
        run "$bin" certs init --dir "$dir"
    fi
    # Commas count as spaces; the names themselves are letters, digits and '-'.
    for name in $(printf '%s' "$names" | tr ',' ' '); do
        if [ -f "$dir/$name.pem" ]; then
            echo "entrypoint: keeping $dir/$name.pem"
        else
            run "$bin" certs issue --dir "$dir" --name "$name"
        fi
    done
    if [ -f "$dir/client.pem" ]; then
        echo "entrypoint: keeping $dir/client.pem"
    else
        run "$bin" certs issue --dir "$dir" --name client --client
    fi
}

mode="${1:-node}"
case "$mode" in
    node)
        [ "$#" -gt 0 ] && shift
        run_last "$bin" node "$@"
        ;;
    certs)
        shift
        make_certs
        ;;
    *)
        run_last "$bin" "$@"
        ;;
esac
