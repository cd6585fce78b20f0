#!/usr/bin/env bash
# scripts/bench/storm.sh - signal storms against sigvisor and gunicorn (2 workers,
# a fresh server for every storm), then scale: TTIN one worker at a time to 512
# (sigvisor) and 64 (gunicorn), TTOU back to 2. scripts/bench/README.md says what each row means.
#
# Storms are sent by `sigbench storm` (kill() in a loop) from its own CPU while
# the servers run pinned on another; `sigbench storm` then watches the
# arbiter's children through the kernel's proc connector until nothing has
# forked or exited for BENCH_STORM_QUIET_MS, and records how each worker ended.
# What the arbiter handled comes from its own log (each signal it acts on is
# logged: sigvisor "received SIGTTIN ...", gunicorn "Handling signal: ttin"),
# cross-checked for sigvisor with signals.*.received in `status --json`.
#
# Environment: SIGVISOR BUILD GUNICORN SIGVISOR_BENCH_ARGS as run.sh;
# BENCH_STORM_RUNS=3 BENCH_STORM_SIGNALS=1000 BENCH_MIX_ROUNDS=300 (of TTIN,USR1,TTOU)
# BENCH_MIX_GAPS="0 200 1000" (µs) BENCH_STORM_QUIET_MS=700 BENCH_SCALE_TO=512
# BENCH_SCALE_TO_GUNICORN=64 (0: skip gunicorn) BENCH_PIN=1 BENCH_KEEP=1.
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${BENCH_STORM_RUNS:-3}
NSIG=${BENCH_STORM_SIGNALS:-1000}
MIX=${BENCH_MIX_ROUNDS:-300}
read -r -a GAPS <<<"${BENCH_MIX_GAPS:-0 200 1000}"
QUIET=${BENCH_STORM_QUIET_MS:-700}
SCALE_TO=${BENCH_SCALE_TO:-512}
SCALE_TO_GU=${BENCH_SCALE_TO_GUNICORN:-64}
BASE=2
need "$GUNICORN" gunicorn
bench_setup storm
PIN=1 # servers on the first CPU, senders and observers on the second
sender=()
((probe_cpu >= 0)) && sender=(--cpu "$probe_cpu")

names=(sv gu)
declare -A title=([sv]=sigvisor [gu]=gunicorn) ready=([sv]=$SV_READY [gu]=$GU_READY)

launch() { # NAME LOG: a fresh server with BASE workers; sets spid, sport
	local n=$1 lg=$2
	sport=$(free_port)
	case $n in
	sv) start_server "$lg" "$SIGVISOR" -b "127.0.0.1:$sport" -w "$BASE" --graceful-timeout 5 \
		--control "$tmp/sv.sock" "${SV_EXTRA[@]}" ;;
	gu) start_server "$lg" "$GUNICORN" --chdir "$here" app:app -w "$BASE" -b "127.0.0.1:$sport" \
		--graceful-timeout 5 ;;
	esac
	if ! "$probe" wait --pid "$spid" --port "$sport" --workers "$BASE" --ready "${ready[$n]}" --timeout 20; then
		failed=1
		log "${title[$n]} did not come up; last lines of its log:"
		tail -n 20 "$lg" >&2
		stop_server "$spid"
		return 1
	fi
	# --bpf auto loads the probes beside the workers: count a storm only once they
	# are on (or known to be off), or the kernel's merges go uncounted.
	if [ "$n" = sv ]; then
		local i
		for ((i = 0; i < 200; i++)); do
			timeout 5 "$SIGVISOR" status --control "$tmp/sv.sock" --json 2>/dev/null |
				grep -q '"bpf":{"state":"loading"' || break
			sleep 0.05
		done
	fi
}

# JSON of the running sigvisor -> "ttin ttou usr1 target workers ready" and, when its
# BPF probes are on, "generated coalesced" for TTIN, TTOU and USR1 (-1 when off).
sv_status() {
	timeout 5 "$SIGVISOR" status --control "$tmp/sv.sock" --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
s = d.get("signals", {})
w = d.get("workers", [])
out = [s.get(k, {}).get("received", 0) for k in ("TTIN", "TTOU", "USR1")]
out += [d.get("target", -1), len(w), sum(1 for x in w if x.get("state") == "ready")]
for k in ("TTIN", "TTOU", "USR1"):
    out += [s.get(k, {}).get("generated", -1), s.get(k, {}).get("coalesced", -1)]
print(*out)' 2>/dev/null
}

