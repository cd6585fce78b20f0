#!/usr/bin/env bash
# scripts/bench/loops.sh - sigvisor's two loop backends side by side: --loop epoll
# and --loop io_uring, same binary, same run, one table of medians.
#
#   1. idle: context switches of each arbiter over BENCH_IDLE_SECONDS with no tracer,
#      then its system calls over the same time with `strace -c -p` (both at once);
#   2. TTIN -> new worker visible (and ready), TTOU -> worker reaped: probe.c's
#      `scale`, BENCH_CYCLES cycles against a running pool of 2;
#   3. a storm of BENCH_STORM_SIGNALS kill(TTIN) in a tight loop against a fresh pool
#      of 1, BENCH_STORM_RUNS times per backend (alternating): how long until the pool
#      stops growing, and how many TTINs the arbiter read (signals.TTIN.received from
#      `status --json`; the kernel merges the rest while one is pending).
#
# Environment: SIGVISOR=PATH (default build/sigvisor), BUILD=DIR (where probe.c is
# compiled, default build), BENCH_IDLE_SECONDS=10 BENCH_CYCLES=20
# BENCH_STORM_SIGNALS=1000 BENCH_STORM_RUNS=10, BENCH_PIN=1 (servers on one CPU, the
# probe on another; 0: off), BENCH_KEEP=1 (keep logs and raw samples).
#
# Binds only 127.0.0.1 and signals only the processes it started, by PID.
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_S=${BENCH_IDLE_SECONDS:-10}
CYCLES=${BENCH_CYCLES:-20}
STORM=${BENCH_STORM_SIGNALS:-1000}
STORM_RUNS=${BENCH_STORM_RUNS:-10}
WORKERS=2
# The built-in worker waits in epoll whatever the arbiter's loop is.
READY=epoll_wait,epoll_pwait,epoll_pwait2
PY=/usr/bin/python3
loops=(epoll io_uring)
declare -A title=([epoll]=epoll [io_uring]=io_uring)
need strace strace
[[ -x $PY ]] || missing+=("$PY (Debian package: python3)")
bench_setup loops
PIN=1 # start_server: servers on the first CPU
pin_probe=() pin_storm=() placement="unpinned"
if ((probe_cpu >= 0)); then
	pin_probe=(--cpu "$server_cpu" --probe-cpu "$probe_cpu")
	pin_storm=(--cpu "$probe_cpu")
	placement="servers pinned to CPU $server_cpu, probe to CPU $probe_cpu"
fi

declare -A pid
start() { # LOOP WORKERS: start an instance, wait until it serves; sets pid[LOOP]
	local l=$1 nw=$2 p
	p=$(free_port)
	start_server "$tmp/$l.log" "$SIGVISOR" -b "127.0.0.1:$p" -w "$nw" \
		--graceful-timeout 5 --control "$tmp/$l.sock" --loop "$l"
	pid[$l]=$spid
	if ! "$probe" wait --pid "${pid[$l]}" --port "$p" --workers "$nw" --ready "$READY" \
		--timeout 20; then
		failed=1
		# io_uring may be blocked here (seccomp, kernel.io_uring_disabled): sigvisor
		# says so and exits 1.
		if grep -q -- "--loop $l: " "$tmp/$l.log"; then
			log "sigvisor cannot use --loop $l here: $(grep -- "--loop $l: " "$tmp/$l.log" | tail -n 1)"
		else
			log "sigvisor --loop $l did not come up; last lines of its log:"
			tail -n 20 "$tmp/$l.log" >&2
		fi
		exit 1
	fi
}

log "sigvisor: $SIGVISOR_ORIG (sha256 $sv_sum…); kernel $(uname -r), $(nproc) CPUs, $placement; temp dir $tmp"

# ---- 1. idle -------------------------------------------------------------------
for l in "${loops[@]}"; do start "$l" "$WORKERS"; done
sleep 1 # the probe's own HTTP check woke a worker; let everything settle
log "idle ${IDLE_S} s: context switches, both arbiters at once (no tracer)"
declare -A cs0
for l in "${loops[@]}"; do cs0[$l]=$(switches "${pid[$l]}"); done
sleep "$IDLE_S"
for l in "${loops[@]}"; do sample "$l" idle_switches $(($(switches "${pid[$l]}") - ${cs0[$l]})); done

log "idle ${IDLE_S} s: strace -c -p of each arbiter, both at once"
tracers=()
for l in "${loops[@]}"; do
	timeout -s INT "$IDLE_S" strace -c -o "$tmp/$l.strace" -p "${pid[$l]}" 2>>"$tmp/strace.err" &
	tracers+=($!)
done
for p in "${tracers[@]}"; do wait "$p"; done
for l in "${loops[@]}"; do
	if [[ ! -e $tmp/$l.strace ]]; then
		log "strace of --loop $l failed: $(tail -n 1 "$tmp/strace.err")"
		echo "fail idle_syscalls" >>"$tmp/$l.samples"
		failed=1
		continue
	fi
	# strace -c writes nothing at all when no call completed.
	n=$(awk '$NF == "total" { print $(NF - 2) }' "$tmp/$l.strace")
	sample "$l" idle_syscalls "${n:-0}"
	awk 'NR > 2 && $NF != "total" && $NF ~ /^[a-z_0-9]+$/ && $(NF - 2) ~ /^[0-9]+$/ {
		printf "%s%s %s", (k++ ? ", " : ""), $(NF - 2), $NF }' "$tmp/$l.strace" >"$tmp/$l.sysnames"
