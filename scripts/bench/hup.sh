#!/usr/bin/env bash
# scripts/bench/hup.sh - HUP under load, sigvisor (4 built-in workers) against
# gunicorn (4 sync workers, app.py), one after the other on 127.0.0.1, and the
# plot: requests completed per 100 ms through a HUP and a USR2, both servers on
# one chart (scripts/bench/hup.svg). scripts/bench/README.md says what each row means.
#
# Per server: one wrk window without a reload (baseline), BENCH_HUPS windows of
# `wrk -t2 -c64 -d${BENCH_HUP_WRK_SECONDS}s` with one HUP BENCH_HUP_AT s into
# each (timed by `sigbench hup`, no tracer), BENCH_HUPS more with strace on the
# arbiter to count the signals it sends each old worker, then the plot run
# (`sigbench load`: HUP at 2 s, USR2 at (BENCH_PLOT_SECONDS+2)/2 s). Then
# BENCH_USR2S windows with one USR2 each, and as many traced: sigvisor's USR2
# is its in-place upgrade; gunicorn's is followed, as its documentation says,
# by TERM to the old master once the new master has its workers ready.
#
# Environment: SIGVISOR BUILD GUNICORN SIGVISOR_BENCH_ARGS as run.sh;
# BENCH_HUPS=5 BENCH_USR2S=3 BENCH_HUP_WRK_SECONDS=3 BENCH_HUP_AT=1 BENCH_PLOT=scripts/bench/hup.svg
# (empty: no plot) BENCH_PLOT_SECONDS=8 BENCH_PLOT_RUNS=3 (the plot shows the
# median of the runs, bucket by bucket) BENCH_KEEP=1; BENCH_REPLOT=DIR redraws
# the table and the plot from a run kept with BENCH_KEEP=1, measuring nothing.
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HUPS=${BENCH_HUPS:-5}
USR2S=${BENCH_USR2S:-3}
WRK_S=${BENCH_HUP_WRK_SECONDS:-3}
HUP_AT=${BENCH_HUP_AT:-1}
PLOT=${BENCH_PLOT-$here/hup.svg}
PLOT_S=${BENCH_PLOT_SECONDS:-8}
PLOT_RUNS=${BENCH_PLOT_RUNS:-3}
WORKERS=4
need wrk wrk
need strace strace
need "$GUNICORN" gunicorn
bench_setup hup
if [[ -n $PLOT ]] && ! command -v gnuplot >/dev/null 2>&1; then
	log "gnuplot not found (Debian package gnuplot-nox): no plot"
	PLOT=""
fi

names=(sv gu)
declare -A title=([sv]=sigvisor [gu]=gunicorn) ready=([sv]=$SV_READY [gu]=$GU_READY) pid port

launch() { # NAME: start it unpinned (a load test wants both CPUs) and wait until it serves
	local n=$1 p
	p=$(free_port)
	port[$n]=$p
	case $n in
	sv) start_server "$tmp/sv.log" "$SIGVISOR" -b "127.0.0.1:$p" -w "$WORKERS" --graceful-timeout 5 \
		--control "$tmp/sv.sock" "${SV_EXTRA[@]}" ;;
	gu) start_server "$tmp/gu.log" "$GUNICORN" --chdir "$here" app:app -w "$WORKERS" \
		-b "127.0.0.1:$p" --graceful-timeout 5 ;;
	esac
	pid[$n]=$spid
	if ! "$probe" wait --pid "$spid" --port "$p" --workers "$WORKERS" --ready "${ready[$n]}" --timeout 20; then
		failed=1
		log "${title[$n]} did not come up; last lines of its log:"
		tail -n 20 "$tmp/$n.log" >&2
		return 1
	fi
	log "${title[$n]} serves on 127.0.0.1:$p, arbiter pid $spid"
}

