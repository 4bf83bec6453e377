#!/usr/bin/env bash
# The benchmark matrix: kamaelia's server and relay against an idiomatic tokio baseline, a minimal
# mio echo server (the one-core limit), socat and haproxy, on loopback, side by side in one run.
#
#   crates/kamaelia-bench/run.sh                      # full matrix: REPS=5, 3 s cells (~25 min)
#   REPS=3 DUR=2 crates/kamaelia-bench/run.sh         # quicker pass
#   SECTIONS="echo tls" REPS=1 DUR=1 crates/kamaelia-bench/run.sh   # a smoke test
#
# Knobs (environment): REPS, DUR (seconds per measured cell), WARMUP, SECTIONS (any of
# "echo stream connect idle relay tls"), ECHO_CONNS, ECHO_SIZES, CONNECT_N, RELAY_CONNECT_N,
# IDLE_N, IDLE_REPS, IDLE_TIMEOUT, OUT (results directory; default target/bench/DATE).
# SUMMARY_ONLY=1 with OUT set only prints the summary of an earlier run's results.txt.
#
# Servers are alternated cell by cell (A B C, then B C A, ... for REPS repetitions), so slow drift
# on a shared machine hits every server alike; the summary gives per-cell medians and the median of
# the per-repetition ratios. Every process this script starts is recorded by PID and stopped by
# PID (SIGTERM, then SIGKILL after 3 s), also on exit or interruption. Each generator run is
# bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

REPS=${REPS:-5}
DUR=${DUR:-3}
WARMUP=${WARMUP:-0.5}
SECTIONS=${SECTIONS:-"echo stream connect idle relay tls"}
CONNECT_N=${CONNECT_N:-5000}
RELAY_CONNECT_N=${RELAY_CONNECT_N:-2000}
IDLE_N=${IDLE_N:-10000}
IDLE_REPS=${IDLE_REPS:-$REPS}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-45}
OUT=${OUT:-$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}
RESULTS=$OUT/results.txt

mkdir -p "$OUT"
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$OUT/run.log" >&2; }

ECHO_SERVERS="kamaelia tokio mio"
RELAYS="kamaelia-relay tokio-relay socat haproxy"
has() { [[ " $SECTIONS " == *" $1 "* ]]; }

if [[ -z ${SUMMARY_ONLY:-} ]]; then
: >"$RESULTS"

# ---- processes we started, by PID -------------------------------------------------------------
declare -a STARTED=()
declare -A SRV_PID=() SRV_ADDR=()

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- build and tools --------------------------------------------------------------------------
log "building (release)"
cargo build --release -q -p kamaelia-cli -p kamaelia-bench
# A private copy: a rebuild of target/release during the run cannot swap binaries under it.
mkdir -p "$OUT/bin"
cp "$ROOT/target/release/"{kamaelia,kamaelia-bench,tokio-echo,mio-echo,tokio-relay} "$OUT/bin/"
BIN=$OUT/bin

need_apt=()
command -v socat >/dev/null || need_apt+=(socat)
command -v haproxy >/dev/null || need_apt+=(haproxy)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]} (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null) ||
        log "warning: could not install ${need_apt[*]}; those relays are skipped"
fi
HAPROXY=$(command -v haproxy || true)
SOCAT=$(command -v socat || true)

# 10,000 idle connections need as many descriptors in the generator and in each server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open files limit: $(ulimit -n)"

CERTS=$OUT/certs
"$BIN/kamaelia-bench" gen-cert --dir "$CERTS"

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
    echo "memory: $(free -g | awk '/Mem:/ {print $2 " GiB"}')"
    echo "rustc: $(rustc --version)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git status --porcelain -- crates/axon crates/kamaelia crates/kamaelia-cli 2>/dev/null | grep -q . && echo ' (+ uncommitted changes in crates/)')"
    echo "socat: $([ -n "$SOCAT" ] && socat -V 2>/dev/null | grep -m1 'socat version' || echo missing)"
    echo "haproxy: $([ -n "$HAPROXY" ] && haproxy -v 2>/dev/null | head -1 || echo missing)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings: REPS=$REPS DUR=$DUR WARMUP=$WARMUP CONNECT_N=$CONNECT_N RELAY_CONNECT_N=$RELAY_CONNECT_N IDLE_N=$IDLE_N IDLE_REPS=$IDLE_REPS"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---- servers ----------------------------------------------------------------------------------
