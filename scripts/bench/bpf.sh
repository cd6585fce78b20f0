#!/usr/bin/env bash
# scripts/bench/bpf.sh - what sigvisor's eBPF probes cost.
#
# Three configurations of one sigvisor (127.0.0.1, 1 worker, its own control socket
# and pin directory): --bpf off; --bpf on --bpf-sigaction off; --bpf on (with the
# rt_sigaction probe, a tp_btf/sys_enter hook that every syscall on the host passes).
# In each, BENCH_RUNS times:
#   syscalls   ns per getppid() in a loop of BENCH_SYSCALLS, in a process outside
#              sigvisor's tree: the host-wide price of the sys_enter hook
#   storm/arb  ns per kill(SIGWINCH) to the arbiter, BENCH_SIGNALS in a tight loop:
#              signal_generate on a tracked target (counted, an event, rate limited)
#   storm/out  the same to a process outside the tree (a `sleep` we start): the
#              price every other signal on the host pays (one hash lookup)
#   arb cpu    the arbiter's CPU time (user+sys, ms) to take in one storm: signalfd
#              reads, its log lines, and the BPF events
# and prints one table of medians with the ratios to --bpf off; then, from one more
# run with kernel.bpf_stats_enabled on (restored after), each program's own run count
# and ns per run, which the machine's noise does not touch.
#
# Root only (the probes need CAP_BPF and CAP_PERFMON). Signals only the processes it
# starts, by pid. Environment: SIGVISOR=PATH (default build/sigvisor), BUILD=DIR
# (where the helper is compiled, default build), BENCH_RUNS=7, BENCH_SYSCALLS=1000000,
# BENCH_SIGNALS=20000, BENCH_KEEP=1 to keep logs.
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${BENCH_RUNS:-7}
NSYS=${BENCH_SYSCALLS:-1000000}
NSIG=${BENCH_SIGNALS:-20000}
[[ $(id -u) == 0 ]] || die "needs root (the probes need CAP_BPF and CAP_PERFMON)"
need bpftool bpftool
bench_setup bpf
pin=/sys/fs/bpf/sigvisor-bench-$$

# The helper: a syscall loop and a kill() loop, each timing itself.
helper=$BUILD/bench/bpfbench
mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
cat >"$tmp/bpfbench.c" <<'EOF'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	double t0, t1;
	long n;

	if (argc == 3 && strcmp(argv[1], "syscalls") == 0) {
		n = atol(argv[2]);
		t0 = now_ns();
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid); /* a real syscall every time: no libc cache */
		t1 = now_ns();
	} else if (argc == 5 && strcmp(argv[1], "kill") == 0) {
		pid_t pid = (pid_t)atoi(argv[2]);
		int sig = atoi(argv[3]);

		n = atol(argv[4]);
		t0 = now_ns();
		for (long i = 0; i < n; i++)
			if (kill(pid, sig) < 0) {
				perror("kill");
				return 1;
			}
		t1 = now_ns();
	} else {
		fprintf(stderr, "usage: bpfbench syscalls N | kill PID SIG N\n");
		return 2;
	}
	printf("%.1f\n", (t1 - t0) / (double)n);
	return 0;
}
EOF
cc -O2 -Wall -Wextra -Werror -o "$helper" "$tmp/bpfbench.c" || die "compiling the helper failed"

# shellcheck disable=SC2317 # called from bench_cleanup
extra_cleanup() { # after every server has been stopped
	if [[ -d $pin ]]; then
		log "the pins in $pin outlived their arbiter: removing them"
		rm -f "$pin"/* && rmdir "$pin"
	fi
	[[ ${stats_was:-} == 0 ]] && echo 0 >/proc/sys/kernel/bpf_stats_enabled
}

# An outsider to signal: sleep ignores WINCH by default (the cheapest target).
sleep 3600 &
outsider=$!
servers+=("$outsider")

configs=(off nosa sa)
declare -A args=([off]="--bpf off" [nosa]="--bpf on --bpf-sigaction off" [sa]="--bpf on --bpf-sigaction on")
declare -A title=([off]="--bpf off" [nosa]="on, no rt_sigaction" [sa]="on + rt_sigaction")

sys_enter_progs() { bpftool -j prog show 2>/dev/null | grep -o '"name":"sv_sys_enter"' | wc -l; }
foreign() { # sv_sys_enter programs loaded by sigvisors other than ARB
	local n
	n=$(sys_enter_progs)
	[[ $1 == sa ]] && ((n--))
	echo "$n"
}
settle_progs() { # the kernel frees a stopped arbiter's programs a little later: wait (2 s at most)
	local i
	for ((i = 0; i < 100; i++)); do (($(sys_enter_progs) <= progs_before)) && return; sleep 0.02; done
}
progs_before=$(sys_enter_progs)

prog_stats() { # ARB: "name run_time_ns run_cnt" of each program the arbiter holds
	local fd id
	for fd in /proc/"$1"/fd/*; do
		[[ $(readlink "$fd") == anon_inode:bpf-prog ]] || continue
		id=$(awk '/^prog_id:/ { print $2 }' "/proc/$1/fdinfo/${fd##*/}")
		bpftool -j prog show id "$id" |
			sed -n 's/.*"name":"\([^"]*\)".*"run_time_ns":\([0-9]*\),"run_cnt":\([0-9]*\).*/\1 \2 \3/p'
	done
}

