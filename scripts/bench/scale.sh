#!/usr/bin/env bash
# scripts/bench/scale.sh - what a pool of N workers costs its arbiter (issue 29):
# sigvisor (--bpf off and --bpf auto), gunicorn 20.1 (sync, app.py) and nginx
# (worker_processes N, 127.0.0.1 only, a config in the temp dir) side by side in
# one run, one server at a time, at N = 4, 256, 1024 and 4096. Rows: start -> all
# ready; the arbiter's CPU per worker for that start; HUP -> old generation gone
# (and N new ready); its CPU per worker; TTIN -> new worker visible and ready
# (probe scale); `sigvisor status --json`; the arbiter's idle CPU per minute
# (SCALE_IDLE_SECONDS, a minute: the pings and beats come every 15 s); and, at the largest N, `status`, /healthz and a
# signal answered while the generation starts. At each N the servers take turns, run
# by run, in a rotating order (a long run warms the machine: the server always measured
# last would always be measured on a warmer one). Prints a table with the targets
# judged, and draws each cost against N into scale.svg (gnuplot, hup.sh's style).
# scale.py does the measuring; "ready" and "gone" are read from /proc the same way
# for every server.
#
# gunicorn needs about a minute for 1,024 workers here and minutes at 4,096, so the
# incumbents run up to SCALE_INCUMBENT_MAX (1024) once each (SCALE_INCUMBENT_RUNS),
# and a server whose start or HUP took over SCALE_BUDGET_SECONDS is not run at the
# larger N: the cell says "not run (...)". sigvisor runs SCALE_RUNS times (3), the
# median printed with min–max.
#
# Environment:
#   SIGVISOR=PATH  GUNICORN=PATH  NGINX=PATH  BUILD=DIR (as run.sh)
#   SCALE_N="4 256 1024 4096"      the pool sizes (e.g. SCALE_N=4096 for one row set)
#   SCALE_SERVERS="floor sv_off sv_auto gu ngx"  (floor: probe exec-responder, N
#                                  do-nothing workers exec'd: what fork and exec alone
#                                  cost here, under any server whose workers are
#                                  fresh images)
#   SCALE_RUNS=3 SCALE_INCUMBENT_RUNS=1 SCALE_INCUMBENT_MAX=1024
#   SCALE_IDLE_SECONDS=60 SCALE_TTINS=5 SCALE_STATUS_RUNS=10
#   SCALE_BUDGET_SECONDS=150 SCALE_TIMEOUT_SECONDS=300
#   BENCH_PLOT=scripts/bench/scale.svg (empty: no plot)  BENCH_KEEP=1
#
# Quick re-run of one row set:  SCALE_N="4 256" SCALE_SERVERS=sv_off scripts/bench/scale.sh
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a NS <<<"${SCALE_N:-4 256 1024 4096}"
read -r -a SERVERS <<<"${SCALE_SERVERS:-floor sv_off sv_auto gu ngx}"
NGINX=${NGINX:-nginx}
PLOT=${BENCH_PLOT-$here/scale.svg}
for s in "${SERVERS[@]}"; do
	case $s in
	gu) need "$GUNICORN" gunicorn ;;
	ngx) need "$NGINX" nginx-light ;;
	sv_off | sv_auto | floor) ;;
	*) die "unknown server $s (sv_off sv_auto gu ngx floor)" ;;
	esac
done
bench_setup scale
if [[ -n $PLOT ]] && ! command -v gnuplot >/dev/null 2>&1; then
	log "gnuplot not found (Debian package gnuplot-nox): no plot"
	PLOT=
fi
[[ " ${SERVERS[*]} " == *" sv_auto "* && $(id -u) != 0 ]] &&
	log "not root: --bpf auto runs without its probes (the same as off)"

log "kernel $(uname -r), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); N = ${NS[*]}; servers ${SERVERS[*]}; temp dir $tmp"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
SIGVISOR=$SIGVISOR PROBE=$probe GUNICORN=$(command -v "$GUNICORN") NGINX=$(command -v "$NGINX") \
	python3 "$here/scale.py" "$tmp" "${SERVERS[*]}" "${NS[@]}" >>"$tmp/scale.samples" || failed=1