wrk_samples() { # NAME FILE PREFIX: requests, req/s, socket errors, non-2xx, p99 (ms)
	if ! grep -q 'requests in' "$2"; then
		echo "fail ${3}_requests" >>"$tmp/$1.samples"
		failed=1
		return
	fi
	awk -v pre="$3" '
		/requests in/ { printf "%s_requests %d\n", pre, $1 }
		/^Requests\/sec:/ { printf "%s_rps %s\n", pre, $2 }
		/Socket errors:/ { gsub(/,/, ""); printf "%s_sockerr %d\n", pre, $4 + $6 + $8 + $10; se = 1 }
		/Non-2xx or 3xx responses:/ { printf "%s_non2xx %d\n", pre, $NF; nx = 1 }
		$1 == "99%" {
			v = $2; u = $2; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u)
			f = u == "us" ? 0.001 : u == "ms" ? 1 : u == "s" ? 1000 : u == "m" ? 60000 : 0
			printf "%s_p99_ms %.3f\n", pre, v * f
		}
		END { if (!se) printf "%s_sockerr 0\n", pre; if (!nx) printf "%s_non2xx 0\n", pre }' "$2" >>"$tmp/$1.samples"
}

# gunicorn's USR2 leaves a new master (no longer our child) in charge: make it
# the server we track and stop, once the old master (which has its TERM) is gone.
adopt_master() { # NAME NEWPID
	local n=$1 nm=$2 k
	servers+=("$nm")
	# Wait for the old master, not stop_server: the new master may still be its
	# child, and must not be taken down with it.
	for ((k = 0; k < 100; k++)); do alive "${pid[$n]}" || break; sleep 0.1; done
	if alive "${pid[$n]}"; then
		failed=1
		log "gunicorn's old master ${pid[$n]} still running 10 s after its TERM: killing it"
		kill -KILL "${pid[$n]}" 2>/dev/null
	fi
	wait "${pid[$n]}" 2>/dev/null
	forget_server "${pid[$n]}"
	pid[$n]=$nm
	# the next window starts from a settled pool under the new master
	"$probe" wait --pid "$nm" --port "${port[$n]}" --workers "$WORKERS" --ready "${ready[$n]}" \
		--timeout 20 || { failed=1; log "gunicorn's new master $nm never settled"; }
}