measure() { # CONFIG: start one sigvisor, take one sample of each metric, stop it
	local c=$1 arb i before cur prev
	read -r -a extra <<<"${args[$c]}"
	# A log of this instance only: the wait below looks for its start-up line.
	: >"$tmp/$c.log"
	start_server "$tmp/$c.log" "$SIGVISOR" -b 127.0.0.1:0 -w 1 --control "$tmp/$c.sock" \
		--bpf-pin "$pin" "${extra[@]}"
	arb=$spid
	for ((i = 0; i < 400; i++)); do
		grep -q 'started: pid' "$tmp/$c.log" && break
		alive "$arb" || { cat "$tmp/$c.log" >&2; failed=1; die "sigvisor ($c) exited"; }
		sleep 0.05
	done
	grep -q 'started: pid' "$tmp/$c.log" || die "sigvisor ($c) did not start: see $tmp/$c.log"
	if [[ $c != off ]] && ! grep -q 'BPF probes on' "$tmp/$c.log"; then
		cat "$tmp/$c.log" >&2
		die "the probes did not load ($c)"
	fi
	foreign "$c" >>"$tmp/foreign"
	# The last run (bpf_stats on) repeats all of it but records only the programs' counts.
	"$helper" syscalls "$NSYS" >"$tmp/sys.ns"
	"$helper" kill "$outsider" 28 "$NSIG" >"$tmp/out.ns"
	if [[ -z ${stats_was:-} ]]; then
		sample "$c" sys "$(cat "$tmp/sys.ns")"
		sample "$c" out "$(cat "$tmp/out.ns")"
	fi
	before=$(cpu_ns "$arb")
	"$helper" kill "$arb" 28 "$NSIG" >"$tmp/arb.ns"
	# The arbiter's share: wait until it has stopped burning CPU on the storm.
	prev=-1
	for ((i = 0; i < 50; i++)); do
		sleep 0.1
		cur=$(cpu_ns "$arb")
		[[ $cur == "$prev" ]] && break
		prev=$cur
	done
	if [[ -z ${stats_was:-} ]]; then
		sample "$c" arb "$(cat "$tmp/arb.ns")"
		sample "$c" cpu $((cur - before))
	fi
	[[ $c != off && -n ${stats_was:-} ]] && prog_stats "$arb" >>"$tmp/progs"
	stop_server "$arb"
	settle_progs
	[[ -d $pin ]] && { failed=1; die "$pin is still there after sigvisor ($c) exited"; }
}

# Interleaved, in a rotating order: whatever else the machine does (another test run
# loading its own probes) lands on every configuration alike, not on one of them.
for ((r = 0; r < RUNS; r++)); do
	for ((k = 0; k < ${#configs[@]}; k++)); do
		measure "${configs[(r + k) % ${#configs[@]}]}"
	done
	log "run $((r + 1))/$RUNS done"
done
# Then one more run with the kernel's accounting of each program's run time on: exact
# where the timings above are at the mercy of the machine, but it adds two clock
# reads to every program run, so it is kept out of them.
stats_was=$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null)
if [[ $stats_was == 0 || $stats_was == 1 ]]; then
	echo 1 >/proc/sys/kernel/bpf_stats_enabled
	measure sa
	[[ $stats_was == 0 ]] && echo 0 >/proc/sys/kernel/bpf_stats_enabled
fi

rows=()
row() { # METRIC LABEL SCALE DECIMALS
	local -a c=()
	local k
	for k in "${configs[@]}"; do c+=("$(cell "$k" "$1" "$3" "$4")"); done
	rows+=("$2"$'\t'"${c[0]}"$'\t'"${c[1]}"$'\t'"${c[2]}"$'\t'"$(ratio off nosa)"$'\t'"$(ratio off sa)")
}
row sys "getppid() ns, outside the tree" 1 1
row out "kill(WINCH) ns, outside the tree" 1 1
row arb "kill(WINCH) ns, to the arbiter" 1 1
row cpu "arbiter CPU ms per storm" 1000000 2
echo
echo "$NSYS × getppid(), $NSIG × kill() per run, $RUNS runs per configuration, interleaved; $(machine_line)"
echo
print_table rows "median (min–max, n)" "${title[off]}" "${title[nosa]}" "${title[sa]}" "nosa ÷ off" "sa ÷ off"
if [[ -s $tmp/progs ]]; then
	printf '\n%-14s %12s %14s   (kernel bpf_stats, one more run on + rt_sigaction)\n' program "runs" "ns per run"
	awk '{ t[$1] += $2; n[$1] += $3 }
	     END { for (p in t) printf "%-14s %12d %14.1f\n", p, n[p], n[p] ? t[p] / n[p] : 0 }' \
		"$tmp/progs" | sort
fi
# Another sigvisor's sys_enter hook taxes every column: say so rather than print
# ratios that silently mean less.
max=$(sort -n "$tmp/foreign" | tail -1)
((max > 0)) && printf 'note: up to %s sv_sys_enter program(s) of other sigvisors were loaded during the runs\n' "$max"
exit 0