done

# ---- 2. TTIN / TTOU --------------------------------------------------------------
for l in "${loops[@]}"; do
	log "--loop $l: $CYCLES TTIN/TTOU cycles"
	if ! "$probe" scale "${pin_probe[@]}" --pid "${pid[$l]}" --workers "$WORKERS" \
		--ready "$READY" --count "$CYCLES" --timeout 5 \
		>>"$tmp/$l.samples" 2>>"$tmp/$l.probe.err"; then
		failed=1
		log "--loop $l: $(tail -n 3 "$tmp/$l.probe.err")"
	fi
done
for l in "${loops[@]}"; do stop_server "${pid[$l]}"; done

# ---- 3. the TTIN storm -------------------------------------------------------------
# Sends the storm from one process in a tight loop (on the probe's CPU, so the arbiter
# reads signals while they still arrive), then spins on the arbiter's
# children list (no control request, so nothing but the storm wakes the arbiter) until
# it has not grown for 1 s; the settle time is when the last worker appeared.
storm() { # LOOP
	local l=$1
	"$probe" exec "${pin_storm[@]}" -- $PY - "${pid[$l]}" "$STORM" "$tmp/$l.sock" <<'PYEOF'
import json, os, signal, socket, sys, time
pid, n, ctl = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def kids():
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return len(f.read().split())

t0 = time.monotonic_ns()
for _ in range(n):
    os.kill(pid, signal.SIGTTIN)
t_sent = time.monotonic_ns()
last, t_last, deadline = kids(), t_sent, time.monotonic() + 120
while time.monotonic() < deadline:
    k = kids()
    now = time.monotonic_ns()
    if k != last:
        last, t_last = k, now
    elif now - t_last > 1_000_000_000:
        break
s = socket.socket(socket.AF_UNIX)
s.connect(ctl)
s.sendall(b"status json\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
st = json.loads(data)
got = st["signals"]["TTIN"]["received"]
print(f"storm_send {(t_sent - t0) / 1000:.1f}")
print(f"storm_settle {(t_last - t0) / 1000:.1f}")
print(f"storm_received {got}")
print(f"storm_workers {len(st['workers'])}")
if st["target"] != 1 + got or len(st["workers"]) != 1 + got:
    print(f"loops.sh: storm: {got} TTIN read but target {st['target']}, "
          f"{len(st['workers'])} workers", file=sys.stderr)
    print("fail storm_settle")
PYEOF
}

for ((r = 0; r < STORM_RUNS; r++)); do
	for l in "${loops[@]}"; do
		log "--loop $l: storm $((r + 1)) of $STORM_RUNS, $STORM TTIN"
		start "$l" 1
		sleep 0.5
		if ! storm "$l" >>"$tmp/$l.samples" 2>>"$tmp/$l.probe.err"; then
			failed=1
			log "--loop $l: storm failed: $(tail -n 3 "$tmp/$l.probe.err")"
		fi
		stop_server "${pid[$l]}"
	done
done

# ---- the table -----------------------------------------------------------------------
rows=()
row() { # LABEL METRIC SCALE DECIMALS
	local a b
	a=$(cell epoll "$2" "$3" "$4")
	b=$(cell io_uring "$2" "$3" "$4")
	rows+=("$1"$'\t'"$a"$'\t'"$b"$'\t'"$(ratio epoll io_uring)")
}

row "arbiter syscalls, idle ${IDLE_S} s (strace -c)" idle_syscalls 1 0
row "arbiter context switches, idle ${IDLE_S} s (no tracer)" idle_switches 1 0
row "TTIN → new worker visible, ms" ttin_visible 1000 3
row "TTIN → new worker ready, ms" ttin_ready 1000 3
row "TTOU → worker reaped, ms" ttou_reaped 1000 3
row "storm: $STORM kill(TTIN) sent in, ms" storm_send 1000 1
row "storm: first kill → last new worker, ms" storm_settle 1000 1
row "storm: TTIN read by the arbiter" storm_received 1 0
row "storm: workers at the end" storm_workers 1 0

echo
echo "sigvisor $("$SIGVISOR" --version 2>&1 | head -n 1 | awk '{ print $2 }'), --loop epoll vs" \
	"--loop io_uring, $WORKERS workers (storm: from 1) on 127.0.0.1; kernel $(uname -r)," \
	"$(nproc) CPUs, $placement; load average $(cut -d' ' -f1-3 /proc/loadavg); run took $(elapsed) s"
echo
print_table rows "metric" "epoll median (min–max, n)" "io_uring median (min–max, n)" "ratio io_uring ÷ epoll"
echo
for l in "${loops[@]}"; do
	if [[ -s $tmp/$l.sysnames ]]; then
		echo "--loop $l idle syscalls by name: $(cat "$tmp/$l.sysnames")"
	elif [[ -e $tmp/$l.strace ]]; then
		echo "--loop $l idle syscalls by name: none"
	fi
done
((failed)) && exit 1
exit 0
