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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

if [[ -n ${SIGVISOR:-} ]]; then SIGVISOR=$(abspath "$SIGVISOR"); else SIGVISOR=$root/build/sigvisor; fi
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$root/$BUILD
IDLE_S=${BENCH_IDLE_SECONDS:-10}
CYCLES=${BENCH_CYCLES:-20}
STORM=${BENCH_STORM_SIGNALS:-1000}
STORM_RUNS=${BENCH_STORM_RUNS:-10}
PIN=${BENCH_PIN:-1}
WORKERS=2
# The built-in worker waits in epoll whatever the arbiter's loop is.
READY=epoll_wait,epoll_pwait,epoll_pwait2
PY=/usr/bin/python3
loops=(epoll io_uring)
unset SIGVISOR_ARGS

t_start=$(date +%s.%N)
log() { printf '%s\n' "bench: $*" >&2; }
die() { log "error: $*"; exit 2; }

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package: $2)"); }
need strace strace
need cc gcc
need timeout coreutils
need awk mawk
[[ -x $PY ]] || missing+=("$PY (Debian package: python3)")
if ((${#missing[@]})); then
	log "missing tools; install them with apt-get install:"
	printf '  %s\n' "${missing[@]}" >&2
	exit 2
fi
[[ -x $SIGVISOR ]] || die "$SIGVISOR is not an executable file: run make first, or set SIGVISOR=PATH"

probe=$BUILD/bench/probe
if [[ ! -x $probe || $here/probe.c -nt $probe ]]; then
	mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
	cc -O2 -Wall -Wextra -Werror -pthread -o "$probe" "$here/probe.c" ||
		die "compiling $here/probe.c failed"
fi

cpus=()
for r in $(awk '/^Cpus_allowed_list:/ { gsub(",", " ", $2); print $2 }' /proc/self/status); do
	if [[ $r == *-* ]]; then for ((c = ${r%-*}; c <= ${r#*-}; c++)); do cpus+=("$c"); done; else cpus+=("$r"); fi
done
pin_server=() pin_probe=() pin_storm=() placement="unpinned"
if [[ $PIN == 1 ]] && ((${#cpus[@]} >= 2)); then
	pin_server=(--cpu "${cpus[0]}")
	pin_probe=(--cpu "${cpus[0]}" --probe-cpu "${cpus[1]}")
	pin_storm=(--cpu "${cpus[1]}")
	placement="servers pinned to CPU ${cpus[0]}, probe to CPU ${cpus[1]}"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sigvisor-loops.XXXXXX") || die "mktemp failed"
failed=0

# ---- process bookkeeping: only PIDs we started, only by PID -----------------
servers=()
state_of() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }
	printf '%s' "${s%% *}"
}
alive() { local s; s=$(state_of "$1"); [[ -n $s && $s != Z && $s != X ]]; }
children() { cat "/proc/$1/task/$1/children" 2>/dev/null; }

stop_server() { # PID: TERM, up to 15 s, then KILL it and the workers it had
	local pid=$1 kids i
	alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kids=$(children "$pid")
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 150; i++)); do alive "$pid" || break; sleep 0.1; done
	if alive "$pid"; then
		log "pid $pid still running 15 s after TERM: sending KILL"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	for i in $kids; do alive "$i" && kill -KILL "$i" 2>/dev/null; done
	local -a keep=()
	for i in "${servers[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
	servers=("${keep[@]}")
	return 0
}

cleanup() {
	local p
	trap - EXIT INT TERM
	for p in "${servers[@]}"; do stop_server "$p"; done
	if ((failed)) || [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "logs and raw samples kept in $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'log interrupted; failed=1; exit 130' INT TERM

declare -A pid port
start() { # LOOP WORKERS: start an instance, wait until it serves; sets pid[LOOP]
	local l=$1 w=$2 p
	p=$("$probe" port) || die "no free port"
	"$probe" exec "${pin_server[@]}" -- "$SIGVISOR" -b "127.0.0.1:$p" -w "$w" \
		--graceful-timeout 5 --control "$tmp/$l.sock" --loop "$l" >>"$tmp/$l.log" 2>&1 &
	pid[$l]=$!
	port[$l]=$p
	servers+=("${pid[$l]}")
	if ! "$probe" wait --pid "${pid[$l]}" --port "$p" --workers "$w" --ready "$READY" \
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

sample() { printf '%s %s\n' "$2" "$3" >>"$tmp/$1.samples"; } # LOOP METRIC VALUE

switches() { # PID: context switches of all its threads so far
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}

log "sigvisor: $SIGVISOR; kernel $(uname -r), $(nproc) CPUs, $placement; temp dir $tmp"

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
stats() { # FILE METRIC -> "median min max n fails"
	awk -v m="$2" '
		$1 == m { v[++n] = $2 + 0 }
		$1 == "fail" && $2 == m { f++ }
		END {
			if (n == 0 && f == 0) exit
			for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
			med = n == 0 ? 0 : (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
			printf "%.6f %.6f %.6f %d %d\n", med, v[1], v[n], n, f + 0
		}' "$1" 2>/dev/null
}

cell() { # METRIC LOOP SCALE DECIMALS -> "median (min–max, n)"
	local s m lo hi cnt fails
	s=$(stats "$tmp/$2.samples" "$1")
	if [[ -z $s ]]; then printf 'not measured'; return; fi
	read -r m lo hi cnt fails <<<"$s"
	if ((cnt == 0)); then printf 'FAILED'; return; fi
	awk -v a="$m" -v b="$lo" -v c="$hi" -v n="$cnt" -v k="$3" -v d="$4" -v f="$fails" \
		'BEGIN { printf "%.*f (%.*f–%.*f, %d)%s", d, a / k, d, b / k, d, c / k, n, f ? ", then FAILED" : "" }'
}

rows=()
row() { # LABEL METRIC SCALE DECIMALS
	local a b r e u
	a=$(cell "$2" epoll "$3" "$4")
	b=$(cell "$2" io_uring "$3" "$4")
	e=$(stats "$tmp/epoll.samples" "$2" | awk '$4 > 0 { print $1 }')
	u=$(stats "$tmp/io_uring.samples" "$2" | awk '$4 > 0 { print $1 }')
	r=$(awk -v e="$e" -v u="$u" 'BEGIN {
		if (e == "" || u == "") { printf "—"; exit }
		if (e == 0) { printf "%s", u == 0 ? "— (both 0)" : "∞ (epoll 0)"; exit }
		printf "%.2f×", u / e }')
	rows+=("$1"$'\t'"$a"$'\t'"$b"$'\t'"$r")
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

print_table() {
	local LC_ALL=C.UTF-8 # so that ${#s} counts characters, not bytes
	local -a head=("metric" "epoll median (min–max, n)" "io_uring median (min–max, n)"
		"ratio io_uring ÷ epoll")
	local -a w=(0 0 0 0) f
	local line i out c sep="|"
	for i in 0 1 2 3; do w[i]=${#head[i]}; done
	for line in "${rows[@]}"; do
		IFS=$'\t' read -r -a f <<<"$line"
		for i in 0 1 2 3; do ((${#f[i]} > w[i])) && w[i]=${#f[i]}; done
	done
	for i in 0 1 2 3; do sep+=" $(printf '%*s' "${w[i]}" '' | tr ' ' '-') |"; done
	for line in "$(printf '%s\t' "${head[@]}")" "SEP" "${rows[@]}"; do
		if [[ $line == SEP ]]; then printf '%s\n' "$sep"; continue; fi
		IFS=$'\t' read -r -a f <<<"$line"
		out="|"
		for i in 0 1 2 3; do
			c=${f[i]:-}
			out+=" $c$(printf '%*s' $((w[i] - ${#c})) '') |"
		done
		printf '%s\n' "$out"
	done
}

elapsed=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
echo
echo "sigvisor $("$SIGVISOR" --version 2>&1 | head -n 1 | awk '{ print $2 }'), --loop epoll vs" \
	"--loop io_uring, $WORKERS workers (storm: from 1) on 127.0.0.1; kernel $(uname -r)," \
	"$(nproc) CPUs, $placement; run took ${elapsed} s"
echo
print_table
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
