#!/usr/bin/env bash
# scripts/bench/run.sh - sigvisor and gunicorn (sync worker) side by side.
#
# Starts both with 2 workers on 127.0.0.1 (a free port each), measures what
# their arbiters do while idle and how fast they act on TTIN, TTOU and TERM,
# and prints one table of medians. scripts/bench/README.md says what each
# metric means. Installs nothing; names the Debian package of a missing tool.
#
# Environment:
#   SIGVISOR=PATH            binary under test (default build/sigvisor)
#   SIGVISOR_BENCH_ARGS=...  extra words for sigvisor (e.g. "--bpf off")
#   SIGVISOR_READY_SYSCALLS  what a waiting built-in worker is blocked in
#                            (default epoll_wait,epoll_pwait,epoll_pwait2)
#   GUNICORN=PATH            default: gunicorn from PATH
#   BUILD=DIR                where the probe is compiled (default build)
#   BENCH_IDLE_SECONDS=10 BENCH_CYCLES=30 BENCH_TERM_RUNS=10 BENCH_WRK_SECONDS=3
#   BENCH_PIN=1              servers on one CPU, the probe on another (0: off)
#   BENCH_FLOOR=1            also time probe's minimal responder (0: off)
#   BENCH_KEEP=1             keep the temp dir (logs, raw samples)
#   BENCH_MORE="hup storm pid1"  the further sections run afterwards (hup.sh,
#                            storm.sh, pid1.sh; their knobs are in their headers);
#                            empty: only this table
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

abspath() { case $1 in /*) printf '%s\n' "$1" ;; */*) printf '%s\n' "$PWD/$1" ;; *) printf '%s\n' "$1" ;; esac; }

if [[ -n ${SIGVISOR:-} ]]; then SIGVISOR=$(abspath "$SIGVISOR"); else SIGVISOR=$root/build/sigvisor; fi
GUNICORN=${GUNICORN:-gunicorn}
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$root/$BUILD
IDLE_S=${BENCH_IDLE_SECONDS:-10}
CYCLES=${BENCH_CYCLES:-30}
RUNS=${BENCH_TERM_RUNS:-10}
WRK_S=${BENCH_WRK_SECONDS:-3}
PIN=${BENCH_PIN:-1}
FLOOR=${BENCH_FLOOR:-1}
WORKERS=2
SV_READY=${SIGVISOR_READY_SYSCALLS:-epoll_wait,epoll_pwait,epoll_pwait2}
# gunicorn's sync worker waits in select.select(); the rest is belt and braces.
GU_READY=select,pselect6,poll,ppoll,epoll_wait,epoll_pwait,accept,accept4
FL_READY=epoll_wait,epoll_pwait
read -r -a SV_EXTRA <<<"${SIGVISOR_BENCH_ARGS:-}"
# Neither server should pick up a caller's settings.
unset SIGVISOR_ARGS GUNICORN_CMD_ARGS

t_start=$(date +%s.%N)
log() { printf '%s\n' "bench: $*" >&2; }
die() { log "error: $*"; exit 2; }