# One storm against a fresh server. Samples (prefix SC_): handled TTIN/TTOU/USR1
# (from the log, in order), expected pool (simulated from that order: TTIN +1,
# TTOU -1 but never below 1), final pool, match, worker exits and how, workers
# killed by mistake (deaths by USR1 or any signal but TERM, plus other exits
# beyond the TTOUs that shrank the pool), arbiter died.
storm_run() { # NAME SC SIGNALS ROUNDS GAP_US RUN
	local n=$1 sc=$2 sigs=$3 rounds=$4 gap=$5 r=$6 lg out sp st k died=0 final js exits badsig
	lg=$tmp/$n.$sc.$r.log out=$tmp/$n.$sc.$r.storm
	launch "$n" "$lg" || { echo "fail ${sc}_handled" >>"$tmp/$n.samples"; return; }
	sp=$spid
	sleep 0.2
	if ! timeout 60 "$sigbench" storm --pid "$sp" --signals "$sigs" --rounds "$rounds" --gap-us "$gap" "${sender[@]}" \
		--quiet-ms "$QUIET" --timeout 20 >"$out" 2>>"$tmp/$n.err"; then
		log "${title[$n]} $sc run $r: $(tail -n 1 "$tmp/$n.err")"
	fi
	js=""
	if [[ $n == sv ]] && alive "$sp"; then
		# A restart may be waiting out a back-off: give the pool 5 s to reach its target.
		for ((k = 0; k < 50; k++)); do
			js=$(sv_status)
			read -r _ _ _ t w rd _ <<<"$js"
			[[ -n $js && $t == "$w" && $w == "$rd" ]] && break
			sleep 0.1
		done
	fi
	final=$(nchildren "$sp")
	if ! alive "$sp"; then
		died=1
		wait "$sp"
		st=$?
		log "${title[$n]} $sc run $r: the arbiter exited (status $st) during the storm"
		echo "$n $sc run $r: arbiter exited with status $st; last lines of its log:" >>"$tmp/died"
		tail -n 5 "$lg" >>"$tmp/died"
		final=0
	fi
	stop_server "$sp"
	if [[ $n == sv ]]; then
		# Workers that could not tell the arbiter they were ready, and workers it
		# still counted as not ready when the run ended.
		k=$(grep -c 'sending READY=1 to NOTIFY_SOCKET failed' "$lg")
		echo "${sc}_ready_lost $k" >>"$tmp/$n.samples"
		if [[ -n $js ]]; then
			read -r _ _ _ _ w rd _ <<<"$js"
			echo "${sc}_not_ready $((w - rd))" >>"$tmp/$n.samples"
		fi
		pat='received SIG(TTIN|TTOU|USR1) from'
	else
		pat='Handling signal: (ttin|ttou|usr1)'
	fi
	# Exits, and of those the ones by a signal no supervisor sends to stop a worker (not TERM).
	read -r exits badsig <<<"$(awk '$1 == "storm_exits" { e = $2 } $1 == "storm_exit_signal" && $2 != "TERM" { b += $3 }
		END { print (e == "" ? "-" : e), b + 0 }' "$out")"
	grep -E "$pat" "$lg" | awk -v sc="$sc" -v base="$BASE" -v final="$final" -v died="$died" -v js="$js" \
		-v exits="$exits" -v badsig="$badsig" '
		BEGIN { pool = base }
		{
			s = tolower($0)
			if (s ~ /ttin/) { ttin++; pool++ }
			else if (s ~ /ttou/) { ttou++; if (pool > 1) { pool--; eff++ } }
			else if (s ~ /usr1/) usr1++
		}
		END {
			printf "%s_ttin %d\n%s_ttou %d\n%s_usr1 %d\n", sc, ttin, sc, ttou, sc, usr1
			printf "%s_expected %d\n%s_final %d\n%s_match %d\n", sc, pool, sc, final, sc, final == pool
			printf "%s_died %d\n%s_runs 1\n", sc, died, sc
			# killed by mistake: every death by USR1 (or any signal but TERM), plus
			# any other exit beyond the TTOUs that shrank the pool
			rest = exits - badsig - eff
			if (exits != "-") printf "%s_mistaken %d\n", sc, badsig + (rest > 0 ? rest : 0)
			if (js != "") { split(js, j, " "); printf "%s_json_ttin %d\n%s_json_ttou %d\n%s_json_usr1 %d\n", sc, j[1], sc, j[2], sc, j[3] }
			# the kernel, seen by the BPF probes: signals generated for the arbiter and
			# those merged into one already pending (ttin ttou usr1)
			if (js != "" && j[7] >= 0) {
				split("ttin ttou usr1", k, " ")
				for (i = 1; i <= 3; i++) printf "%s_bpf_gen_%s %d\n%s_bpf_merged_%s %d\n", sc, k[i], j[5 + 2 * i], sc, k[i], j[6 + 2 * i]
			}
		}' >>"$tmp/$n.samples"
	# How the workers ended (proc connector): clean, by which signal, by which status.
	awk -v sc="$sc" '
		$1 == "storm_exits" { printf "%s_exits %d\n", sc, $2 }
		$1 == "storm_exit_clean" { printf "%s_exit_clean %d\n", sc, $2 }
		$1 == "storm_exit_signal" { printf "%s_exit_sig_%s %d\n", sc, $2, $3 }
		$1 == "storm_exit_status" { printf "%s_exit_status_%s %d\n", sc, $2, $3 }
		$1 == "storm_events_lost" { printf "%s_events_lost %d\n", sc, $2 }
		$1 == "fail" { printf "%s_unsettled 1\n", sc }' "$out" >>"$tmp/$n.samples"
}