grep -q ' fail ' "$tmp/scale.samples" && failed=1

echo
echo "Scale: one server at a time, ready = N children blocked in their waiting syscall (/proc)," \
	"CPU = the arbiter's (master's) own; sigvisor medians of ${SCALE_RUNS:-3} runs (min–max, n)," \
	"gunicorn 20.1.0 sync + app.py and nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') ${SCALE_INCUMBENT_RUNS:-1} run(s) up to" \
	"${SCALE_INCUMBENT_MAX:-1024} workers; $(machine_line) (at the start: $load0); run took $(elapsed) s"
echo
mkdir -p "$tmp/dat"
python3 "$here/scale.py" --report "$tmp/scale.samples" "$tmp/dat" || failed=1

if [[ -n $PLOT ]]; then
	{
		cat <<-EOF
			set terminal svg size 1400,1000 fixed enhanced font "sans,13" background rgb "white"
			set output "$PLOT"
			set multiplot layout 3,3 title "What N workers cost the arbiter (scripts/bench/scale.sh; medians; load average $(cut -d' ' -f1-3 /proc/loadavg))"
			set logscale xy
			set xtics (4, 16, 64, 256, 1024, 4096)
			set xrange [3:5500]
			set grid xtics ytics lc rgb "#e5e5e5"
			set key top left Left reverse nobox font ",10"
			set xlabel "workers (N)"
		EOF
		panel() { # METRIC TITLE
			echo "set title \"$2\""
			local sep="plot" s c
			for s in "${SERVERS[@]}"; do
				case $s in sv_off) c="#1f77b4" ;; sv_auto) c="#17becf" ;; gu) c="#d62728" ;; floor) c="#7f7f7f" ;; *) c="#2ca02c" ;; esac
				if [[ -s $tmp/dat/$1.$s.dat ]]; then
					printf '%s "%s" using 1:2 with linespoints lw 2 pt 7 lc rgb "%s" title "%s"' \
						"$sep" "$tmp/dat/$1.$s.dat" "$c" \
						"$(case $s in sv_off) echo "sigvisor --bpf off" ;; sv_auto) echo "sigvisor --bpf auto" ;; gu) echo gunicorn ;; floor) echo "floor (do-nothing, exec'd)" ;; *) echo nginx ;; esac)"
					sep=","
				fi
			done
			[[ $sep == plot ]] && printf 'set label 1 "not measured" at graph 0.5, graph 0.5 center\nplot NaN notitle\nunset label 1'
			echo
		}
		panel start_s "start → all ready, s"
		panel start_cpu_ms_per_worker "arbiter CPU per worker, start, ms"
		panel hup_s "HUP → old generation gone, s"
		panel hup_cpu_ms_per_worker "arbiter CPU per worker, HUP, ms"
		panel ttin_visible_ms "TTIN → new worker visible, ms"
		panel ttin_ready_ms "TTIN → new worker ready, ms"
		panel status_json_ms "sigvisor status --json, ms"
		panel idle_cpu_ms_per_min "arbiter CPU idle, ms per minute"
		panel ttou_reaped_ms "TTOU → worker reaped, ms"
		echo "unset multiplot"
	} >"$tmp/scale.gp"
	# A 0 on a log scale: idle CPU of 0 is drawn at the bottom instead.
	for f in "$tmp"/dat/*.dat; do [[ -e $f ]] && awk '{ print $1, ($2 > 0 ? $2 : 0.001) }' "$f" >"$f.t" && mv "$f.t" "$f"; done
	if timeout 30 gnuplot "$tmp/scale.gp" 2>>"$tmp/gnuplot.err"; then
		echo
		echo "Plot: $PLOT (each cost against N, log-log; an idle CPU of 0 is drawn at 0.001)"
	else
		failed=1
		log "gnuplot failed: $(tail -n 2 "$tmp/gnuplot.err")"
	fi
fi
log "scale.sh took $(elapsed) s"
exit $((failed ? 1 : 0))