# ---- prerequisites ----------------------------------------------------------
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package: $2)"); }
need strace strace
need "$GUNICORN" gunicorn
need wrk wrk
need cc gcc
need timeout coreutils
need awk mawk
if ((${#missing[@]})); then
	log "missing tools; install them with apt-get install:"
	printf '  %s\n' "${missing[@]}" >&2
	exit 2
fi
[[ -x $SIGVISOR ]] || die "$SIGVISOR is not an executable file: run make first, or set SIGVISOR=PATH"
"$SIGVISOR" --help >/dev/null 2>&1 || die "$SIGVISOR --help failed: is it a sigvisor binary?"

probe=$BUILD/bench/probe
if [[ ! -x $probe || $here/probe.c -nt $probe ]]; then
	mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
	cc -O2 -Wall -Wextra -Werror -pthread -o "$probe" "$here/probe.c" ||
		die "compiling $here/probe.c failed"
fi

# Servers on one CPU, the timing probe on another: see probe.c for why.
cpus=()
IFS=, read -r -a ranges <<<"$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)"
for r in "${ranges[@]}"; do
	if [[ $r == *-* ]]; then for ((c = ${r%-*}; c <= ${r#*-}; c++)); do cpus+=("$c"); done; else cpus+=("$r"); fi
done
pin_server=() pin_probe=() placement="unpinned"
if [[ $PIN == 1 ]] && ((${#cpus[@]} >= 2)); then
	pin_server=(--cpu "${cpus[0]}")
	pin_probe=(--cpu "${cpus[0]}" --probe-cpu "${cpus[1]}")
	placement="servers pinned to CPU ${cpus[0]}, probe to CPU ${cpus[1]}"
elif [[ $PIN == 1 ]]; then
	log "only one CPU allowed: running unpinned (timings include the probe's own load)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sigvisor-bench.XXXXXX") || die "mktemp failed"
failed=0

# Measure one binary throughout, even if make rebuilds it during the run.
sv_built=$(date -r "$SIGVISOR" '+%F %T')
cp "$SIGVISOR" "$tmp/sigvisor" || die "cannot copy $SIGVISOR to $tmp"
sv_sum=$(sha256sum "$tmp/sigvisor" | cut -c1-12)
SIGVISOR_ORIG=$SIGVISOR
SIGVISOR=$tmp/sigvisor

# ---- process bookkeeping: only PIDs we started, only by PID -----------------
servers=() # arbiters started by this script
helpers=() # background strace

state_of() { # the state letter of PID, nothing if gone
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }
	printf '%s' "${s%% *}"
}
alive() { local s; s=$(state_of "$1"); [[ -n $s && $s != Z && $s != X ]]; }
children() { cat "/proc/$1/task/$1/children" 2>/dev/null; }

stop_server() { # PID: TERM, up to 8 s, then KILL it and the workers it had
	local pid=$1 kids i
	alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kids=$(children "$pid")
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 80; i++)); do alive "$pid" || break; sleep 0.1; done
	if alive "$pid"; then
		log "pid $pid still running 8 s after TERM: sending KILL"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	for i in $kids; do alive "$i" && kill -KILL "$i" 2>/dev/null; done
	return 0
}

forget_server() { # PID: stopped, no longer ours to clean up
	local -a keep=()
	local p
	for p in "${servers[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	servers=("${keep[@]}")
}

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	local p
	trap - EXIT INT TERM
	for p in "${helpers[@]}"; do kill -INT "$p" 2>/dev/null; done
	for p in "${servers[@]}"; do stop_server "$p"; done
	if ((failed)) || [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "logs and raw samples kept in $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'log interrupted; failed=1; exit 130' INT TERM

# ---- what is measured --------------------------------------------------------
# @PORT@ becomes a free port (here, or in probe term for each run). The *_cmd
# arrays are read through namerefs (local -n tmpl=NAME_cmd).
# shellcheck disable=SC2034
{
	# A private control socket: `sigvisor status` elsewhere on the machine
	# probes every socket in the default directories, which would wake it.
	sv_cmd=("$SIGVISOR" -b "127.0.0.1:@PORT@" -w "$WORKERS" --graceful-timeout 5
		--control "$tmp/control-@PORT@.sock" "${SV_EXTRA[@]}")
	gu_cmd=("$GUNICORN" --chdir "$here" app:app -w "$WORKERS" -b "127.0.0.1:@PORT@"
		--graceful-timeout 5)
	fl_cmd=("$probe" responder --port "@PORT@" --workers "$WORKERS")
}

declare -A pid port
names=(sv gu)
declare -A title=([sv]=sigvisor [gu]=gunicorn [fl]=floor)
declare -A ready=([sv]=$SV_READY [gu]=$GU_READY [fl]=$FL_READY)
declare -A http=([sv]="" [gu]="" [fl]=--no-http)

start() { # NAME: start the long-lived instance and wait until it serves
	local n=$1 p arg
	local -a cmd=()
	local -n tmpl=${n}_cmd
	p=$("$probe" port) || die "no free port"
	for arg in "${tmpl[@]}"; do cmd+=("${arg//@PORT@/$p}"); done
	"$probe" exec "${pin_server[@]}" -- "${cmd[@]}" >>"$tmp/$n.log" 2>&1 &
	pid[$n]=$!
	port[$n]=$p
	servers+=("${pid[$n]}")
}

wait_up() { # NAME
	local n=$1
	# shellcheck disable=SC2086 # ${http[$n]} is empty or one word
	if ! "$probe" wait --pid "${pid[$n]}" --port "${port[$n]}" --workers "$WORKERS" \
		--ready "${ready[$n]}" ${http[$n]} --timeout 20; then
		failed=1
		log "${title[$n]} did not come up; last lines of its log:"
		tail -n 20 "$tmp/$n.log" >&2
		exit 1
	fi
	log "${title[$n]} serves on 127.0.0.1:${port[$n]}, arbiter pid ${pid[$n]}, workers $(children "${pid[$n]}")"
}

sample() { printf '%s %s\n' "$2" "$3" >>"$tmp/$1.samples"; } # NAME METRIC VALUE

memory() { # NAME: one VmRSS and Pss sample of the arbiter, in kB
	local n=$1 rss pss
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pid[$n]}/status" 2>/dev/null)
	pss=$(awk '/^Pss:/ { print $2 }' "/proc/${pid[$n]}/smaps_rollup" 2>/dev/null)
	[[ -n $rss ]] && sample "$n" rss_kb "$rss"
	[[ -n $pss ]] && sample "$n" pss_kb "$pss"
}

switches() { # NAME: context switches of all the arbiter's threads so far
	cat /proc/"${pid[$1]}"/task/*/status 2>/dev/null |
		awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}

scale() { # NAME: TTIN/TTOU cycles against the running instance
	local n=$1
	log "${title[$n]}: $CYCLES TTIN/TTOU cycles"
	if ! "$probe" scale "${pin_probe[@]}" --pid "${pid[$n]}" --workers "$WORKERS" \
		--ready "${ready[$n]}" --count "$CYCLES" --timeout 5 \
		>>"$tmp/$n.samples" 2>>"$tmp/$n.probe.err"; then
		failed=1
		log "${title[$n]}: $(tail -n 3 "$tmp/$n.probe.err")"
	fi
}

term_runs() { # NAME: fresh instances, start -> serving, TERM -> exit
	local n=$1
	local -n tmpl=${n}_cmd
	log "${title[$n]}: $RUNS start / TERM runs"
	# shellcheck disable=SC2086
	if ! "$probe" term "${pin_probe[@]}" --workers "$WORKERS" --ready "${ready[$n]}" \
		${http[$n]} --count "$RUNS" --timeout 15 --settle 0.2 --log "$tmp/$n.term.log" \
		-- "${tmpl[@]}" >>"$tmp/$n.samples" 2>>"$tmp/$n.probe.err"; then
		failed=1
		log "${title[$n]}: $(tail -n 3 "$tmp/$n.probe.err")"
	fi
}

log "sigvisor: $SIGVISOR_ORIG ($("$SIGVISOR" --version 2>&1 | head -n 1); built $sv_built, sha256 $sv_sum…)"
log "gunicorn: $(command -v "$GUNICORN") ($("$GUNICORN" --version 2>&1 | head -n 1))"
log "kernel $(uname -r), $(nproc) CPUs, $placement; temp dir $tmp"

for n in "${names[@]}"; do start "$n"; done
for n in "${names[@]}"; do wait_up "$n"; done
sleep 2 # let start-up work (imports, first timers) finish
for n in "${names[@]}"; do memory "$n"; done

# ---- 1. idle: context switches (no tracer), then syscalls (strace) ---------
log "idle ${IDLE_S} s: context switches, both arbiters at once"
declare -A cs0
for n in "${names[@]}"; do cs0[$n]=$(switches "$n"); done
sleep "$IDLE_S"
for n in "${names[@]}"; do sample "$n" idle_switches $(($(switches "$n") - ${cs0[$n]})); done
for n in "${names[@]}"; do memory "$n"; done

log "idle ${IDLE_S} s: strace of each arbiter (its threads, not its workers), both at once"
declare -A st0
for n in "${names[@]}"; do
	tids=()
	for t in /proc/"${pid[$n]}"/task/*; do tids+=(-p "${t##*/}"); done
	st0[$n]=$(date +%s.%N)
	timeout -s INT "$IDLE_S" strace -qq -ttt -o "$tmp/$n.strace" "${tids[@]}" 2>>"$tmp/strace.err" &
	helpers+=($!)
done
for p in "${helpers[@]}"; do wait "$p"; done
helpers=()
for n in "${names[@]}"; do
	if [[ ! -e $tmp/$n.strace ]] || grep -q "attach: " "$tmp/strace.err" 2>/dev/null; then
		log "strace of ${title[$n]} failed: $(tail -n 1 "$tmp/strace.err")"
		echo "fail idle_syscalls" >>"$tmp/$n.samples"
		failed=1
		continue
	fi
	# A call still blocked at detach ("<detached ...>") did not complete in
	# the window and is not counted; "<... resumed>" halves are not new calls.
	awk -v t0="${st0[$n]}" -v secs="$IDLE_S" -v out="$tmp/$n.samples" -v names="$tmp/$n.sysnames" '
		/<detached \.\.\.>$/ { next }
		{
			i = ($1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+\.[0-9]+$/) ? 2 : 1
			if ($i !~ /^[0-9]+\.[0-9]+$/ || $(i + 1) !~ /^[a-z_0-9]+\(/) next
			name = $(i + 1); sub(/\(.*/, "", name)
			b = int($i - t0); if (b < 0) b = 0; if (b >= secs) b = secs - 1
			per[b]++; by[name]++; total++
		}
		END {
			printf "idle_syscalls %d\n", total >> out
			for (b = 0; b < secs; b++) printf "idle_syscalls_per_s %d\n", per[b] >> out
			for (k in by) printf "%d %s\n", by[k], k > names
		}' "$tmp/$n.strace"
done
for n in "${names[@]}"; do memory "$n"; done

# ---- 2. TTIN / TTOU ----------------------------------------------------------
for n in "${names[@]}"; do scale "$n"; done
for n in "${names[@]}"; do memory "$n"; done

# ---- 3. wrk: a sanity check that both serve, not a supervisor metric -------
if ((WRK_S > 0)); then
	for n in "${names[@]}"; do
		log "${title[$n]}: wrk ${WRK_S} s"
		wrk -t2 -c8 -d"${WRK_S}s" "http://127.0.0.1:${port[$n]}/" >"$tmp/$n.wrk" 2>&1
		rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/$n.wrk")
		if [[ -n $rps ]]; then sample "$n" wrk_rps "$rps"; else echo "fail wrk_rps" >>"$tmp/$n.samples"; failed=1; fi
		awk '/Non-2xx|Socket errors/' "$tmp/$n.wrk" >"$tmp/$n.wrkerr"
	done
fi

for n in "${names[@]}"; do stop_server "${pid[$n]}"; forget_server "${pid[$n]}"; done

# ---- 4. start -> serving, TERM (idle) -> exit, a fresh instance each run ----
for n in "${names[@]}"; do term_runs "$n"; done

# ---- 5. the floor: probe's own minimal responder, timed the same way --------
if [[ $FLOOR == 1 ]]; then
	start fl
	wait_up fl
	scale fl
	stop_server "${pid[fl]}"
	forget_server "${pid[fl]}"
	term_runs fl
fi

# ---- the table ----------------------------------------------------------------
# stats FILE METRIC -> "median min max n fails"; nothing when never measured
stats() {
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

# cell METRIC NAME SCALE DECIMALS -> "median (min–max, n)"; leaves NAME.med
cell() {
	local s med min max cnt fails
	s=$(stats "$tmp/$2.samples" "$1")
	if [[ -z $s ]]; then printf 'not measured'; return; fi
	read -r med min max cnt fails <<<"$s"
	if ((cnt == 0)); then printf 'FAILED'; return; fi
	awk -v a="$med" -v b="$min" -v c="$max" -v n="$cnt" -v k="$3" -v d="$4" -v f="$fails" \
		'BEGIN { printf "%.*f (%.*f–%.*f, %d)%s", d, a / k, d, b / k, d, c / k, n, f ? ", then FAILED" : "" }'
	printf '%s' "$med" >"$tmp/$2.med"
}

ratio() { # gunicorn median / sigvisor median
	local g s
	g=$(cat "$tmp/gu.med" 2>/dev/null) s=$(cat "$tmp/sv.med" 2>/dev/null)
	[[ -n $g && -n $s ]] || { printf '—'; return; }
	awk -v g="$g" -v s="$s" 'BEGIN {
		if (s == 0) { printf "%s", g == 0 ? "— (both 0)" : "∞ (sigvisor 0)"; exit }
		printf "%.*f×", (g / s < 10 ? 2 : 0), g / s }'
}

target() { # OP LIMIT SCALE UNIT: judge sigvisor's median
	local s
	s=$(cat "$tmp/sv.med" 2>/dev/null) || { printf '%s %s%s: not measured' "$1" "$2" "$4"; return; }
	awk -v s="$s" -v op="$1" -v lim="$2" -v k="$3" -v u="$4" 'BEGIN {
		v = s / k; ok = (op == "=" ? v == lim : v <= lim)
		printf "%s %s%s: %s", op, lim, u, ok ? "met" : "MISSED" }'
}

rows=()
row() { # LABEL METRIC SCALE DECIMALS [OP LIMIT UNIT]
	local label=$1 m=$2 k=$3 d=$4 a b r t=""
	rm -f "$tmp/sv.med" "$tmp/gu.med"
	a=$(cell "$m" sv "$k" "$d")
	b=$(cell "$m" gu "$k" "$d")
	r=$(ratio)
	if (($# > 4)); then t=$(target "$5" "$6" "$k" "$7"); fi
	rows+=("$label"$'\t'"$a"$'\t'"$b"$'\t'"$r"$'\t'"$t")
}

row "arbiter syscalls, idle ${IDLE_S} s (strace)" idle_syscalls 1 0 "=" 0 ""
row "arbiter syscalls per 1 s window, idle" idle_syscalls_per_s 1 1
row "arbiter context switches, idle ${IDLE_S} s (no tracer)" idle_switches 1 0
row "arbiter VmRSS, MiB" rss_kb 1024 1 "≤" 3 " MiB"
row "arbiter Pss, MiB" pss_kb 1024 2
row "TTIN → new worker visible, ms" ttin_visible 1000 3 "≤" 0.3 " ms"
row "TTIN → new worker ready, ms" ttin_ready 1000 3
row "TTOU → worker reaped, ms" ttou_reaped 1000 3
row "start → all workers ready, ms" start_serving 1000 1
row "TERM (idle) → arbiter exit, ms" term_exit 1000 3 "≤" 10 " ms"
((WRK_S > 0)) && row "wrk ${WRK_S} s, req/s (sanity check, not like for like)" wrk_rps 1 0

print_table() {
	local LC_ALL=C.UTF-8 # so that ${#s} counts characters, not bytes
	local -a head=("metric" "sigvisor median (min–max, n)" "gunicorn median (min–max, n)"
		"ratio gunicorn ÷ sigvisor" "sigvisor target")
	local -a w=(0 0 0 0 0) f
	local line i out c sep="|"
	for i in 0 1 2 3 4; do w[i]=${#head[i]}; done
	for line in "${rows[@]}"; do
		IFS=$'\t' read -r -a f <<<"$line"
		for i in 0 1 2 3 4; do ((${#f[i]} > w[i])) && w[i]=${#f[i]}; done
	done
	for i in 0 1 2 3 4; do sep+=" $(printf '%*s' "${w[i]}" '' | tr ' ' '-') |"; done
	for line in "$(printf '%s\t' "${head[@]}")" "SEP" "${rows[@]}"; do
		if [[ $line == SEP ]]; then printf '%s\n' "$sep"; continue; fi
		IFS=$'\t' read -r -a f <<<"$line"
		out="|"
		for i in 0 1 2 3 4; do
			c=${f[i]:-}
			out+=" $c$(printf '%*s' $((w[i] - ${#c})) '') |"
		done
		printf '%s\n' "$out"
	done
}

median_of() { # NAME METRIC -> median in ms, or "?"
	local s
	s=$(stats "$tmp/$1.samples" "$2")
	[[ -n $s ]] && awk -v s="$s" 'BEGIN { split(s, a, " "); if (a[4] > 0) printf "%.3f", a[1] / 1000; else printf "FAILED" }' || printf '?'
}

elapsed=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
echo
echo "sigvisor $("$SIGVISOR" --version 2>&1 | head -n 1 | awk '{ print $2 }') (sha256 $sv_sum…, built $sv_built) vs gunicorn" \
	"$("$GUNICORN" --version 2>&1 | awk '{ print $NF }' | tr -d '()') (sync worker), $WORKERS workers each on 127.0.0.1;" \
	"kernel $(uname -r), $(nproc) CPUs, $placement; run took ${elapsed} s"
echo
print_table
echo
if [[ $FLOOR == 1 ]]; then
	echo "Floor of the method (probe's minimal signalfd+epoll+fork responder, timed the same way, medians):" \
		"TTIN → visible $(median_of fl ttin_visible) ms, → ready $(median_of fl ttin_ready) ms," \
		"TTOU → reaped $(median_of fl ttou_reaped) ms, TERM → exit $(median_of fl term_exit) ms."
fi
for n in "${names[@]}"; do
	if [[ -s $tmp/$n.sysnames ]]; then
		echo "${title[$n]} idle syscalls by name: $(sort -rn "$tmp/$n.sysnames" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')"
	elif [[ -e $tmp/$n.strace ]]; then
		echo "${title[$n]} idle syscalls by name: none"
	fi
	st=$(awk '$1 == "term_status" { c[$2]++; n++ }
		END { for (s in c) printf "%s%s in %d of %d runs", (k++ ? "; " : ""), s, c[s], n }' "$tmp/$n.samples" 2>/dev/null)
	[[ -n $st ]] && echo "${title[$n]} exit status after TERM: $st"
	lo=$(awk '$1 == "leftover_workers" { s += $2 } END { print s + 0 }' "$tmp/$n.samples" 2>/dev/null)
	((lo > 0)) && echo "${title[$n]}: $lo worker(s) outlived their arbiter after TERM (killed)"
	[[ -s $tmp/$n.wrkerr ]] && echo "${title[$n]} wrk: $(tr -s ' \n' ' ' <"$tmp/$n.wrkerr")"
	[[ -s $tmp/$n.probe.err ]] && echo "${title[$n]} probe said: $(tail -n 3 "$tmp/$n.probe.err" | tr '\n' ' ')"
done
[[ $FLOOR == 1 && -s $tmp/fl.probe.err ]] && echo "floor probe said: $(tail -n 3 "$tmp/fl.probe.err" | tr '\n' ' ')"
echo "Ratio > 1: gunicorn takes that many times more (time, memory, syscalls); for req/s it is gunicorn's share."

# ---- more sections, each with its own table: HUP under load (and the plot),
# signal storms and scale, PID 1. Same binary (our copy), same BUILD.
read -r -a more <<<"${BENCH_MORE-hup storm pid1}"
for s in "${more[@]}"; do
	echo
	SIGVISOR=$SIGVISOR BUILD=$BUILD "$here/$s.sh" || { failed=1; log "$s.sh failed (its table says where)"; }
done
((${#more[@]})) && echo && echo "make bench: everything took $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
exit $((failed ? 1 : 0))