for n in "${names[@]}"; do
	log "${title[$n]}: $RUNS × $NSIG TTIN in a tight loop"
	for ((r = 1; r <= RUNS; r++)); do storm_run "$n" ttin TTIN "$NSIG" 0 "$r"; done
	for g in "${GAPS[@]}"; do
		log "${title[$n]}: $RUNS × $MIX rounds of TTIN,USR1,TTOU, ${g} µs apart"
		for ((r = 1; r <= RUNS; r++)); do storm_run "$n" "mix$g" TTIN,USR1,TTOU "$MIX" "$g" "$r"; done
	done
done

# ---- scale ------------------------------------------------------------------------
scale_run() { # NAME TO
	local n=$1 to=$2 sp
	log "${title[$n]}: TTIN one at a time from $BASE to $to workers, then TTOU back to $BASE"
	launch "$n" "$tmp/$n.scale.log" || { echo "fail scale_up" >>"$tmp/$n.samples"; return; }
	sp=$spid
	sleep 0.2
	echo "scale_to $to" >>"$tmp/$n.samples"
	# 5 s per step at most, and 3 minutes for the whole climb and descent.
	timeout 180 "$sigbench" scale --pid "$sp" --from "$BASE" --to "$to" --ready "${ready[$n]}" --timeout 5 \
		--cpu "$server_cpu" --probe-cpu "$probe_cpu" >>"$tmp/$n.samples" 2>>"$tmp/$n.err"
	case $? in
	0) ;;
	124) failed=1; echo "fail scale_down" >>"$tmp/$n.samples"; log "${title[$n]}: scale not done within 180 s" ;;
	*) failed=1; log "${title[$n]}: $(tail -n 1 "$tmp/$n.err")" ;;
	esac
	stop_server "$sp"
}
scale_run sv "$SCALE_TO"
((SCALE_TO_GU > 0)) && scale_run gu "$SCALE_TO_GU"

# ---- tables -----------------------------------------------------------------------
sum_of() { awk -v m="$2" '$1 == m { s += $2; n++ } END { if (n) print s + 0 }' "$tmp/$1.samples" 2>/dev/null; }

killed_cell() { # NAME SC: "Σ K (of E exits: C clean, USR1 ×a, TERM ×b, status 3 ×c)"
	awk -v sc="$2" '
		$1 == sc "_mistaken" { mis += $2; r++ }
		$1 == sc "_exits" { ex += $2 }
		$1 == sc "_exit_clean" { clean += $2 }
		index($1, sc "_exit_sig_") == 1 { by["by " substr($1, length(sc "_exit_sig_") + 1)] += $2 }
		index($1, sc "_exit_status_") == 1 { by["status " substr($1, length(sc "_exit_status_") + 1)] += $2 }
		END {
			if (!r) { printf "not measured"; exit }
			printf "Σ %d (of %d exits: %d clean", mis, ex, clean
			for (k in by) printf ", %s ×%d", k, by[k]
			printf ")"
		}' "$tmp/$1.samples" 2>/dev/null
}

handled_cell() { # NAME SC: medians of TTIN / USR1 / TTOU handled
	local a b c s
	for m in ttin usr1 ttou; do
		s=$(stats "$tmp/$1.samples" "${2}_$m")
		[[ -z $s ]] && { printf 'not measured'; return; }
		read -r med _ _ cnt _ _ <<<"$s"
		case $m in ttin) a=$med ;; usr1) b=$med ;; ttou) c=$med ;; esac
	done
	printf 'TTIN %.0f, USR1 %.0f, TTOU %.0f (medians, %d)' "$a" "$b" "$c" "$cnt"
}

