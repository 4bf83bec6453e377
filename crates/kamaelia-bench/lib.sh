# Shared by callgrind.sh and rounds.sh (sourced, not run): start and stop the processes a script
# measures, by PID. The sourcing script sets OUT (where each process's output goes) and BIN (where
# kamaelia-bench is).

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start NAME CMD...: runs CMD with its output in $OUT/NAME.out and .err; sets PID, and ADDR: from
# its "listening on IP:PORT" line (waited for up to 120 s: valgrind starts slowly on a busy
# machine), or 127.0.0.1:$PORT when PORT is set (a server that cannot report a port-0 bind).
start() {
    local name=$1 i
    shift
    rm -f "$OUT/$name.out"
    "$@" >"$OUT/$name.out" 2>>"$OUT/$name.err" &
    PID=$!
    PIDS+=("$PID")
    if [[ -n ${PORT:-} ]]; then
        ADDR=127.0.0.1:$PORT
        "$BIN/kamaelia-bench" wait-port --addr "$ADDR" --timeout 10
        return
    fi
    for ((i = 0; i < 2400; i++)); do
        ADDR=$(sed -n 's/^listening on //p' "$OUT/$name.out" | head -n1)
        [[ -n $ADDR ]] && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "$name did not start (see $OUT/$name.err)" >&2
    exit 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
