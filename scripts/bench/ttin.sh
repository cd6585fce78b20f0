#!/usr/bin/env bash
# scripts/bench/ttin.sh - N TTIN sent in a tight loop: how many workers do they add?
# sigvisor with its eBPF probes on (exact: N), sigvisor with them off and Debian's
# gunicorn (sync worker; one worker per signal read, and the kernel merges a TTIN sent
# while one is pending), side by side.
#
# Each run starts a fresh server with 2 workers, waits until they are ready, then
# `sigbench storm` sends N SIGTTIN with kill() as fast as it can, from its own CPU
# while the servers run pinned on another, and watches the arbiter's children until
# nothing has forked or exited for BENCH_TTIN_QUIET_MS. Workers added: the children
# then, less the 2 (for sigvisor also its pool's target, from `status --json`, which
# must agree). The probes need root (CAP_BPF, CAP_PERFMON): without them that column
# says "not measured".
#
# Environment: SIGVISOR BUILD GUNICORN SIGVISOR_BENCH_ARGS as run.sh;
# BENCH_TTIN_COUNTS="10 50 200" BENCH_TTIN_RUNS=3 BENCH_TTIN_QUIET_MS=700 BENCH_PIN=1
# BENCH_KEEP=1.
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a COUNTS <<<"${BENCH_TTIN_COUNTS:-10 50 200}"
RUNS=${BENCH_TTIN_RUNS:-3}
QUIET=${BENCH_TTIN_QUIET_MS:-700}
BASE=2
need "$GUNICORN" gunicorn
bench_setup ttin
PIN=1 # servers on the first CPU, the sender on the second
sender=()
((probe_cpu >= 0)) && sender=(--cpu "$probe_cpu")
# The probes' maps pinned where no other sigvisor pins; the arbiter removes them at exit.
pin=/sys/fs/bpf/sigvisor-bench-ttin-$$

names=(on off gu)
declare -A title=([on]="sigvisor, probes on" [off]="sigvisor, probes off" [gu]=gunicorn)
declare -A ready=([on]=$SV_READY [off]=$SV_READY [gu]=$GU_READY)

# shellcheck disable=SC2317 # called by bench_cleanup (lib.sh)
extra_cleanup() { [[ -d $pin ]] && rm -rf "$pin"; }

launch() { # NAME LOG: a fresh server with BASE workers; sets spid
	local n=$1 lg=$2 port
	port=$(free_port)
	case $n in
	on) start_server "$lg" "$SIGVISOR" -b "127.0.0.1:$port" -w "$BASE" --graceful-timeout 5 \
		--control "$tmp/sv.sock" "${SV_EXTRA[@]}" --bpf on --bpf-pin "$pin" ;;
	off) start_server "$lg" "$SIGVISOR" -b "127.0.0.1:$port" -w "$BASE" --graceful-timeout 5 \
		--control "$tmp/sv.sock" "${SV_EXTRA[@]}" --bpf off ;;
	gu) start_server "$lg" "$GUNICORN" --chdir "$here" app:app -w "$BASE" -b "127.0.0.1:$port" \
		--graceful-timeout 5 ;;
	esac
	if ! "$probe" wait --pid "$spid" --port "$port" --workers "$BASE" --ready "${ready[$n]}" --timeout 20; then
		log "${title[$n]} did not come up; last lines of its log:"
		tail -n 5 "$lg" >&2
		stop_server "$spid"
		return 1
	fi
}

# The running sigvisor's pool: "target workers ready counting".
sv_pool() {
	timeout 5 "$SIGVISOR" status --control "$tmp/sv.sock" --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
w = d.get("workers", [])
print(d.get("target", -1), len(w), sum(1 for x in w if x.get("state") == "ready"),
      "exact" if d.get("scale_signals", {}).get("exact") else "merge")' 2>/dev/null
}

one_run() { # NAME N RUN
	local n=$1 count=$2 r=$3 lg out sp final t w rd how k js=""
	lg=$tmp/$n.$count.$r.log out=$tmp/$n.$count.$r.storm
	if ! launch "$n" "$lg"; then
		if [[ $n == on ]] && grep -q "cannot load the probes" "$lg"; then
			log "${title[$n]}: $(grep -o 'cannot load the probes: .*' "$lg" | head -n 1)"
			echo "skip" >"$tmp/on.skipped"
		else
			failed=1
			echo "fail added_$count" >>"$tmp/$n.samples"
		fi
		return
	fi
	sp=$spid
	if ! timeout 120 "$sigbench" storm --pid "$sp" --signals TTIN --rounds "$count" --gap-us 0 \
		"${sender[@]}" --quiet-ms "$QUIET" --timeout 90 >"$out" 2>>"$tmp/$n.err"; then
		log "${title[$n]} N=$count run $r: $(tail -n 1 "$tmp/$n.err")"
	fi
	final=$(awk '$1 == "storm_final" { print $2 }' "$out")
	if [[ $n != gu ]]; then
		# The pool's target says what the arbiter made of the signals; wait (5 s at
		# most) for the workers to match it.
		for ((k = 0; k < 50; k++)); do
			js=$(sv_pool)
			read -r t w rd how <<<"$js"
			[[ -n $js && $t == "$w" && $w == "$rd" ]] && break
			sleep 0.1
		done
		if [[ -n $js ]]; then
			final=$t
			[[ $t == "$w" ]] || log "${title[$n]} N=$count run $r: target $t but $w workers"
			[[ $n == on && $how != exact ]] && log "${title[$n]}: status says the counts may merge"
		fi
	fi
	stop_server "$sp"
	if [[ -z $final ]]; then
		failed=1
		echo "fail added_$count" >>"$tmp/$n.samples"
		return
	fi
	sample "$n" "added_$count" $((final - BASE))
}

log "$(machine_line); gunicorn $("$GUNICORN" --version 2>&1 | awk '{ print $NF }' | tr -d '()')"
for count in "${COUNTS[@]}"; do
	for ((r = 1; r <= RUNS; r++)); do
		for n in "${names[@]}"; do
			[[ $n == on && -e $tmp/on.skipped ]] && continue
			log "${title[$n]}: N=$count run $r"
			one_run "$n" "$count" "$r"
		done
	done
done

rows=()
for count in "${COUNTS[@]}"; do
	row=("$count TTIN sent")
	for n in "${names[@]}"; do row+=("$(cell "$n" "added_$count" 1 0)"); done
	exact=$(cat "$tmp/on.med" 2>/dev/null)
	if [[ -z $exact ]]; then
		row+=("probes not measured")
	elif awk -v e="$exact" -v c="$count" 'BEGIN { exit !(e == c) }' &&
		! awk -v m="added_$count" -v c="$count" '$1 == m && $2 != c { bad = 1 } END { exit !bad }' \
			"$tmp/on.samples"; then
		row+=("= $count in every run: met")
	else
		row+=("= $count: MISSED")
		failed=1
	fi
	rows+=("$(printf '%s\t' "${row[@]}")")
done

echo
echo "N TTIN sent by a tight loop of kill(2) to an arbiter with $BASE workers: workers added," \
	"median (min–max, runs). $(machine_line); run took $(elapsed) s"
echo
print_table rows "signals" "${title[on]}" "${title[off]}" "${title[gu]}" "sigvisor with probes: target"
[[ -e $tmp/on.skipped ]] && echo "The probes could not load here (root with CAP_BPF and CAP_PERFMON is needed)."
exit $((failed ? 1 : 0))