BACKEND="" # the mio echo server the relays forward to

# Prints the command line for server NAME.
server_cmd() {
    case $1 in
    kamaelia) echo "$BIN/kamaelia serve --listen 127.0.0.1:0 --drain-timeout 1" ;;
    tokio) echo "$BIN/tokio-echo --listen 127.0.0.1:0" ;;
    mio) echo "$BIN/mio-echo --listen 127.0.0.1:0" ;;
    kamaelia-tls) echo "$BIN/kamaelia serve --listen 127.0.0.1:0 --drain-timeout 1 --tls-cert $CERTS/cert.pem --tls-key $CERTS/key.pem" ;;
    tokio-tls) echo "$BIN/tokio-echo --listen 127.0.0.1:0 --tls-cert $CERTS/cert.pem --tls-key $CERTS/key.pem" ;;
    kamaelia-relay) echo "$BIN/kamaelia relay --listen 127.0.0.1:0 --to $BACKEND --drain-timeout 1" ;;
    tokio-relay) echo "$BIN/tokio-relay --listen 127.0.0.1:0 --to $BACKEND" ;;
    socat) echo "$SOCAT -t 5 TCP-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay TCP:$BACKEND,nodelay" ;;
    haproxy) echo "$HAPROXY -db -f $OUT/haproxy.cfg" ;;
    *) return 1 ;;
    esac
}

haproxy_cfg() {
    cat >"$OUT/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind 127.0.0.1:$1
    default_backend echo
backend echo
    server mio $BACKEND
EOF
}

