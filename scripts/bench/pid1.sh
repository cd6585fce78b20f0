#!/usr/bin/env bash
# scripts/bench/pid1.sh - sigvisor as PID 1 against tini, dumb-init and catatonit,
# each in `unshare --pid --fork --mount-proc` running the same child:
# `sigbench orphans`, which makes orphans as fast as it can for
# BENCH_ORPHAN_SECONDS (a child that forks a grandchild and exits at once; the
# grandchild exits too, so every round leaves a zombie for PID 1 to reap), then
# forks one more process into its process group and waits for TERM.
# From outside, `sigbench pid1` counts the init's zombie children while that
# runs, when it stops and 1 s later, then sends TERM to the init (by its host
# pid) and times its exit. The child and the group member write down whether
# TERM reached them, and from which pid. scripts/bench/README.md says what each column means.
#
# Environment: SIGVISOR BUILD SIGVISOR_BENCH_ARGS as run.sh; BENCH_PID1_RUNS=3
# BENCH_ORPHAN_SECONDS=3 BENCH_PID1_BPF_OFF=1 (also run sigvisor --bpf off) BENCH_KEEP=1.
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${BENCH_PID1_RUNS:-3}
SECS=${BENCH_ORPHAN_SECONDS:-3}
need unshare util-linux
need tini tini
need dumb-init dumb-init
need catatonit catatonit
bench_setup pid1
if ! timeout 10 unshare --pid --fork --mount-proc true 2>"$tmp/unshare.err"; then
	log "unshare --pid --fork --mount-proc does not work here ($(head -n 1 "$tmp/unshare.err")): PID 1 needs root"
	exit 2
fi

inits=(sv)
[[ ${BENCH_PID1_BPF_OFF:-1} == 1 ]] && inits+=(svoff)
inits+=(tini dumb cata)
declare -A title=([sv]="sigvisor" [svoff]="sigvisor --bpf off" [tini]="tini $(tini --version 2>&1 | awk '{ print $3 }')"
	[dumb]="dumb-init $(dumb-init --version 2>&1 | awk '{ print $2 }')" [cata]="catatonit $(catatonit --version 2>&1 | awk '{ print $3 }' | sed 's/_catatonit//')")

init_cmd() { # NAME -> the init part of the command line, in icmd
	case $1 in
	sv) icmd=("$SIGVISOR" -b 127.0.0.1:0 -w 1 --graceful-timeout 5 --control "$tmp/pid1.sock" "${SV_EXTRA[@]}" --) ;;
	svoff) icmd=("$SIGVISOR" -b 127.0.0.1:0 -w 1 --graceful-timeout 5 --control "$tmp/pid1.sock" "${SV_EXTRA[@]}" --bpf off --) ;;
	tini) icmd=(tini --) ;;
	dumb) icmd=(dumb-init) ;;
	cata) icmd=(catatonit --) ;;
	esac
}

cur_u="" # the unshare running now: not in servers, stop_server's tree walk is not for this
pid1_kill() { # KILL the init (which takes its whole namespace with it), then reap unshare
	local k i
	[[ -n $cur_u ]] || return 0
	read -r i _ <<<"$(children "$cur_u")" # its one child: the init
	[[ -n $i ]] && kill -KILL "$i" 2>/dev/null
	for ((k = 0; k < 50; k++)); do alive "$cur_u" || break; sleep 0.1; done
	alive "$cur_u" && kill -KILL "$cur_u" 2>/dev/null # --kill-child: the init goes with it
	wait "$cur_u" 2>/dev/null
	cur_u=""
}
# shellcheck disable=SC2317 # called by bench_cleanup
extra_cleanup() { pid1_kill; }

pid1_run() { # NAME RUN
	local n=$1 r=$2 m u w k st rc made zend from json
	local -a icmd
	m=$tmp/mark.$n.$r
	mkdir -p "$m"
	init_cmd "$n"
	"$probe" exec -- unshare --pid --fork --mount-proc --kill-child \
		"${icmd[@]}" "$sigbench" orphans --seconds "$SECS" --mark "$m" >>"$tmp/$n.$r.log" 2>&1 &
	u=$!
	cur_u=$u
	timeout 60 "$sigbench" pid1 --parent "$u" --mark "$m" --timeout 20 >"$tmp/$n.$r.out" 2>>"$tmp/$n.err" &
	w=$!
	helpers+=("$w")
	if [[ $n == sv* ]]; then
		# sigvisor's own count of the orphans it reaped, while the watcher waits its 1 s.
		for ((k = 0; k < 200; k++)); do [[ -e $m/made ]] && break; sleep 0.1; done
		sleep 0.3
		json=$(timeout 5 "$SIGVISOR" status --control "$tmp/pid1.sock" --json 2>/dev/null)
		printf '%s' "$json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["counters"].get("orphans_reaped", -1))' \
			>"$m/status-orphans" 2>/dev/null
	fi
	wait "$w"
	rc=$?
	unhelp "$w"
	((rc == 0)) || { failed=1; log "${title[$n]} run $r: $(tail -n 1 "$tmp/$n.err")"; }
	for ((k = 0; k < 100; k++)); do alive "$u" || break; sleep 0.1; done
	if alive "$u"; then
		log "${title[$n]} run $r: unshare still running 10 s after TERM to the init; killing the init"
		failed=1
		pid1_kill
		st=timeout
	else
		wait "$u"
		st=$?
		cur_u=""
	fi
	read -r _ made _ <<<"$(cat "$m/made" 2>/dev/null)"
	zend=$(awk '$1 == "zombies_end" { print $2 }' "$tmp/$n.$r.out")
	{
		awk '$1 ~ /^zombies_/ || $1 == "term_exit" || $1 == "fail" { print }' "$tmp/$n.$r.out"
		if [[ -n $made && -n $zend ]]; then
			awk -v m="$made" -v z="$zend" -v s="$SECS" 'BEGIN { printf "reaped_per_s %.1f\n", (m - z) / s }'
			echo "made $made"
		else
			echo "fail reaped_per_s"
		fi
		if [[ -e $m/child-term ]]; then read -r _ from <"$m/child-term"; echo "child_term 1 $from"; else echo "child_term 0"; fi
		if [[ -e $m/group-term ]]; then read -r _ from <"$m/group-term"; echo "group_term 1 $from"; else echo "group_term 0"; fi
		echo "exit_status $st"
		awk '{ printf "child_term_blocked %d\n", $6 }' "$m/start" 2>/dev/null
		[[ -s $m/status-orphans ]] && echo "status_orphans $(cat "$m/status-orphans") $made"
	} >>"$tmp/$n.samples"
}