# NAME OUT [SUFFIX [SIGNAL]]: one wrk window; with a SUFFIX ("", _strace, _usr2,
# _usr2_strace) a reload signal (HUP unless SIGNAL is USR2) HUP_AT s in
wrk_window() {
	local n=$1 out=$2 w nm
	local -a how=()
	timeout $((WRK_S + 15)) wrk -t2 -c64 -d"${WRK_S}s" --latency "http://127.0.0.1:${port[$n]}/" >"$out" 2>&1 &
	w=$!
	helpers+=("$w")
	if (($# > 2)); then
		if [[ ${4:-HUP} == USR2 ]]; then
			how=(--signals USR2)
			[[ $n == gu ]] && how+=(--usr2-mode gunicorn --ready "${ready[$n]}")
		fi
		sleep "$HUP_AT"
		if ! timeout 30 "$sigbench" hup --pid "${pid[$n]}" --workers "$WORKERS" --timeout 10 "${how[@]}" \
			>"$out.hup" 2>>"$tmp/$n.err"; then
			failed=1
			log "${title[$n]}: $(tail -n 1 "$tmp/$n.err")"
		fi
		# sigbench hup prints "hup_gone US", "hup_full US", "hup_old PID...", "hup_old_exit_*"
		awk -v sfx="$3" '
			$1 == "hup_gone" || $1 == "hup_full" { print $1 sfx, $2 }
			$1 == "fail" { print "fail", $2 sfx }
			$1 == "hup_old_exit_clean" { print "old_clean" sfx, $2 }
			$1 == "hup_old_exit_signal" || $1 == "hup_old_exit_status" { k += $3 }
			$1 == "hup_old" { old = NF - 1 }
			$1 == "hup_old_exit_unknown" { unknown = 1 }
			END { if (!unknown) print "old_total" sfx, old; print "old_killed" sfx, k + 0 }' "$out.hup" >>"$tmp/$n.samples"
	fi
	wait "$w"
	unhelp "$w"
	nm=$(awk '$1 == "hup_newmaster" { print $2 }' "$out.hup" 2>/dev/null)
	[[ -n $nm ]] && adopt_master "$n" "$nm"
	return 0
}

strace_on() { # NAME [OUT]: trace the signals every thread of the arbiter sends (not its children)
	local n=$1 out=${2:-$tmp/$1.strace} t k
	local -a tids=()
	for t in /proc/"${pid[$n]}"/task/*; do tids+=(-p "${t##*/}"); done
	strace -qq -ttt -yy -e trace=kill,tkill,tgkill,pidfd_send_signal,rt_sigqueueinfo,rt_tgsigqueueinfo \
		-o "$out" "${tids[@]}" 2>>"$tmp/$n.strace.err" &
	st_pid=$!
	helpers+=("$st_pid")
	for ((k = 0; k < 250; k++)); do
		[[ $(awk '/^TracerPid:/ { print $2 }' "/proc/${pid[$n]}/status" 2>/dev/null) != 0 ]] && return 0
		sleep 0.02
	done
	log "strace did not attach to ${title[$n]} within 5 s: $(tail -n 1 "$tmp/$n.strace.err")"
	return 1
}

strace_off() {
	local k
	kill -INT "$st_pid" 2>/dev/null
	for ((k = 0; k < 250; k++)); do alive "$st_pid" || break; sleep 0.02; done
	alive "$st_pid" && kill -KILL "$st_pid" 2>/dev/null
	wait "$st_pid" 2>/dev/null
	unhelp "$st_pid"
}

# Signals the arbiter sent each worker it had before a traced reload: kill/tkill/
# rt_sigqueueinfo(PID, SIG), tgkill(TGID, TID, SIG), pidfd_send_signal(FD<pid:PID>, SIG).
term_counts() { # NAME WINDOWS TRACES [SUFFIX]: file name parts of the traced windows and their traces
	local n=$1 sfx=${4:-}
	# shellcheck disable=SC2206 # $3 may be a glob
	local -a f=("$tmp/$n.wrk.$2".*.hup) tr=("$tmp/$n".$3)
	[[ -s ${f[0]} ]] || { echo "fail terms_per_old$sfx" >>"$tmp/$n.samples"; return; }
	cat "${f[@]}" | awk -v sfx="$sfx" '
		FNR == NR { if ($1 == "hup_old") for (i = 2; i <= NF; i++) old[$i] = 1; next }
		{
			line = $0
			sub(/^[0-9]+ +/, "", line) # [pid] prefix when several tasks are traced
			sub(/^[0-9]+\.[0-9]+ +/, "", line)
			name = line; sub(/\(.*/, "", name)
			args = line; sub(/^[a-z_0-9]+\(/, "", args); sub(/\) += .*/, "", args)
			na = split(args, a, ", ")
			if (name == "tgkill") { p = a[2]; s = a[3] }
			else { p = a[1]; s = a[2] }
			if (name == "pidfd_send_signal") { if (p !~ /<pid:/) next; sub(/.*<pid:/, "", p); sub(/>.*/, "", p) }
			if (!(p in old) || s == "0") next
			# SIGCONT before the TERM is deliberate (a stopped worker still drains; systemd
			# does the same): counted apart, not as a stray signal.
			if (s == "SIGTERM") term[p]++; else if (s == "SIGCONT") cont[p]++; else { other[p]++; kinds[s]++ }
		}
		END {
			for (p in old) printf "terms_per_old%s %d\nconts_per_old%s %d\nother_per_old%s %d\n", sfx, term[p], sfx, cont[p], sfx, other[p]
			for (s in kinds) printf "other_kind %s %d\n", s, kinds[s]
		}' - "${tr[@]}" >>"$tmp/$n.samples"
}

plot_run() { # NAME RUN: requests per 100 ms through a HUP at 2 s and a USR2 later
	local n=$1 r=$2 mode=inplace nm
	[[ $n == gu ]] && mode=gunicorn
	log "${title[$n]}: plot run $r of $PLOT_RUNS, ${PLOT_S} s of load, HUP at 2 s, USR2 at $(((PLOT_S + 2) / 2)) s"
	if ! timeout $((PLOT_S + 20)) "$sigbench" load --port "${port[$n]}" --conns 64 --seconds "$PLOT_S" \
		--bucket-ms 100 --pid "${pid[$n]}" --hup-at 2 --usr2-at $(((PLOT_S + 2) / 2)) --usr2-mode "$mode" \
		--workers "$WORKERS" --ready "${ready[$n]}" >"$tmp/$n.load.$r" 2>>"$tmp/$n.err"; then
		failed=1
		log "${title[$n]}: the load client failed: $(tail -n 1 "$tmp/$n.err")"
	fi
	nm=$(awk '$2 == "newmaster" { print $3 }' "$tmp/$n.load.$r")
	[[ -n $nm ]] && adopt_master "$n" "$nm"
	sleep 0.5
}

if [[ -n ${BENCH_REPLOT:-} ]]; then
	# Only redraw the table and the plot from a kept run's directory.
	rm -rf "$tmp"
	tmp=$(abspath "$BENCH_REPLOT")
	SIGVISOR=$tmp/sigvisor
	BENCH_KEEP=1
else
	for n in "${names[@]}"; do
		launch "$n" || continue
		log "${title[$n]}: baseline wrk window (${WRK_S} s, no reload)"
		wrk_window "$n" "$tmp/$n.wrk.base"
		wrk_samples "$n" "$tmp/$n.wrk.base" base
		log "${title[$n]}: $HUPS wrk windows with one HUP each"
		for ((i = 1; i <= HUPS; i++)); do
			wrk_window "$n" "$tmp/$n.wrk.hup.$i" ""
			wrk_samples "$n" "$tmp/$n.wrk.hup.$i" hup
		done
		log "${title[$n]}: $HUPS more with strace on the arbiter"
		if strace_on "$n"; then
			for ((i = 1; i <= HUPS; i++)); do wrk_window "$n" "$tmp/$n.wrk.st.$i" _strace; done
			strace_off
			term_counts "$n" st strace
		else
			strace_off
			failed=1
			echo "fail terms_per_old" >>"$tmp/$n.samples"
		fi
		if [[ -n $PLOT ]]; then for ((r = 1; r <= PLOT_RUNS; r++)); do plot_run "$n" "$r"; done; fi
		if ((USR2S > 0)); then
			log "${title[$n]}: $USR2S wrk windows with one USR2 each"
			for ((i = 1; i <= USR2S; i++)); do
				wrk_window "$n" "$tmp/$n.wrk.usr2.$i" _usr2 USR2
				wrk_samples "$n" "$tmp/$n.wrk.usr2.$i" usr2
			done
			# gunicorn's USR2 replaces the master, so each window attaches anew
			log "${title[$n]}: $USR2S more with strace on the arbiter"
			for ((i = 1; i <= USR2S; i++)); do
				if strace_on "$n" "$tmp/$n.strace-usr2.$i"; then
					wrk_window "$n" "$tmp/$n.wrk.ust.$i" _usr2_strace USR2
				else
					failed=1
				fi
				strace_off
			done
			term_counts "$n" ust "strace-usr2.*" _usr2
		fi
		stop_server "${pid[$n]}"
	done
fi

# ---- the table ------------------------------------------------------------------
rows=()
row() { # LABEL METRIC SCALE DECIMALS [sum] [OP LIMIT UNIT]
	local label=$1 m=$2 k=$3 d=$4 mode=${5:-} a b t=""
	a=$(cell sv "$m" "$k" "$d" "$mode")
	b=$(cell gu "$m" "$k" "$d" "$mode")
	(($# > 5)) && t=$(target sv "$6" "$7" "$k" "$8")
	rows+=("$label"$'\t'"$a"$'\t'"$b"$'\t'"$(ratio sv gu)"$'\t'"$t")
}

of_row() { # LABEL METRIC_K METRIC_N: "K of N" summed over the runs; sigvisor should have all
	local label=$1 a b n t="all: not measured"
	local -a cells=()
	for n in sv gu; do
		read -r a b <<<"$(awk -v k="$2" -v t="$3" '$1 == k { x += $2 } $1 == t { y += $2 }
			END { print x + 0, y + 0 }' "$tmp/$n.samples" 2>/dev/null)"
		if ((${b:-0} == 0)); then cells+=("not measured"); else cells+=("$a of $b"); fi
		if [[ $n == sv ]] && ((${b:-0} > 0)); then
			if ((a == b)); then t="all: met"; else t="all: MISSED"; fi
		fi
	done
	rows+=("$label"$'\t'"${cells[0]}"$'\t'"${cells[1]}"$'\t'"—"$'\t'"$t")
}

row "requests per ${WRK_S} s window with one HUP" hup_requests 1 0
row "req/s in those windows" hup_rps 1 0
row "req/s, ${WRK_S} s window without a reload" base_rps 1 0
row "failed requests: wrk socket errors" hup_sockerr 1 0 sum "=" 0 ""
row "failed requests: non-2xx responses" hup_non2xx 1 0 sum "=" 0 ""
row "p99 latency with a HUP, ms" hup_p99_ms 1 2
row "p99 latency without a reload, ms" base_p99_ms 1 2
row "HUP → old generation gone (all reaped), ms" hup_gone 1000 1 "" "≤" 50 " ms"
row "HUP → 4 new workers up, ms" hup_full 1000 1
each_row() { # LABEL METRIC WANT: like row, judged on every sample (min and max), not the median
	local a b t="= $3 each: not measured" s
	a=$(cell sv "$2" 1 1)
	b=$(cell gu "$2" 1 1)
	s=$(stats "$tmp/sv.samples" "$2")
	if [[ -n $s ]]; then
		read -r _ lo hi cnt fl _ <<<"$s"
		if ((cnt > 0)) && awk -v l="$lo" -v h="$hi" -v w="$3" -v f="$fl" 'BEGIN { exit !(l == w && h == w && f == 0) }'; then
			t="= $3 each: met"
		else
			t="= $3 each: MISSED"
		fi
	fi
	rows+=("$1"$'\t'"$a"$'\t'"$b"$'\t'"$(ratio sv gu)"$'\t'"$t")
}
each_row "TERMs sent per old worker (strace)" terms_per_old 1
row "SIGCONT sent per old worker, before its TERM (strace)" conts_per_old 1 1
each_row "other signals sent per old worker (strace)" other_per_old 0
of_row "old workers that exited 0 (not by a signal)" old_clean old_total all
row "HUP → old generation gone, strace attached, ms" hup_gone_strace 1000 1
if ((USR2S > 0)); then
	rows+=("USR2 (sigvisor: in place; gunicorn: new master, then TERM to the old)"$'\t\t\t\t')
	row "requests per ${WRK_S} s window with one USR2" usr2_requests 1 0
	row "failed requests: wrk socket errors" usr2_sockerr 1 0 sum "=" 0 ""
	row "failed requests: non-2xx responses" usr2_non2xx 1 0 sum "=" 0 ""
	row "p99 latency with a USR2, ms" usr2_p99_ms 1 2
	row "USR2 → old generation gone (gunicorn: and the old master), ms" hup_gone_usr2 1000 1
	row "USR2 → 4 new workers up (gunicorn: ready under the new master), ms" hup_full_usr2 1000 1
	each_row "TERMs sent per old worker (strace)" terms_per_old_usr2 1
	row "SIGCONT sent per old worker, before its TERM (strace)" conts_per_old_usr2 1 1
	each_row "other signals sent per old worker (strace)" other_per_old_usr2 0
	of_row "old workers that exited 0 (not by a signal)" old_clean_usr2 old_total_usr2 all
	row "USR2 → old generation gone, strace attached, ms" hup_gone_usr2_strace 1000 1
fi

echo
echo "HUP and USR2 under load: wrk -t2 -c64 -d${WRK_S}s --latency on 127.0.0.1, one HUP (or USR2) ${HUP_AT} s into each window," \
	"$HUPS HUP and $USR2S USR2 windows per server (+ as many with strace), $WORKERS workers each (sigvisor built-in, gunicorn" \
	"$("$GUNICORN" --version 2>&1 | awk '{ print $NF }' | tr -d '()') sync + app.py), servers run one at a time, unpinned;" \
	"$(machine_line)"
echo
print_table rows "metric" "sigvisor median (min–max, n)" "gunicorn median (min–max, n)" \
	"ratio gunicorn ÷ sigvisor" "sigvisor target"
echo
for n in "${names[@]}"; do
	k=$(awk '$1 == "other_kind" { printf "%s%s ×%d", (c++ ? ", " : ""), $2, $3 }' "$tmp/$n.samples" 2>/dev/null)
	[[ -n $k ]] && echo "${title[$n]}: other signals to old workers: $k"
	[[ -s $tmp/$n.err ]] && echo "${title[$n]} said: $(tail -n 2 "$tmp/$n.err" | tr '\n' ' ')"
done
echo "Socket errors are wrk's connect+read+write+timeout; Σ is the total over all windows."

# ---- the plot ---------------------------------------------------------------------
# Each run's buckets as % of that run's median rate in the 1.5 s before its HUP
# (the first 0.5 s of load skipped), then bucket by bucket the median over the
# runs (x: seconds after the HUP). NAME.dat: x, median %, failed requests (all runs).
# Prints: median 100% level, old generation gone after the HUP and after the USR2
# (as x, and in ms after the signal; medians over the runs), when gunicorn's old
# master got TERM (x), the client's longest stall, failed requests in all runs,
# the USR2's x.
plot_data() { # NAME
	local f
	for f in "$tmp/$1".load.*; do
		awk '
			$1 == "#" && $2 == "HUP" { hup = $3 }
			$1 == "#" && $2 == "USR2" { usr2 = $3 }
			$1 == "#" && $2 == "newmaster" { term = $5 }
			$1 == "#" && $2 == "gone" { gone[$3] = $4 }
			$1 == "#" && $2 == "client_stall_max_ms" { stall = $3 }
			$1 != "#" { t[++n] = $1; ok[n] = $2; er[n] = $3 }
			END {
				for (i = 1; i <= n; i++) if (t[i] >= 500 && t[i] + 100 <= hup) b[++m] = ok[i]
				for (i = 2; i <= m; i++) { x = b[i]; for (j = i - 1; j >= 1 && b[j] > x; j--) b[j + 1] = b[j]; b[j + 1] = x }
				base = m ? (m % 2 ? b[(m + 1) / 2] : (b[m / 2] + b[m / 2 + 1]) / 2) : 0
				gh = gone["HUP"]; gu = gone["USR2"]
				printf "S %d %s %s %s %s %s %.0f %.3f\n", base,
					gh == "" || gh == "never" ? "-" : sprintf("%.3f", (gh - hup) / 1000), gh == "" || gh == "never" ? "never" : gh - hup,
					gu == "" || gu == "never" ? "-" : sprintf("%.3f", (gu - hup) / 1000), gu == "" || gu == "never" ? "never" : gu - usr2,
					term == "" ? "-" : sprintf("%.3f", (term - hup) / 1000), stall, (usr2 - hup) / 1000
				for (i = 1; i <= n; i++) printf "B %d %.2f %.1f %d\n", i, (t[i] - hup) / 1000, base ? 100 * ok[i] / base : 0, er[i]
			}' "$f"
	done | awk -v out="$tmp/$1.dat" '
		function med(a, k,    i, j, x) {
			for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
			return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
		}
		function medcol(c,    k, i, a) {
			k = 0
			for (i = 1; i <= runs; i++) if (S[i, c] != "-" && S[i, c] != "never") a[++k] = S[i, c]
			return k ? med(a, k) : ""
		}
		$1 == "S" { runs++; for (c = 2; c <= NF; c++) S[runs, c] = $c; if ($8 > stall) stall = $8; next }
		$1 == "B" { i = $2; if (!(i in x)) x[i] = $3; v[i, ++cnt[i]] = $4; err += $5; e[i] += $5; if (i > nb) nb = i }
		END {
			for (i = 1; i <= nb; i++) {
				k = 0; for (j = 1; j <= cnt[i]; j++) a[++k] = v[i, j]
				printf "%s %.1f %d\n", x[i], med(a, k), e[i] > out
			}
			b = medcol(2); xh = medcol(3); gh = medcol(4); xu = medcol(5); gu = medcol(6); tm = medcol(7); u2 = medcol(9)
			printf "%d %s %s %s %s %s %.0f %d %s %d\n", b, xh == "" ? "-" : xh, gh == "" ? "never" : sprintf("%.0f", gh),
				xu == "" ? "-" : xu, gu == "" ? "never" : sprintf("%.0f", gu), tm == "" ? "-" : tm, stall, err, u2, runs
		}'
}

if [[ -n $PLOT && -s $tmp/sv.load.1 && -s $tmp/gu.load.1 ]]; then
	read -r sv_base sv_xh sv_gh sv_xu sv_gu _ sv_stall sv_err usr2_x sv_runs <<<"$(plot_data sv)"
	read -r gu_base gu_xh gu_gh gu_xu gu_gu gu_term gu_stall gu_err _ gu_runs <<<"$(plot_data gu)"
	{
		cat <<-EOF
			set terminal svg size 1100,600 fixed enhanced font "sans,13" background rgb "white"
			set output "$PLOT"
			set title "Requests completed per 100 ms through a HUP and a USR2\n{/*0.8 64 keep-alive connections on 127.0.0.1, 4 workers each. Each line is the median of its runs bucket by bucket ($sv_runs and $gu_runs runs),}\n{/*0.8 each run taken relative to its own rate before the HUP}"
			set xlabel "seconds after the HUP"
			set ylabel "% of the server's median rate before the HUP"
			set yrange [0:145]
			set xrange [-1.5:*]
			set ytics 20
			set grid ytics lc rgb "#e5e5e5"
			set key below left Left reverse nobox font ",12"
			set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead lc rgb "#bbbbbb"
			set arrow 2 from 0, graph 0 to 0, graph 1 nohead dt 2 lc rgb "gray30"
			set label 2 "HUP" at 0, graph 0.96 offset 0.5, 0
			set arrow 3 from $usr2_x, graph 0 to $usr2_x, graph 1 nohead dt 2 lc rgb "gray30"
			set label 3 "USR2" at $usr2_x, graph 0.96 offset 0.5, 0
		EOF
		if [[ $gu_term != - ]]; then
			echo "set arrow 4 from $gu_term, graph 0 to $gu_term, graph 0.9 nohead dt 3 lc rgb \"#d62728\""
			printf 'set label 4 "gunicorn: TERM to\\nthe old master" at %s, graph 0.86 offset 0.5, 0 tc rgb "#d62728" font ",11"\n' "$gu_term"
		fi
		# A tick at the bottom where each server's old generation was gone.
		k=10
		for m in "sv $sv_xh #1f77b4" "sv $sv_xu #1f77b4" "gu $gu_xh #d62728" "gu $gu_xu #d62728"; do
			read -r _ x c <<<"$m"
			[[ $x == - ]] && continue
			echo "set arrow $k from $x, graph 0 to $x, graph 0.07 nohead lw 4 lc rgb \"$c\""
			k=$((k + 1))
		done
		cat <<-EOF
			plot "$tmp/sv.dat" using 1:2 with steps lw 2 lc rgb "#1f77b4" \\
				title "sigvisor (100% ≈ $sv_base req/100 ms): old generation gone $sv_gh ms after HUP, $sv_gu ms after USR2; $sv_err failed", \\
			     "$tmp/gu.dat" using 1:2 with steps lw 2 lc rgb "#d62728" \\
				title "gunicorn (100% ≈ $gu_base req/100 ms): old generation gone $gu_gh ms after HUP, $gu_gu ms after USR2; $gu_err failed", \\
			     NaN with lines lw 4 lc rgb "gray40" title "ticks on the x axis: old generation gone (after gunicorn's USR2: also the old master); medians of the runs"
		EOF
	} >"$tmp/hup.gp"
	if timeout 30 gnuplot "$tmp/hup.gp" 2>>"$tmp/gnuplot.err"; then
		echo "Plot: $PLOT ($sv_runs + $gu_runs runs of ${PLOT_S} s) - old generation gone after HUP (median):" \
			"sigvisor $sv_gh ms, gunicorn $gu_gh ms; after USR2: sigvisor $sv_gu ms, gunicorn $gu_gu ms (USR2 + TERM" \
			"to the old master once the new one had $WORKERS ready workers); failed requests in all runs: $sv_err," \
			"$gu_err; 100% ≈ $sv_base and $gu_base requests per 100 ms; longest load-client stall: $sv_stall ms," \
			"$gu_stall ms."
	else
		failed=1
		log "gnuplot failed: $(tail -n 2 "$tmp/gnuplot.err")"
	fi
fi
log "hup.sh took $(elapsed) s"
exit $((failed ? 1 : 0))