# Starts server NAME; sets SRV_PID[NAME] and SRV_ADDR[NAME].
start_server() {
    local name=$1 cmd port="" addr="" i pid
    cmd=$(server_cmd "$name")
    if [[ $name == socat || $name == haproxy ]]; then
        # They cannot report a port-0 bind: take a free port, then wait until it accepts.
        port=$("$BIN/kamaelia-bench" free-port)
        cmd=${cmd//PORT/$port}
        [[ $name == haproxy ]] && haproxy_cfg "$port"
    fi
    # A fresh file: a line left by an earlier instance must not be read as this one's address.
    rm -f "$OUT/$name.out"
    # shellcheck disable=SC2086 # the command line is split on purpose
    $cmd >"$OUT/$name.out" 2>>"$OUT/$name.err" &
    pid=$!
    STARTED+=("$pid")
    if [[ -n $port ]]; then
        addr=127.0.0.1:$port
        "$BIN/kamaelia-bench" wait-port --addr "$addr" --timeout 10 ||
            { log "error: $name did not start"; return 1; }
    else
        for ((i = 0; i < 200; i++)); do
            addr=$(sed -n 's/^listening on //p' "$OUT/$name.out" 2>/dev/null || true)
            [[ -n $addr ]] && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        [[ -n $addr ]] || { log "error: $name did not start (see $OUT/$name.err)"; return 1; }
    fi
    SRV_PID[$name]=$pid
    SRV_ADDR[$name]=$addr
    log "started $name pid=$pid addr=$addr"
}

stop_server() {
    local name=$1
    [[ -n ${SRV_PID[$name]:-} ]] || return 0
    stop_pid "${SRV_PID[$name]}"
    unset "SRV_PID[$name]" "SRV_ADDR[$name]"
}

# Restarts server NAME if it died (the run is recorded as failed by the generator anyway).
ensure_server() {
    local name=$1
    if [[ -z ${SRV_PID[$name]:-} ]] || ! kill -0 "${SRV_PID[$name]}" 2>/dev/null; then
        log "warning: $name is not running; (re)starting it"
        start_server "$name"
    fi
}

# ---- one measurement --------------------------------------------------------------------------
# run_gen SECTION CELL SERVER REP PIDFLAG GENERATOR-ARGS...: runs the generator against SERVER and
# appends one line to results.txt. PIDFLAG=1 passes the server's PID (CPU per message).
run_gen() {
    local section=$1 cell=$2 server=$3 rep=$4 pidflag=$5 line limit
    shift 5
    local args=("$@" --addr "${SRV_ADDR[$server]}")
    ((pidflag)) && args+=(--server-pid "${SRV_PID[$server]}")
    limit=$(awk -v d="$DUR" 'BEGIN { printf "%d", d + 90 }')
    echo "== $section $cell $server rep=$rep: kamaelia-bench ${args[*]}" >>"$OUT/generator.err"
    line=$(timeout "$limit" "$BIN/kamaelia-bench" "${args[@]}" 2>>"$OUT/generator.err" | grep '^RESULT' || true)
    if [[ -z $line ]]; then
        line="RESULT failed=1 errors=1"
    fi
    # load1: the 1-minute load average after the run (2 = both cores busy), to spot noisy runs.
    echo "section=$section cell=$cell server=$server rep=$rep ${line#RESULT } load1=$(cut -d' ' -f1 /proc/loadavg)" |
        tee -a "$RESULTS" >&2
}

# skipped SECTION CELL SERVER REP: records a run that could not happen (the server would not start).
skipped() {
    echo "section=$1 cell=$2 server=$3 rep=$4 failed=1 errors=1" | tee -a "$RESULTS" >&2
}

# rotate REP NAMES...: the names rotated left by REP-1, so each server takes each place in turn.
rotate() {
    local rep=$1
    shift
    local n=$# k=$(((rep - 1) % $#)) i
    local a=("$@")
    for ((i = 0; i < n; i++)); do printf '%s ' "${a[$(((i + k) % n))]}"; done
}

# matrix SECTION CELL PIDFLAG "SERVERS" GENERATOR-ARGS...: REPS rounds, servers alternated.
matrix() {
    local section=$1 cell=$2 pidflag=$3 servers=$4 rep s
    shift 4
    for ((rep = 1; rep <= REPS; rep++)); do
        for s in $(rotate "$rep" $servers); do
            ensure_server "$s" || { skipped "$section" "$cell" "$s" "$rep"; continue; }
            run_gen "$section" "$cell" "$s" "$rep" "$pidflag" "$@"
        done
    done
}

T=(--duration "$DUR" --warmup "$WARMUP")

if has idle; then
    # First, while few sockets linger in TIME_WAIT from earlier sections (they slow the kernel's
    # choice of local ports). A fresh server per run: its memory before the connections is the
    # baseline.
    for ((rep = 1; rep <= IDLE_REPS; rep++)); do
        for s in $(rotate "$rep" $ECHO_SERVERS); do
            start_server "$s" || { skipped idle "n$IDLE_N" "$s" "$rep"; continue; }
            sleep 0.2
            run_gen idle "n$IDLE_N" "$s" "$rep" 1 idle -n "$IDLE_N" --hold 1 --timeout "$IDLE_TIMEOUT"
            stop_server "$s"
        done
    done
fi

if has echo || has stream || has connect; then
    for s in $ECHO_SERVERS; do start_server "$s"; done
fi
if has echo; then
    for c in ${ECHO_CONNS:-1 64 512}; do
        for sz in ${ECHO_SIZES:-64 4096 65536}; do
            matrix echo "c${c}_s${sz}" 1 "$ECHO_SERVERS" echo -c "$c" -s "$sz" "${T[@]}"
        done
    done
fi
if has stream; then
    for c in 1 16; do
        matrix stream "c$c" 1 "$ECHO_SERVERS" stream -c "$c" "${T[@]}"
    done
fi
for s in $ECHO_SERVERS; do stop_server "$s"; done
if has connect; then
    # A fresh server, on a fresh port, for every run: each run leaves CONNECT_N connections in
    # TIME_WAIT toward the port it used, and 28,000 ephemeral ports toward one port fill within a
    # few runs, after which the generator's connect(2) searches for a free port and measures that.
    for ((rep = 1; rep <= REPS; rep++)); do
        for s in $(rotate "$rep" $ECHO_SERVERS); do
            start_server "$s" || { skipped connect "n$CONNECT_N" "$s" "$rep"; continue; }
            run_gen connect "n$CONNECT_N" "$s" "$rep" 1 connect -n "$CONNECT_N" -c 16
            stop_server "$s"
        done
    done
fi

if has relay; then
    start_server mio
    BACKEND=${SRV_ADDR[mio]}
    RELAYS="kamaelia-relay tokio-relay"
    [[ -n $SOCAT ]] && RELAYS+=" socat"
    [[ -n $HAPROXY ]] && RELAYS+=" haproxy"
    for r in $RELAYS; do start_server "$r"; done
    # socat forks a process per connection: its CPU is not in one PID, so it gets none reported.
    relay_matrix() {
        local cell=$1 rep r
        shift
        for ((rep = 1; rep <= REPS; rep++)); do
            for r in $(rotate "$rep" $RELAYS); do
                ensure_server "$r" || { skipped relay "$cell" "$r" "$rep"; continue; }
                run_gen relay "$cell" "$r" "$rep" "$([[ $r == socat ]] && echo 0 || echo 1)" "$@"
            done
        done
    }
    for sz in 64 4096 65536; do relay_matrix "echo_c64_s$sz" echo -c 64 -s "$sz" "${T[@]}"; done
    for c in 1 16; do relay_matrix "stream_c$c" stream -c "$c" "${T[@]}"; done
    for r in $RELAYS mio; do stop_server "$r"; done
    # Connect: a fresh backend and relay, on fresh ports, for every run (as for the echo servers'
    # connect cells). The relay is the side that closes first toward the backend, so its
    # connections to the backend's one port stay in TIME_WAIT; shared across runs, they would
    # make later runs measure the relay's connect(2) searching for a free port.
    for ((rep = 1; rep <= REPS; rep++)); do
        for r in $(rotate "$rep" $RELAYS); do
            start_server mio || { skipped relay "connect_n$RELAY_CONNECT_N" "$r" "$rep"; continue; }
            BACKEND=${SRV_ADDR[mio]}
            start_server "$r" || { skipped relay "connect_n$RELAY_CONNECT_N" "$r" "$rep"; stop_server mio; continue; }
            run_gen relay "connect_n$RELAY_CONNECT_N" "$r" "$rep" "$([[ $r == socat ]] && echo 0 || echo 1)" \
                connect -n "$RELAY_CONNECT_N" -c 16
            stop_server "$r"
            stop_server mio
        done
    done
fi

if has tls; then
    TLS_SERVERS="kamaelia-tls tokio-tls"
    for s in $TLS_SERVERS; do start_server "$s"; done
    matrix tls echo_c64_s4096 1 "$TLS_SERVERS" echo -c 64 -s 4096 --tls "$CERTS/ca.pem" "${T[@]}"
    matrix tls stream_c1 1 "$TLS_SERVERS" stream -c 1 --tls "$CERTS/ca.pem" "${T[@]}"
    for s in $TLS_SERVERS; do stop_server "$s"; done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
fi # SUMMARY_ONLY

# ---- summary ----------------------------------------------------------------------------------
# table SECTION METRIC REF "SERVERS" [CELL-PREFIX]: per-cell medians of METRIC for each server, and
# the median over repetitions of REF/other for each other server (with the lowest and highest of
# those ratios); the last column names the runs (server#rep) that saw errors or did not pass.
table() {
    awk -v section="$1" -v metric="$2" -v ref="$3" -v servers="$4" -v prefix="${5:-}" '
    function median(v, n,   i, j, t) {
        if (n == 0) return ""
        for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j > 0 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
        return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function fmt(x) {
        if (x == "") return "–"
        if (x >= 100) return sprintf("%.0f", x)
        if (x >= 10) return sprintf("%.1f", x)
        return sprintf("%.2f", x)
    }
    {
        split("", f)
        for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); x = $i; sub(/^[^=]*=/, "", x); f[k] = x }
        if (f["section"] != section || index(f["cell"], prefix) != 1) next
        c = f["cell"]; s = f["server"]; r = f["rep"] + 0
        if (!(c in seen)) { seen[c] = 1; cells[++nc] = c }
        if (r > maxrep) maxrep = r
        if ((metric in f) && f[metric] != "") { val[c, s, r] = f[metric] + 0; has[c, s, r] = 1 }
        bad = (f["errors"] + 0 > 0) || (f["failed"] == 1) || (("pass" in f) && f["pass"] == 0)
        if (bad) fails[c] = fails[c] " " s "#" r
    }
    END {
        ns = split(servers, sv, " ")
        printf "| cell |"; for (i = 1; i <= ns; i++) printf " %s |", sv[i]
        for (i = 1; i <= ns; i++) if (sv[i] != ref) printf " %s / %s |", ref, sv[i]
        printf " runs with errors |\n|---|"
        for (i = 1; i <= ns; i++) printf "---:|"; for (i = 1; i <= ns; i++) if (sv[i] != ref) printf "---:|"
        printf "---|\n"
        for (ci = 1; ci <= nc; ci++) {
            c = cells[ci]; printf "| %s |", c
            for (i = 1; i <= ns; i++) {
                n = 0; split("", v)
                for (r = 1; r <= maxrep; r++) if (has[c, sv[i], r]) v[++n] = val[c, sv[i], r]
                printf " %s |", fmt(median(v, n))
            }
            for (i = 1; i <= ns; i++) {
                if (sv[i] == ref) continue
                n = 0; split("", v)
                for (r = 1; r <= maxrep; r++)
                    if (has[c, ref, r] && has[c, sv[i], r] && val[c, sv[i], r] > 0) v[++n] = val[c, ref, r] / val[c, sv[i], r]
                # The median, then the range over repetitions (median() left v sorted).
                x = median(v, n)
                if (x == "") printf " – |"
                else if (n > 1) printf " **%.2fx** (%.2f–%.2f) |", x, v[1], v[n]
                else printf " **%.2fx** |", x
            }
            printf " %s |\n", (c in fails) ? fails[c] : "none"
        }
    }' "$RESULTS"
}

