#!/usr/bin/env bash
# scripts/bench/usr2.sh - the in-place upgrade's tail: BENCH_USR2_RUNS USR2s one after
# the other to one sigvisor (4 built-in workers) under one `wrk -t2 -c64` run, each
# timed by `sigbench hup --signals USR2` (USR2 -> every old worker reaped), once per
# --bpf mode:
#
#   off    no probes
#   auto   the default: the new image loads its probes beside its new workers
#   on     the new image verifies and attaches its probes before its first worker
#          (what lets a refused probe roll the upgrade back)
#
# and, from the arbiter's log, where each upgrade's time went: the new binary's
# --check, the exec and the new image's set-up, the new generation getting ready.
# The goal (issue 17): p99 <= 150 ms over 20 upgrades under load, also with the
# probes on.
#
# Environment: SIGVISOR BUILD SIGVISOR_BENCH_ARGS as run.sh; BENCH_USR2_RUNS=20
# BENCH_USR2_GAP=0.5 (seconds between upgrades) BENCH_USR2_MODES="off auto on"
# BENCH_KEEP=1. auto and on need root (the probes); without it they are left out.
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${BENCH_USR2_RUNS:-20}
GAP=${BENCH_USR2_GAP:-0.5}
WORKERS=4
PIN=/sys/fs/bpf/sigvisor-bench-usr2
need wrk wrk
bench_setup usr2
read -r -a modes <<<"${BENCH_USR2_MODES:-off auto on}"
declare -A title=([off]="--bpf off" [auto]="--bpf auto (default)" [on]="--bpf on")

if [[ $(id -u) != 0 ]]; then
	log "not root: no eBPF probes, measuring --bpf off only"
	modes=(off)
fi

extra_cleanup() { [[ -d $PIN ]] && rm -rf "$PIN"; }

# The log's timestamps of one upgrade's steps -> "check_ms exec_ms new_ms" per upgrade.
phases() { # LOG
	awk '
		function t(s,    a, b) { split(substr(s, 12, 12), a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }
		/received SIGUSR2/ { u = t($1); c = x = 0 }
		u && /passed --check/ { c = t($1) }
		u && /upgraded in place: adopted/ { x = t($1) }
		u && c && x && /reload complete/ {
			printf "check_ms %.1f\nexec_ms %.1f\nnew_ms %.1f\n", c - u, x - c, t($1) - x; u = 0 }' "$1"
}

run_mode() { # MODE
	local n=$1 p w i out=$tmp/$1
	local -a args=(--bpf "$n")
	[[ $n != off ]] && args+=(--bpf-pin "$PIN")
	p=$(free_port)
	start_server "$tmp/$n.log" "$SIGVISOR" -b "127.0.0.1:$p" -w "$WORKERS" --graceful-timeout 5 \
		--control "$tmp/$n.sock" "${args[@]}" "${SV_EXTRA[@]}"
	if ! "$probe" wait --pid "$spid" --port "$p" --workers "$WORKERS" --ready "$SV_READY" --timeout 20; then
		failed=1
		log "${title[$n]} did not come up; last lines of its log:"
		tail -n 20 "$tmp/$n.log" >&2
		return 1
	fi
	# long enough for every upgrade; stopped with INT once they are done
	timeout $((RUNS * 6 + 30)) wrk -t2 -c64 -d$((RUNS * 6 + 20))s "http://127.0.0.1:$p/" >"$out.wrk" 2>&1 &
	w=$!
	helpers+=("$w")
	sleep 1
	log "${title[$n]}: $RUNS USR2s under wrk"
	for ((i = 1; i <= RUNS; i++)); do
		if ! timeout 30 "$sigbench" hup --pid "$spid" --workers "$WORKERS" --timeout 20 --signals USR2 \
			>"$out.hup.$i" 2>>"$tmp/$n.err"; then
			failed=1
			log "${title[$n]}: upgrade $i: $(tail -n 1 "$tmp/$n.err")"
		fi
		awk '$1 == "hup_gone" { print "usr2_gone", $2 } $1 == "fail" { print }' "$out.hup.$i" >>"$tmp/$n.samples"
		sleep "$GAP"
	done
	kill -INT "$w" 2>/dev/null
	wait "$w"
	unhelp "$w"
	awk '/Socket errors:/ { gsub(/,/, ""); e = $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { x = $NF }
		/requests in/ { r = $1 }
		END { printf "requests %d\nfailed %d\n", r, e + x }' "$out.wrk" >>"$tmp/$n.samples"
	phases "$tmp/$n.log" >>"$tmp/$n.samples"
	stop_server "$spid"
	[[ -d $PIN ]] && rm -rf "$PIN"
}

for n in "${modes[@]}"; do run_mode "$n"; done

rows=()
for n in "${modes[@]}"; do
	g=$(cell "$n" usr2_gone 1000 0 p99)
	cp "$tmp/$n.p99" "$tmp/$n-gone.p99" 2>/dev/null
	rows+=("${title[$n]}"$'\t'"$g"$'\t'"$(cell "$n" check_ms 1 0)"$'\t'"$(cell "$n" exec_ms 1 0)"$'\t'"$(cell "$n" new_ms 1 0)"$'\t'"$(cell "$n" failed 1 0 sum)")
done

echo
echo "USR2 under load: $RUNS in-place upgrades one after the other, $GAP s apart, to one sigvisor" \
	"($WORKERS built-in workers) under wrk -t2 -c64 on 127.0.0.1; $(machine_line)"
echo
print_table rows "--bpf" "USR2 → old generation gone, ms: median, p99 (min–max, n)" "--check, ms" \
	"check → exec → new image set up, ms" "new generation ready, old one stopped, ms" "failed requests"
echo
for n in "${modes[@]}"; do
	p=$(cat "$tmp/$n-gone.p99" 2>/dev/null)
	[[ -n $p ]] && awk -v p="$p" -v t="${title[$n]}" 'BEGIN {
		printf "goal: %s p99 <= 150 ms: %.0f ms %s\n", t, p / 1000, p / 1000 <= 150 ? "met" : "MISSED" }'
done
log "usr2.sh took $(elapsed) s"
exit $((failed ? 1 : 0))
