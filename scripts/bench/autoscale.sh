#!/usr/bin/env bash
# scripts/bench/autoscale.sh - a step load (idle -> burst -> idle) on a pool of sync
# workers (one request at a time, BENCH_AS_WORK_MS each, like gunicorn's sync worker or
# PHP-FPM's children): the request latency (median, p99, max) and the worker-seconds the
# whole run cost, for a fixed pool of N, a fixed pool of M, sigvisor's adaptive pool
# (--workers N --max-workers M) and, when Debian's uwsgi (uwsgi-core with
# uwsgi-plugin-python3) is installed, uWSGI's "cheaper" subsystem (--cheaper N
# --processes M, the spare algorithm) with the same Python app, side by side.
#
# sigvisor runs the worker as a COMMAND serving its inherited socket (fd 3); uWSGI runs
# the same work as a WSGI app. The load: BENCH_AS_CLIENTS client threads, each sending its
# next request when the last is answered, for BENCH_AS_BURST_S, after BENCH_AS_IDLE_S of
# nothing and followed by BENCH_AS_AFTER_S of nothing (the adaptive pools give their
# workers back then). Worker-seconds: the server's worker processes counted every 100 ms
# over the whole run (idle, burst and after), times the time between counts.
#
# At its minimum with nothing queued the adaptive pool watches its socket (autoscale.h):
# the burst's first connection wakes the arbiter, which steps up --scale-up-after later.
# BENCH_AS_DOWN_S sets --scale-down-after (default 5).
#
# Environment: SIGVISOR BUILD as run.sh; BENCH_AS_N=2 BENCH_AS_M=8 BENCH_AS_WORK_MS=200
# BENCH_AS_CLIENTS=8 BENCH_AS_IDLE_S=6 BENCH_AS_BURST_S=20 BENCH_AS_AFTER_S=30
# BENCH_AS_DOWN_S=5 BENCH_AS_UP_S=0.1 BENCH_KEEP=1 UWSGI=PATH (default uwsgi from PATH).
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${BENCH_AS_N:-2}
M=${BENCH_AS_M:-8}
WORK_MS=${BENCH_AS_WORK_MS:-200}
CLIENTS=${BENCH_AS_CLIENTS:-8}
IDLE_S=${BENCH_AS_IDLE_S:-6}
BURST_S=${BENCH_AS_BURST_S:-20}
AFTER_S=${BENCH_AS_AFTER_S:-30}
DOWN_S=${BENCH_AS_DOWN_S:-5}
UP_S=${BENCH_AS_UP_S:-0.1}
UWSGI=${UWSGI:-uwsgi}
bench_setup autoscale

# The sync worker of the tests: TERM (a retirement) ends it after the request in hand.
worker=(python3 "$root/test/integration/workers/sync_worker.py" "$WORK_MS")
cat >"$tmp/wsgi_app.py" <<PY
import time
def application(environ, start_response):
    time.sleep($WORK_MS / 1000)
    start_response("200 OK", [("Content-Length", "3"), ("Connection", "close")])
    return [b"ok\n"]
PY
# The load and the count of workers, in one process: "p50_ms p99_ms max_ms ok errors
# worker_seconds peak".
cat >"$tmp/step.py" <<'PY'
import http.client, sys, threading, time
port, pid, clients = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
idle, burst, after = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
lat, errors, stop = [], [0], threading.Event()
ws, peak = [0.0], [0]

def workers():
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return len(f.read().split())
    except OSError:
        return 0

def sampler():
    last = time.monotonic()
    while not stop.is_set():
        time.sleep(0.1)
        now, n = time.monotonic(), workers()
        ws[0] += n * (now - last)
        peak[0] = max(peak[0], n)
        last = now

def client(end):
    while time.monotonic() < end:
        t = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            c.request("GET", "/", headers={"Connection": "close"})
            c.getresponse().read()
            lat.append((time.monotonic() - t) * 1000)
        except OSError:
            errors[0] += 1
        finally:
            c.close()

s = threading.Thread(target=sampler)
s.start()
time.sleep(idle)
end = time.monotonic() + burst
ts = [threading.Thread(target=client, args=(end,)) for _ in range(clients)]
for t in ts:
    t.start()
for t in ts:
    t.join()
time.sleep(after)
stop.set()
s.join()
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * (len(lat) - 1) + 0.5))] if lat else 0
print(f"{q(0.5):.0f} {q(0.99):.0f} {lat[-1] if lat else 0:.0f} {len(lat)} {errors[0]} {ws[0]:.1f} {peak[0]}")
PY