for n in "${inits[@]}"; do
	log "${title[$n]}: $RUNS runs of ${SECS} s of orphans as PID 1, then TERM from outside"
	for ((r = 1; r <= RUNS; r++)); do pid1_run "$n" "$r"; done
done

# ---- the table --------------------------------------------------------------------
yes_cell() { # NAME METRIC: "yes (from pid 1) in K of N"
	awk -v m="$2" '$1 == m { n++; if ($2 == 1) { k++; from[$3]++ } }
		END {
			if (!n) { printf "not measured"; exit }
			printf "%s in %d of %d", k == n ? "yes" : k ? "sometimes" : "no", k, n
			if (k) { printf " (from pid"; for (f in from) printf " %s", f; printf ")" }
		}' "$tmp/$1.samples" 2>/dev/null
}
status_cell() {
	awk '$1 == "exit_status" { c[$2]++; n++ }
		END { for (s in c) printf "%s%s%s ×%d", (k++ ? ", " : ""), s, (s > 128 && s < 160 ? " (signal " s - 128 ")" : ""), c[s] }' \
		"$tmp/$1.samples" 2>/dev/null
}
prow=()
for n in "${inits[@]}"; do
	r=$(cell "$n" reaped_per_s 1 0)
	cp "$tmp/$n.med" "$tmp/$n.reaped.med" 2>/dev/null
	rat=$(ratio sv.reaped "$n.reaped")
	prow+=("${title[$n]}"$'\t'"$r"$'\t'"$rat"$'\t'"$(cell "$n" zombies_max 1 0)"$'\t'"$(cell "$n" zombies_end 1 0)"$'\t'"$(cell "$n" zombies_1s 1 0)"$'\t'"$(yes_cell "$n" child_term)"$'\t'"$(yes_cell "$n" group_term)"$'\t'"$(status_cell "$n")"$'\t'"$(cell "$n" term_exit 1000 1)")
done
echo
echo "PID 1: each init in unshare --pid --fork --mount-proc running sigbench orphans (${SECS} s of orphans, then" \
	"wait for TERM); TERM sent from outside to the init's host pid; $RUNS runs each, one at a time, unpinned; $(machine_line)"
echo
print_table prow "init" "orphans reaped/s median (min–max, n)" "÷ sigvisor" "zombie backlog, max while running" \
	"zombies when the maker stops" "zombies 1 s later" "TERM reached the child" "TERM reached its process group" \
	"init exit status" "TERM → init exit, ms"
echo
for n in sv svoff; do
	[[ -s $tmp/$n.samples ]] || continue
	so=$(awk '$1 == "status_orphans" { printf "%s%s of %s", (k++ ? ", " : ""), $2, $3 }' "$tmp/$n.samples")
	[[ -n $so ]] && echo "${title[$n]}: orphans_reaped in status --json (0.3 s after the maker stopped) against orphans made, per run: $so"
done
bl=$(for n in "${inits[@]}"; do awk -v t="${title[$n]}" '$1 == "child_term_blocked" && $2 == 1 { k++ } END { if (k) printf "%s (%d runs) ", t, k }' "$tmp/$n.samples" 2>/dev/null; done)
[[ -n $bl ]] && echo "The child started with TERM blocked under: $bl"
echo "Reaped/s = (orphans made − zombies left when the maker stops) ÷ ${SECS} s; exit status as unshare passes it on (128+N: killed by signal N)."
for n in "${inits[@]}"; do
	[[ -s $tmp/$n.err ]] && echo "${title[$n]} said: $(tail -n 2 "$tmp/$n.err" | tr '\n' ' ')"
done
log "pid1.sh took $(elapsed) s"
exit $((failed ? 1 : 0))