{
    echo "## Results $(date -I)"
    echo
    echo '```'
    cat "$OUT/machine.txt"
    echo '```'
    if has echo; then
        for m in msgs_per_s server_cpu_us_per_msg server_user_us_per_msg p50_us p99_us; do
            echo; echo "### echo: $m"; echo; table echo "$m" kamaelia "$ECHO_SERVERS"
        done
    fi
    if has stream; then
        for m in mb_per_s server_cpu_us_per_mb server_user_us_per_mb; do
            echo; echo "### stream: $m"; echo; table stream "$m" kamaelia "$ECHO_SERVERS"
        done
    fi
    if has connect; then
        for m in conns_per_s server_cpu_us_per_conn server_user_us_per_conn; do
            echo; echo "### connect: $m"; echo; table connect "$m" kamaelia "$ECHO_SERVERS"
        done
    fi
    if has idle; then
        for m in bytes_per_conn held open_secs; do
            echo; echo "### idle: $m"; echo; table idle "$m" kamaelia "$ECHO_SERVERS"
        done
    fi
    if has relay; then
        echo; echo "### relay echo: msgs_per_s"; echo; table relay msgs_per_s kamaelia-relay "$RELAYS" echo
        echo; echo "### relay echo: relay CPU µs per message"; echo; table relay server_cpu_us_per_msg kamaelia-relay "$RELAYS" echo
        echo; echo "### relay echo: relay user-space CPU µs per message"; echo; table relay server_user_us_per_msg kamaelia-relay "$RELAYS" echo
        echo; echo "### relay stream: mb_per_s"; echo; table relay mb_per_s kamaelia-relay "$RELAYS" stream
        echo; echo "### relay connect: conns_per_s"; echo; table relay conns_per_s kamaelia-relay "$RELAYS" connect
        echo; echo "### relay connect: relay CPU µs per connection"; echo; table relay server_cpu_us_per_conn kamaelia-relay "$RELAYS" connect
        echo; echo "### relay connect: relay user-space CPU µs per connection"; echo; table relay server_user_us_per_conn kamaelia-relay "$RELAYS" connect
    fi
    if has tls; then
        echo; echo "### tls echo: msgs_per_s"; echo; table tls msgs_per_s kamaelia-tls "kamaelia-tls tokio-tls" echo
        echo; echo "### tls echo: server CPU µs per message"; echo; table tls server_cpu_us_per_msg kamaelia-tls "kamaelia-tls tokio-tls" echo
        echo; echo "### tls stream: mb_per_s"; echo; table tls mb_per_s kamaelia-tls "kamaelia-tls tokio-tls" stream
    fi
} >"$OUT/summary.md"
cat "$OUT/summary.md"
log "results: $RESULTS; summary: $OUT/summary.md"