names=(fixn fixm adapt)
declare -A title=([fixn]="sigvisor, $N workers" [fixm]="sigvisor, $M workers"
	[adapt]="sigvisor, $N..$M (--max-workers)" [uwsgi]="uWSGI cheaper $N..$M")
if command -v "$UWSGI" >/dev/null 2>&1 && "$UWSGI" --plugin python3 --help >/dev/null 2>&1; then
	names+=(uwsgi)
else
	log "uWSGI not measured: no $UWSGI with the python3 plugin (Debian: uwsgi-core uwsgi-plugin-python3)"
fi

launch() { # NAME PORT LOG: sets spid
	local n=$1 port=$2 lg=$3 k
	local -a sv=("$SIGVISOR" -b "127.0.0.1:$port" --control "$tmp/sv.sock" --bpf off
		--ready-mode start --graceful-timeout 5 "${SV_EXTRA[@]}")
	case $n in
	fixn) start_server "$lg" "${sv[@]}" -w "$N" -- "${worker[@]}" ;;
	fixm) start_server "$lg" "${sv[@]}" -w "$M" -- "${worker[@]}" ;;
	adapt) start_server "$lg" "${sv[@]}" -w "$N" --max-workers "$M" --scale-up-after "$UP_S" \
		--scale-down-after "$DOWN_S" -- "${worker[@]}" ;;
	uwsgi) start_server "$lg" "$UWSGI" --plugin python3 --http-socket "127.0.0.1:$port" --master \
		--processes "$M" --cheaper "$N" --cheaper-initial "$N" --cheaper-algo spare \
		--cheaper-step 1 --wsgi-file "$tmp/wsgi_app.py" --die-on-term --listen 128 ;;
	esac
	# Up once it has its N workers (the load starts BENCH_AS_IDLE_S later anyway).
	for ((k = 0; k < 200; k++)); do
		(($(nchildren "$spid") >= N)) && return 0
		sleep 0.1
	done
	log "${title[$n]} did not start $N workers; last lines of its log:"
	tail -n 5 "$lg" >&2
	return 1
}

for n in "${names[@]}"; do
	port=$(free_port)
	lg=$tmp/$n.log
	log "${title[$n]}: idle ${IDLE_S} s, $CLIENTS clients for ${BURST_S} s, idle ${AFTER_S} s"
	launch "$n" "$port" "$lg" || { failed=1; stop_server "$spid"; continue; }
	out=$(timeout $((${IDLE_S%.*} + ${BURST_S%.*} + ${AFTER_S%.*} + 120)) \
		python3 "$tmp/step.py" "$port" "$spid" "$CLIENTS" "$IDLE_S" "$BURST_S" "$AFTER_S") || {
		failed=1
		log "${title[$n]}: the load failed"
	}
	echo "$out" >"$tmp/$n.out"
	if [[ $n == adapt ]]; then
		ups=$(grep -c 'autoscale: queue .* -> .* workers' "$lg")
		downs=$(grep -c 'autoscale: queues empty' "$lg")
		echo "$ups $downs" >"$tmp/$n.dec"
	fi
	stop_server "$spid"
done

rows=()
for n in "${names[@]}"; do
	read -r p50 p99 mx ok errs wsec peak <"$tmp/$n.out" || continue
	dec="—"
	[[ -s $tmp/$n.dec ]] && read -r u d <"$tmp/$n.dec" && dec="$u up, $d down"
	rows+=("$(printf '%s\t' "${title[$n]}" "$p50" "$p99" "$mx" "$ok" "$errs" "$wsec" "$peak" "$dec")")
done
echo
echo "Step load: ${IDLE_S} s idle, $CLIENTS clients for ${BURST_S} s (a sync worker, $WORK_MS ms a" \
	"request), ${AFTER_S} s idle; latency of the burst's requests in ms; worker-seconds over the" \
	"whole run. Adaptive: --scale-up-after $UP_S --scale-down-after $DOWN_S." \
	"$(machine_line); run took $(elapsed) s"
echo
print_table rows "pool" "p50 ms" "p99 ms" "max ms" "requests" "errors" "worker-s" "peak" "decisions"
[[ " ${names[*]} " == *" uwsgi "* ]] || echo "uWSGI: not installed here, not measured."
exit $((failed ? 1 : 0))
