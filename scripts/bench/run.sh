#!/usr/bin/env bash
# scripts/bench/run.sh - sigvisor and gunicorn (sync worker) side by side.
#
# Starts both with 2 workers on 127.0.0.1 (a free port each), measures what
# their arbiters cost while idle (CPU time, context switches, syscalls,
# memory) and how fast they act on TTIN, TTOU, TERM, INT and QUIT (idle and
# with a request in flight), and prints one table of medians and p99s. Then
# it runs the further sections (BENCH_MORE). scripts/bench/README.md says
# what each metric means. Installs nothing; names the Debian package of a
# missing tool.
#
# Environment:
#   SIGVISOR=PATH            binary under test (default build/sigvisor)
#   SIGVISOR_BENCH_ARGS=...  extra words for sigvisor (e.g. "--bpf off")
#   SIGVISOR_READY_SYSCALLS  what a waiting built-in worker is blocked in
#                            (default epoll_wait,epoll_pwait,epoll_pwait2)
#   GUNICORN=PATH            default: gunicorn from PATH
#   BUILD=DIR                where the probe is compiled (default build)
#   BENCH_IDLE_CPU_SECONDS=60 BENCH_IDLE_SECONDS=10 BENCH_CYCLES=100
#   BENCH_TERM_RUNS=30 BENCH_STOP_RUNS=15 BENCH_BUSY_MS=200 BENCH_WRK_SECONDS=3
#   BENCH_PIN=1              servers on one CPU, the probe on another (0: off)
#   BENCH_FLOOR=1            also time probe's minimal responder (0: off)
#   BENCH_KEEP=1             keep the temp dir (logs, raw samples)
#   BENCH_MORE="hup fair storm pid1 ready usr2 ttin autoscale scale"  the further sections run afterwards
#                            (hup.sh, fair.sh, storm.sh, pid1.sh, ready.sh, usr2.sh, ttin.sh, autoscale.sh, scale.sh; their knobs
#                            are in their headers);
#                            empty: only this table
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_CPU_S=${BENCH_IDLE_CPU_SECONDS:-60}
IDLE_S=${BENCH_IDLE_SECONDS:-10}
CYCLES=${BENCH_CYCLES:-100}
RUNS=${BENCH_TERM_RUNS:-30}
STOP_RUNS=${BENCH_STOP_RUNS:-15}
BUSY_MS=${BENCH_BUSY_MS:-200}
WRK_S=${BENCH_WRK_SECONDS:-3}
FLOOR=${BENCH_FLOOR:-1}
WORKERS=2
FL_READY=epoll_wait,epoll_pwait
need strace strace
need "$GUNICORN" gunicorn
need wrk wrk
bench_setup run
"$SIGVISOR" --help >/dev/null 2>&1 || die "$SIGVISOR_ORIG --help failed: is it a sigvisor binary?"
PIN=1 # start_server: servers on the first CPU
pin_probe=() placement="unpinned"
if ((probe_cpu >= 0)); then
	pin_probe=(--cpu "$server_cpu" --probe-cpu "$probe_cpu")
	placement="servers pinned to CPU $server_cpu, probe to CPU $probe_cpu"
elif [[ ${BENCH_PIN:-1} == 1 ]]; then
	log "only one CPU allowed: running unpinned (timings include the probe's own load)"
fi

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
	# Memory only: the same sigvisor without its eBPF probes (their ring
	# buffer is mapped into the arbiter and counts in its VmRSS).
	sn_cmd=("${sv_cmd[@]}" --bpf off)
	# Idle only: the same sigvisor without the worker watchdog. By default each
	# built-in worker sends WATCHDOG=1 every --timeout/2 and the arbiter reads
	# the pings then, so both wake every 15 s; with --timeout 0 nothing does.
	st_cmd=("${sv_cmd[@]}" --timeout 0)
}

declare -A pid port
names=(sv gu)
declare -A title=([sv]=sigvisor [gu]=gunicorn [fl]=floor [sn]="sigvisor --bpf off" [st]="sigvisor --timeout 0")
declare -A ready=([sv]=$SV_READY [gu]=$GU_READY [fl]=$FL_READY [sn]=$SV_READY [st]=$SV_READY)
declare -A http=([sv]="" [gu]="" [fl]=--no-http [sn]="" [st]="")
mem=(sv gu) # whose memory is sampled
[[ " ${SV_EXTRA[*]} " == *" --bpf "* ]] || mem+=(sn)
idle=(sv gu) # whose idle minute is measured
[[ " ${SV_EXTRA[*]} " == *" --timeout "* ]] || idle+=(st)
extra=("${mem[@]:2}" "${idle[@]:2}") # the instances that only sit there