of_cell() { # NAME METRIC_K METRIC_N -> "K of N"
	local k n
	k=$(sum_of "$1" "$2") n=$(sum_of "$1" "$3")
	if [[ -z $n ]]; then printf 'not measured'; else printf '%s of %s' "${k:-0}" "$n"; fi
}

merged_cell() { # NAME SC KINDS: "TTIN 983 of 1000, ..." medians, from the BPF probes
	local m s med gen cnt out=""
	[[ $1 == sv ]] || { printf '— (no probes)'; return; }
	for m in $3; do
		s=$(stats "$tmp/$1.samples" "${2}_bpf_merged_$m")
		[[ -z $s ]] && { printf 'not measured (probes off)'; return; }
		read -r med _ _ cnt _ _ <<<"$s"
		read -r gen _ <<<"$(stats "$tmp/$1.samples" "${2}_bpf_gen_$m")"
		out+="${out:+, }${m^^} $(printf '%.0f of %.0f' "$med" "$gen")"
	done
	printf '%s (medians, %d)' "$out" "$cnt"
}

srows=()
srow() { srows+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"${4:-—}"); }
a=$(cell sv ttin_ttin 1 0) b=$(cell gu ttin_ttin 1 0)
srow "$NSIG × TTIN, tight loop: TTINs the arbiter handled" "$a" "$b" "$(ratio sv gu)"
a=$(cell sv ttin_final 1 0) b=$(cell gu ttin_final 1 0)
srow "  merged by the kernel while one was pending, of those sent (BPF)" "$(merged_cell sv ttin ttin)" "$(merged_cell gu ttin ttin)"
srow "  final pool size (expected: $BASE + handled)" "$a" "$b" "$(ratio sv gu)"
srow "  runs with final pool = expected" "$(of_cell sv ttin_match ttin_runs)" "$(of_cell gu ttin_match ttin_runs)"
srow "  workers killed by mistake" "$(killed_cell sv ttin)" "$(killed_cell gu ttin)"
for g in "${GAPS[@]}"; do
	case $g in 0) gl="tight loop" ;; *) gl="$g µs apart" ;; esac
	srow "$MIX × (TTIN, USR1, TTOU), $gl: handled" "$(handled_cell sv "mix$g")" "$(handled_cell gu "mix$g")"
	srow "  merged by the kernel, of those sent (BPF)" "$(merged_cell sv "mix$g" "ttin usr1 ttou")" \
		"$(merged_cell gu "mix$g" "ttin usr1 ttou")"
	a=$(cell sv "mix${g}_final" 1 0) b=$(cell gu "mix${g}_final" 1 0)
	srow "  final pool size" "$a" "$b"
	srow "  runs with final pool = expected" "$(of_cell sv "mix${g}_match" "mix${g}_runs")" \
		"$(of_cell gu "mix${g}_match" "mix${g}_runs")"
	srow "  workers killed by mistake" "$(killed_cell sv "mix$g")" "$(killed_cell gu "mix$g")"
	srow "  runs in which the arbiter itself exited" "$(of_cell sv "mix${g}_died" "mix${g}_runs")" \
		"$(of_cell gu "mix${g}_died" "mix${g}_runs")"
done

echo
echo "Signal storms: a fresh server with $BASE workers per run, pinned to CPU $server_cpu; the sender" \
	"(kill() in a loop) on CPU $probe_cpu; settled = no worker forked or exited for $QUIET ms; $(machine_line)"
echo
print_table srows "storm" "sigvisor" "gunicorn" "ratio gunicorn ÷ sigvisor"
echo
# sigvisor's own count (status --json) against its log, which the table uses.
mism=$(awk '
	{ v[$1] += $2 }
	END {
		for (k in v) if (k ~ /_json_/) {
			base = k; sub(/_json_/, "_", base)
			if (v[k] != v[base]) printf "%s%s: status says %d, log %d", (c++ ? "; " : ""), base, v[k], v[base]
		}
	}' "$tmp/sv.samples" 2>/dev/null)
if [[ -n $mism ]]; then
	echo "sigvisor: status --json and the log disagree: $mism"
else
	echo "sigvisor: signals.*.received in status --json agrees with the log in every run."
fi
# Every signal the kernel generated for the arbiter was either merged or handled.
acct=$(awk '
	{ v[$1] += $2 }
	END {
		for (k in v) if (k ~ /_bpf_gen_/) {
			m = k; sub(/_bpf_gen_/, "_bpf_merged_", m)
			h = k; sub(/_bpf_gen_/, "_", h)
			n++
			if (v[k] != v[m] + v[h]) printf "%s%s: generated %d, merged %d, handled %d", (c++ ? "; " : ""), h, v[k], v[m], v[h]
		}
		if (!n) printf "none"
	}' "$tmp/sv.samples" 2>/dev/null)
case $acct in
none) echo "sigvisor: BPF probes off, so what the kernel merged was not counted." ;;
"") echo "sigvisor: in every storm, signals generated for the arbiter (BPF) = merged by the kernel + handled: none lost in user space." ;;
*) echo "sigvisor: generated ≠ merged + handled: $acct" ;;
esac
echo "Workers killed by mistake: deaths by USR1 (or any signal but TERM) plus any other worker exit beyond the" \
	"TTOUs that shrank the pool, summed over the runs; how each worker ended comes from the kernel (proc" \
	"connector), not from the servers. A TERM death is a TTOU'd worker that had not set up its handler yet."
