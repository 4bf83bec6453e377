#!/usr/bin/env bash
# Connection setup (or one echo cell) in rotated rounds: connections/s (messages/s) and server CPU
# per connection (message), each run on fresh processes, the order of the servers rotated every
# round, so slow drift on a shared machine hits every server alike. The matrix (run.sh) has one
# 2,000-connect cell per relay, and five repetitions of each echo cell: mostly noise.
#
#   crates/kamaelia-bench/rounds.sh                          # relay: kamaelia, tokio-relay, haproxy
#   MODE=echo crates/kamaelia-bench/rounds.sh                # echo: kamaelia, tokio-echo
#   MODE=load CONNS=512 SIZE=64 crates/kamaelia-bench/rounds.sh   # one echo cell, same servers
#   BEFORE=/path/to/older/kamaelia crates/kamaelia-bench/rounds.sh   # adds that build as "before"
#
# Knobs (environment): MODE (relay | echo | load), ROUNDS (8), N (measured connects per run, 5000),
# WARM (connects before the measured ones, 300), C (concurrent connects, 16), CONNS and SIZE (the
# load cell: connections and message size, 512 and 64), DUR (seconds of load per run, 4), BEFORE
# (a second kamaelia binary to compare), OUT (default target/bench/rounds-DATE). Prints per-server
# medians (rate, CPU, and the user-space part of that CPU) and the median of per-round ratios
# against kamaelia; raw lines in OUT/results.txt.
# Every process is started and stopped here by PID; every load is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${MODE:-relay}
ROUNDS=${ROUNDS:-8}
N=${N:-5000}
WARM=${WARM:-300}
C=${C:-16}
CONNS=${CONNS:-512}
SIZE=${SIZE:-64}
DUR=${DUR:-4}
BEFORE=${BEFORE:-}
OUT=${OUT:-$PWD/target/bench/rounds-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/bin"
cargo build --release -q -p kamaelia-cli -p kamaelia-bench
cp target/release/{kamaelia,kamaelia-bench,mio-echo,tokio-echo,tokio-relay} "$OUT/bin/"
BIN=$OUT/bin
[[ -n $BEFORE ]] && cp "$BEFORE" "$BIN/kamaelia-before"
if [[ $MODE == relay ]] && ! command -v haproxy >/dev/null; then
    apt-get update -qq && apt-get install -y -qq haproxy >/dev/null || true
fi
HAPROXY=$(command -v haproxy || true)

case $MODE in
relay) SERVERS="kamaelia tokio-relay${HAPROXY:+ haproxy}" ;;
echo | load) SERVERS="kamaelia tokio-echo" ;;
*) echo "MODE is relay, echo or load" >&2; exit 2 ;;
esac
[[ -n $BEFORE ]] && SERVERS="$SERVERS kamaelia-before"
read -ra LIST <<<"$SERVERS"

# shellcheck source=crates/kamaelia-bench/lib.sh
source crates/kamaelia-bench/lib.sh # after the cd to the workspace root

haproxy_cfg() { # PORT BACKEND
    printf 'global\n    nbthread 1\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\nfrontend bench\n    bind 127.0.0.1:%s\n    default_backend echo\nbackend echo\n    server mio %s\n' "$1" "$2" >"$OUT/haproxy.cfg"
}

# one ROUND SERVER: a fresh backend (relay mode) and server, WARM then N connects; one line.
one() {
    local round=$1 name=$2 backend="" mio="" line
    PORT=
    if [[ $MODE == relay ]]; then
        start mio "$BIN/mio-echo" --listen 127.0.0.1:0
        backend=$ADDR mio=$PID
    fi
    case $name in
    kamaelia | kamaelia-before)
        local bin=$BIN/kamaelia
        [[ $name == kamaelia-before ]] && bin=$BIN/kamaelia-before
        if [[ $MODE == relay ]]; then
            start "$name" "$bin" relay --listen 127.0.0.1:0 --to "$backend" --drain-timeout 1
        else
            start "$name" "$bin" serve --listen 127.0.0.1:0 --drain-timeout 1
        fi
        ;;
    tokio-relay) start "$name" "$BIN/tokio-relay" --listen 127.0.0.1:0 --to "$backend" ;;
    tokio-echo) start "$name" "$BIN/tokio-echo" --listen 127.0.0.1:0 ;;
    haproxy)
        PORT=$("$BIN/kamaelia-bench" free-port)
        haproxy_cfg "$PORT" "$backend"
        start "$name" "$HAPROXY" -db -f "$OUT/haproxy.cfg"
        ;;
    esac
    local srv=$PID
    if [[ $MODE == load ]]; then
        line=$(timeout 120 "$BIN/kamaelia-bench" echo --addr "$ADDR" -c "$CONNS" -s "$SIZE" \
            --duration "$DUR" --warmup 0.5 --server-pid "$srv" | grep '^RESULT' || echo "RESULT failed=1")
    else
        timeout 120 "$BIN/kamaelia-bench" connect --addr "$ADDR" -n "$WARM" -c "$C" >/dev/null
        line=$(timeout 300 "$BIN/kamaelia-bench" connect --addr "$ADDR" -n "$N" -c "$C" \
            --server-pid "$srv" | grep '^RESULT' || echo "RESULT failed=1")
    fi
    echo "round=$round server=$name load=$(cut -d' ' -f1 /proc/loadavg) $line" | tee -a "$OUT/results.txt"
    stop "$srv"
    [[ -n $mio ]] && stop "$mio"
    return 0
}

: >"$OUT/results.txt"
for ((r = 0; r < ROUNDS; r++)); do
    k=${#LIST[@]}
    for ((j = 0; j < k; j++)); do
        one "$r" "${LIST[$(((j + r) % k))]}"
    done
done

# Medians per server, and of per-round ratios against kamaelia.
python3 - "$OUT/results.txt" <<'EOF' | tee "$OUT/summary.txt"
import re, statistics, sys
rows = {}
unit = 'conn'  # or 'msg', from the results: connects, or an echo cell
for line in open(sys.argv[1]):
    f = dict(re.findall(r'(\w+)=(\S+)', line))
    u = 'msg' if 'msgs_per_s' in f else 'conn'
    if f'{u}s_per_s' not in f:
        continue
    unit = u
    rows.setdefault(f['server'], {})[int(f['round'])] = (
        float(f[f'{u}s_per_s']), float(f.get(f'server_cpu_us_per_{u}', 'nan')),
        float(f.get(f'server_user_us_per_{u}', 'nan')))
def med(v):
    v = [x for x in v if x == x]  # without the NaNs of runs that have no reading
    return statistics.median(v) if v else float('nan')
base = rows.get('kamaelia', {})
rate_name, cpu_name, user_name = (('msgs/s', 'CPU us/msg', 'user us/msg') if unit == 'msg'
                                  else ('conns/s', 'CPU us/conn', 'user us/conn'))
print(f"{'server':16} {rate_name:>9} {cpu_name:>12} {user_name:>13} {'kamaelia rate x':>16}"
      f" {'kamaelia CPU x':>15} {'kamaelia user x':>16}")
for name, by_round in rows.items():
    rate, cpu, user = (med([v[i] for v in by_round.values()]) for i in range(3))
    common = [r for r in by_round if r in base]
    rr, cr, ur = (med([base[r][i] / by_round[r][i] for r in common if by_round[r][i] > 0])
                  for i in range(3))
    print(f"{name:16} {rate:9.0f} {cpu:12.1f} {user:13.2f} {rr:16.2f} {cr:15.2f} {ur:16.2f}")
EOF