start() { # NAME: start the long-lived instance and wait until it serves
	local n=$1 p arg
	local -a cmd=()
	local -n tmpl=${n}_cmd
	p=$(free_port)
	for arg in "${tmpl[@]}"; do cmd+=("${arg//@PORT@/$p}"); done
	start_server "$tmp/$n.log" "${cmd[@]}"
	pid[$n]=$spid
	port[$n]=$p
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

stop() { stop_server "${pid[$1]}"; } # NAME

memory() { # NAME: one VmRSS and Pss sample of the arbiter, in kB
	local n=$1 rss pss
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pid[$n]}/status" 2>/dev/null)
	pss=$(awk '/^Pss:/ { print $2 }' "/proc/${pid[$n]}/smaps_rollup" 2>/dev/null)
	[[ -n $rss ]] && sample "$n" rss_kb "$rss"
	[[ -n $pss ]] && sample "$n" pss_kb "$pss"
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

stop_runs() { # NAME SIGNAL RUNS [busy]: fresh instances, start -> serving, SIGNAL -> exit
	local n=$1 sig=$2 runs=$3
	local -n tmpl=${n}_cmd
	local -a busy=()
	[[ ${4:-} == busy ]] && busy=(--busy "/sleep?ms=$BUSY_MS")
	log "${title[$n]}: $runs start / $sig runs${busy[*]:+, a request in flight}"
	# shellcheck disable=SC2086
	if ! "$probe" term "${pin_probe[@]}" --workers "$WORKERS" --ready "${ready[$n]}" \
		${http[$n]} --count "$runs" --timeout 15 --settle 0.2 --log "$tmp/$n.term.log" \
		--signal "$sig" "${busy[@]}" -- "${tmpl[@]}" >>"$tmp/$n.samples" 2>>"$tmp/$n.probe.err"; then
		failed=1
		log "${title[$n]}: $(tail -n 3 "$tmp/$n.probe.err")"
	fi
}

log "sigvisor: $SIGVISOR_ORIG ($("$SIGVISOR" --version 2>&1 | head -n 1); built $sv_built, sha256 $sv_sum…)"
log "gunicorn: $(command -v "$GUNICORN") ($("$GUNICORN" --version 2>&1 | head -n 1))"
log "kernel $(uname -r), $(nproc) CPUs, $placement; load average $(cut -d' ' -f1-3 /proc/loadavg); temp dir $tmp"

for n in "${names[@]}" "${extra[@]}"; do start "$n"; done
for n in "${names[@]}" "${extra[@]}"; do wait_up "$n"; done
sleep 2 # let start-up work (imports, first timers) finish
for n in "${mem[@]}"; do memory "$n"; done

# ---- 1. idle: CPU time and context switches (no tracer), then syscalls -----
log "idle ${IDLE_CPU_S} s: CPU time and context switches, both servers at once"
declare -A cs0 cpu0 wcpu0 kids
for n in "${idle[@]}"; do
	kids[$n]=$(children "${pid[$n]}")
	cs0[$n]=$(switches "${pid[$n]}")
	cpu0[$n]=$(cpu_ns "${pid[$n]}")
	# shellcheck disable=SC2086 # a list of pids
	wcpu0[$n]=$(cpu_ns ${kids[$n]})
done
sleep "$IDLE_CPU_S"
for n in "${idle[@]}"; do
	sample "$n" idle_switches $(($(switches "${pid[$n]}") - ${cs0[$n]}))
	sample "$n" idle_cpu_ns $(($(cpu_ns "${pid[$n]}") - ${cpu0[$n]}))
	# shellcheck disable=SC2086
	if [[ $(children "${pid[$n]}") == "${kids[$n]}" ]]; then
		sample "$n" idle_worker_cpu_ns $(($(cpu_ns ${kids[$n]}) - ${wcpu0[$n]}))
	else
		log "${title[$n]}: workers changed during the idle window; their CPU time is not counted"
		echo "fail idle_worker_cpu_ns" >>"$tmp/$n.samples"
	fi
done
for n in "${mem[@]}"; do memory "$n"; done

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
for n in "${mem[@]}"; do memory "$n"; done
for n in "${extra[@]}"; do stop "$n"; done

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

for n in "${names[@]}"; do stop "$n"; done

# ---- 4. start -> serving, then TERM/INT/QUIT -> exit, a fresh instance each run
for n in "${names[@]}"; do
	stop_runs "$n" TERM "$RUNS"
	stop_runs "$n" INT "$STOP_RUNS"
	stop_runs "$n" QUIT "$STOP_RUNS"
	for s in TERM INT QUIT; do stop_runs "$n" "$s" "$STOP_RUNS" busy; done
done
# the probes' cost at start-up: the same starts without them (the probes load beside
# the first workers with --bpf auto; goal: all ready no later than with --bpf off)
[[ " ${mem[*]} " == *" sn "* ]] && stop_runs sn TERM "$STOP_RUNS"

# ---- 5. the floor: probe's own minimal responder, timed the same way --------
if [[ $FLOOR == 1 ]]; then
	start fl
	wait_up fl
	scale fl
	stop fl
	stop_runs fl TERM "$RUNS"
fi

# ---- the table ----------------------------------------------------------------
rows=()
row() { # LABEL METRIC SCALE DECIMALS [p99] [OP LIMIT UNIT]
	local label=$1 m=$2 unit=$3 d=$4 mode="" a b r t=""
	shift 4
	[[ ${1:-} == p99 ]] && { mode=p99; shift; }
	a=$(cell sv "$m" "$unit" "$d" "$mode")
	b=$(cell gu "$m" "$unit" "$d" "$mode")
	r=$(ratio sv gu)
	[[ $mode == p99 ]] && r+=", p99 $(ratio sv gu p99)"
	(($# > 0)) && t=$(target sv "$1" "$2" "$unit" "$3")
	rows+=("$label"$'\t'"$a"$'\t'"$b"$'\t'"$r"$'\t'"$t")
}

xrow() { # NAME LABEL METRIC SCALE DECIMALS [OP LIMIT UNIT]: a variant of sigvisor against gunicorn's cell
	local a t=""
	a=$(cell "$1" "$3" "$4" "$5")
	cell gu "$3" "$4" "$5" >/dev/null
	(($# > 5)) && t=$(target "$1" "$6" "$7" "$4" "$8")
	rows+=("$2"$'\t'"$a"$'\t'"(as above)"$'\t'"$(ratio "$1" gu)"$'\t'"$t")
}

row "arbiter CPU time, idle ${IDLE_CPU_S} s (no tracer), ms" idle_cpu_ns 1000000 3
row "workers' CPU time (all), idle ${IDLE_CPU_S} s, ms" idle_worker_cpu_ns 1000000 3
row "arbiter context switches, idle ${IDLE_CPU_S} s (no tracer)" idle_switches 1 0
if [[ -s $tmp/st.samples ]]; then
	xrow st "  the same sigvisor with --timeout 0 (no watchdog): CPU time, ms" idle_cpu_ns 1000000 3
	xrow st "  the same sigvisor with --timeout 0: workers' CPU time, ms" idle_worker_cpu_ns 1000000 3
	xrow st "  the same sigvisor with --timeout 0: context switches" idle_switches 1 0 "=" 0 ""
fi
row "arbiter syscalls, idle ${IDLE_S} s (strace)" idle_syscalls 1 0 "=" 0 ""
row "arbiter syscalls per 1 s window, idle" idle_syscalls_per_s 1 1
row "arbiter VmRSS, MiB" rss_kb 1024 1 "≤" 3 " MiB"
row "arbiter Pss, MiB" pss_kb 1024 2
if [[ -s $tmp/sn.samples ]]; then
	xrow sn "  the same sigvisor with --bpf off: VmRSS, MiB" rss_kb 1024 1 "≤" 3 " MiB"
	xrow sn "  the same sigvisor with --bpf off: Pss, MiB" pss_kb 1024 2
fi
row "TTIN → new worker visible, ms" ttin_visible 1000 3 p99 "≤" 0.3 " ms"
row "TTIN → new worker ready, ms" ttin_ready 1000 3 p99
row "TTOU → worker reaped, ms" ttou_reaped 1000 3 p99
row "start → first worker started, ms" start_first_worker 1000 1 p99 "≤" 10 " ms"
if [[ -s $tmp/sn.samples ]] && grep -q '^start_first_worker ' "$tmp/sn.samples"; then
	xrow sn "  the same sigvisor with --bpf off: start → first worker, ms" start_first_worker 1000 1
fi
row "start → all workers ready, ms" start_serving 1000 1 p99
if [[ -s $tmp/sn.samples ]] && grep -q '^start_serving ' "$tmp/sn.samples"; then
	xrow sn "  the same sigvisor with --bpf off: start → all workers ready, ms" start_serving 1000 1
fi
row "TERM (idle) → arbiter exit, ms" term_exit 1000 3 p99 "≤" 10 " ms"
row "INT (idle) → arbiter exit, ms" int_exit 1000 3 p99
row "QUIT (idle) → arbiter exit, ms" quit_exit 1000 3 p99
row "TERM, ${BUSY_MS} ms request in flight → exit, ms" term_busy_exit 1000 1 p99
row "INT, ${BUSY_MS} ms request in flight → exit, ms" int_busy_exit 1000 3 p99
row "QUIT, ${BUSY_MS} ms request in flight → exit, ms" quit_busy_exit 1000 3 p99
((WRK_S > 0)) && row "wrk ${WRK_S} s, req/s (sanity check, not like for like)" wrk_rps 1 0

median_of() { # NAME METRIC -> median in ms, or "?"
	local s
	s=$(stats "$tmp/$1.samples" "$2")
	[[ -n $s ]] && awk -v s="$s" 'BEGIN { split(s, a, " "); if (a[4] > 0) printf "%.3f", a[1] / 1000; else printf "FAILED" }' || printf '?'
}

answered() { # NAME SIG -> "k of n"
	awk -v m="${2}_busy_answered" '$1 == m { n++; k += $2 } END { if (n) printf "%d of %d", k, n; else printf "not measured" }' \
		"$tmp/$1.samples" 2>/dev/null
}

echo
echo "sigvisor $("$SIGVISOR" --version 2>&1 | head -n 1 | awk '{ print $2 }') (sha256 $sv_sum…, built $sv_built) vs gunicorn" \
	"$("$GUNICORN" --version 2>&1 | awk '{ print $NF }' | tr -d '()') (sync worker), $WORKERS workers each on 127.0.0.1;" \
	"kernel $(uname -r), $(nproc) CPUs, $placement; load average $(cut -d' ' -f1-3 /proc/loadavg); run took $(elapsed) s"
echo
print_table rows "metric" "sigvisor median (min–max, n)" "gunicorn median (min–max, n)" \
	"ratio gunicorn ÷ sigvisor" "sigvisor target"
echo
if [[ $FLOOR == 1 ]]; then
	echo "Floor of the method (probe's minimal signalfd+epoll+fork responder, timed the same way, medians):" \
		"TTIN → visible $(median_of fl ttin_visible) ms, → ready $(median_of fl ttin_ready) ms," \
		"TTOU → reaped $(median_of fl ttou_reaped) ms, TERM → exit $(median_of fl term_exit) ms."
fi
for n in "${names[@]}"; do
	echo "${title[$n]}: request in flight answered (2xx) after TERM $(answered "$n" term)," \
		"after INT $(answered "$n" int), after QUIT $(answered "$n" quit)"
done
for n in "${names[@]}"; do
	if [[ -s $tmp/$n.sysnames ]]; then
		echo "${title[$n]} idle syscalls by name: $(sort -rn "$tmp/$n.sysnames" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')"
	elif [[ -e $tmp/$n.strace ]]; then
		echo "${title[$n]} idle syscalls by name: none"
	fi
	st=$(awk '$1 ~ /_status$/ { k = $1; sub(/_status$/, "", k); c[k " " $2]++; n[k]++ }
		END { for (s in c) { split(s, a, " "); printf "%s%s → %s in %d of %d", (j++ ? "; " : ""), toupper(a[1]), a[2], c[s], n[a[1]] } }' \
		"$tmp/$n.samples" 2>/dev/null)
	[[ -n $st ]] && echo "${title[$n]} exit status: $st"
	lo=$(awk '$1 == "leftover_workers" { s += $2 } END { print s + 0 }' "$tmp/$n.samples" 2>/dev/null)
	((lo > 0)) && echo "${title[$n]}: $lo worker(s) outlived their arbiter (killed)"
	[[ -s $tmp/$n.wrkerr ]] && echo "${title[$n]} wrk: $(tr -s ' \n' ' ' <"$tmp/$n.wrkerr")"
	[[ -s $tmp/$n.probe.err ]] && echo "${title[$n]} probe said: $(tail -n 3 "$tmp/$n.probe.err" | tr '\n' ' ')"
done
[[ $FLOOR == 1 && -s $tmp/fl.probe.err ]] && echo "floor probe said: $(tail -n 3 "$tmp/fl.probe.err" | tr '\n' ' ')"
echo "Ratio > 1: gunicorn takes that many times more (time, memory, syscalls); for req/s it is gunicorn's share." \
	"p99 interpolates between ranks: with n < 100 it is close to the maximum."

# ---- more sections, each with its own table: HUP under load (and the plot),
# signal storms and scale, PID 1. Same binary (our copy), same BUILD.
read -r -a more <<<"${BENCH_MORE-hup fair storm pid1 ready usr2 ttin autoscale scale}"
for s in "${more[@]}"; do
	echo
	SIGVISOR=$SIGVISOR BUILD=$BUILD "$here/$s.sh" || { failed=1; log "$s.sh failed (its table says where)"; }
done
((${#more[@]})) && echo && echo "make bench: everything took $(elapsed) s"
exit $((failed ? 1 : 0))