[[ -s $tmp/died ]] && { echo "Arbiter exits during storms:"; sed 's/^/  /' "$tmp/died"; }
nr=$(awk '$1 ~ /_ready_lost$/ { l += $2; if ($2 > 0) r++ } $1 ~ /_not_ready$/ { n += $2 }
	END { if (l + n) printf "%d worker(s) in %d run(s) could not send READY=1 (NOTIFY_SOCKET full: EAGAIN);" \
		" %d worker(s) were still not ready in status --json 5 s after their storm", l, r, n }' "$tmp/sv.samples" 2>/dev/null)
[[ -n $nr ]] && echo "sigvisor: $nr"
lost=$(awk '$1 ~ /_events_lost$/ { s += $2 } END { print s + 0 }' "$tmp/sv.samples" "$tmp/gu.samples" 2>/dev/null)
((lost > 0)) && echo "warning: the proc connector dropped events $lost times (exit counts may be low)"
unset=$(awk '$1 ~ /_unsettled$/ { s += $2 } END { print s + 0 }' "$tmp/sv.samples" "$tmp/gu.samples" 2>/dev/null)
((unset > 0)) && echo "warning: $unset storm run(s) had not settled 20 s after the storm"

fds() { awk -v m="$2" '$1 == m { print $2 }' "$tmp/$1.samples" 2>/dev/null | tail -n 1; }
crow=()
crow() { # LABEL METRIC SCALE DECIMALS
	local a b
	a=$(cell sv "$2" "$3" "$4") b=$(cell gu "$2" "$3" "$4")
	crow+=("$1"$'\t'"$a"$'\t'"$b"$'\t'"$(ratio sv gu)")
}
sv_to=$(fds sv scale_to) gu_to=$(fds gu scale_to)
crow "TTIN → one more worker up and waiting, ms" scale_up 1000 2
crow "  the same, last 10% of the way up, ms" scale_up_top 1000 2
crow "TTOU → one worker reaped, ms" scale_down 1000 2
crow "  the same, first 10% of the way down, ms" scale_down_top 1000 2
crow "all the way up, s" scale_up_total 1000000 2
crow "all the way down, s" scale_down_total 1000000 2
fdcell() {
	local b p e
	b=$(fds "$1" fds_base) p=$(fds "$1" fds_peak) e=$(fds "$1" fds_end)
	[[ -z $b ]] && { printf 'not measured'; return; }
	printf '%s → %s → %s (%s)' "$b" "${p:-?}" "${e:-?}" "$([[ $b == "$e" ]] && echo back to baseline || echo NOT back to baseline)"
}
crow+=("arbiter open fds: at $BASE → at the top → back at $BASE"$'\t'"$(fdcell sv)"$'\t'"$(fdcell gu)"$'\t'"—")
echo
echo "Scale: TTIN one worker at a time from $BASE to ${sv_to:-?} (sigvisor) and ${gu_to:-not run} (gunicorn), each step" \
	"timed until the new worker waits in its event loop; then TTOU back to $BASE, each step timed until a" \
	"worker is reaped; servers on CPU $server_cpu, the observer on CPU $probe_cpu"
echo
print_table crow "scale" "sigvisor 2 → ${sv_to:-?}" "gunicorn 2 → ${gu_to:-—}" "ratio gunicorn ÷ sigvisor"
[[ -s $tmp/sv.err || -s $tmp/gu.err ]] && echo "notes: $(cat "$tmp/sv.err" "$tmp/gu.err" 2>/dev/null | sort | uniq -c | sort -rn | head -n 4 | tr -s ' \n' ' ')"
log "storm.sh took $(elapsed) s"
exit $((failed ? 1 : 0))
