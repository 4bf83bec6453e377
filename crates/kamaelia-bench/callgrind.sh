#!/usr/bin/env bash
# Instructions (and allocations: malloc, calloc, aligned) per relayed connection, per echo connection and per echoed
# message, counted by callgrind: counts do not depend on the machine's load, so they compare builds
# exactly where timed runs cannot.
#
#   crates/kamaelia-bench/callgrind.sh                  # all three, kamaelia and the tokio baselines
#   CASES="relay" SERVERS="kamaelia" crates/kamaelia-bench/callgrind.sh
#
# Knobs (environment): CASES (any of "relay connect echo"), SERVERS (any of "kamaelia tokio"),
# N (measured connects, 2000), WARM (connects before the counters are zeroed, 200), ECHO_SECS (5),
# OUT (directory for callgrind's files; default target/bench/callgrind-DATE, never committed),
# KAMAELIA (another build of the `kamaelia` binary to count instead of this checkout's),
# CACHE (1: also simulate the caches and report first-level data-cache misses, reads + writes, per
# unit: at 512 connections the lines a message touches miss, so this counts them).
#
# relay:   the relay (kamaelia relay / tokio-relay) in front of mio-echo; WARM connects, counters
#          zeroed, N connects (1-byte echo each, 16 at a time), counters dumped.
# connect: the same against the echo server itself (kamaelia serve / tokio-echo).
# echo:    512 connections echoing 64-byte messages for ECHO_SECS; counters zeroed 2 s in and
#          dumped at the end; the divisor is the number of send() calls in the window.
# Every process is started and stopped here by PID; every load is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/../.."
CASES=${CASES:-"relay connect echo"}
SERVERS=${SERVERS:-"kamaelia tokio"}
N=${N:-2000}
WARM=${WARM:-200}
ECHO_SECS=${ECHO_SECS:-5}
OUT=${OUT:-$PWD/target/bench/callgrind-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --release -q -p kamaelia-cli -p kamaelia-bench
BIN=$OUT/bin
mkdir -p "$BIN"
cp target/release/{kamaelia,kamaelia-bench,mio-echo,tokio-echo,tokio-relay} "$BIN/"
[[ -n ${KAMAELIA:-} ]] && cp "$KAMAELIA" "$BIN/kamaelia"

# shellcheck source=crates/kamaelia-bench/lib.sh
source crates/kamaelia-bench/lib.sh # after the cd to the workspace root

# total FILE: the instructions of a callgrind dump; calls FILE FN: calls to FN in it.
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
d1misses() { # D1mr + D1mw of a dump made with CACHE=1
    callgrind_annotate --show=D1mr,D1mw "$1" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); gsub(",", "", $3); print $1 + $3}'
}
calls() { # the sum of the call counts on every edge into FN (one edge per caller)
    callgrind_annotate --threshold=100 --tree=calling --inclusive=yes "$1" 2>/dev/null |
        awk -v fn=":$2 [(]" '$0 ~ fn && $0 ~ />/ && match($0, /[(][0-9,]+x[)]/) {
            c = substr($0, RSTART + 1, RLENGTH - 3); gsub(",", "", c); n += c }
            END { print n + 0 }'
}
# counted NAME CMD...: the server under callgrind, counters off until zeroed.
counted() {
    local name=$1
    shift
    local cache=()
    [[ ${CACHE:-0} == 1 ]] && cache=(--cache-sim=yes)
    start "$name" valgrind --tool=callgrind "${cache[@]}" --callgrind-out-file="$OUT/$name.cg" "$@"
}
dump() { callgrind_control -d "$1" >/dev/null; sleep 1; ls -t "$OUT/$2".cg.* | head -n1; }

server_cmd() { # kind server -> the command for it
    case $1-$2 in
        relay-kamaelia) echo "$BIN/kamaelia relay --listen 127.0.0.1:0 --to $BACKEND --drain-timeout 1" ;;
        relay-tokio) echo "$BIN/tokio-relay --listen 127.0.0.1:0 --to $BACKEND" ;;
        *-kamaelia) echo "$BIN/kamaelia serve --listen 127.0.0.1:0 --drain-timeout 1" ;;
        *-tokio) echo "$BIN/tokio-echo --listen 127.0.0.1:0" ;;
    esac
}

for case in $CASES; do
    for server in $SERVERS; do
        name=$case-$server
        BACKEND=
        if [[ $case == relay ]]; then
            start mio "$BIN/mio-echo" --listen 127.0.0.1:0
            BACKEND=$ADDR MIO=$PID
        fi
        # shellcheck disable=SC2046
        counted "$name" $(server_cmd "$case" "$server")
        SRV=$PID
        if [[ $case == echo ]]; then
            timeout 60 "$BIN/kamaelia-bench" echo --addr "$ADDR" -c 512 -s 64 \
                --duration "$ECHO_SECS" --warmup 0.5 >"$OUT/$name.bench" &
            GEN=$!
            sleep 2
            callgrind_control -z "$SRV" >/dev/null
            wait "$GEN"
            file=$(dump "$SRV" "$name")
            per=$(calls "$file" 'send')
        else
            timeout 120 "$BIN/kamaelia-bench" connect --addr "$ADDR" -n "$WARM" -c 16 >/dev/null
            callgrind_control -z "$SRV" >/dev/null
            timeout 300 "$BIN/kamaelia-bench" connect --addr "$ADDR" -n "$N" -c 16 >"$OUT/$name.bench"
            file=$(dump "$SRV" "$name")
            per=$N
        fi
        instr=$(total "$file")
        mallocs=$(calls "$file" '(malloc|calloc|_mid_memalign[^ ]*)')
        stop "$SRV"
        [[ -n $BACKEND ]] && stop "$MIO"
        if [[ $case == echo ]]; then unit=message; else unit=connection; fi
        misses=
        [[ ${CACHE:-0} == 1 ]] && misses=$(d1misses "$file")
        awk -v n="$name" -v i="$instr" -v p="$per" -v m="${mallocs:-0}" -v u="$unit" -v d="$misses" 'BEGIN {
            printf "%-16s %10.0f instructions per %s  %6.1f allocations per %s", n, i / p, u, m / p, u
            if (d != "") printf "  %6.1f L1 data misses per %s", d / p, u
            printf "  (%s / %s)\n", i, p }' | tee -a "$OUT/summary.txt"
    done
done
echo "callgrind files in $OUT"
