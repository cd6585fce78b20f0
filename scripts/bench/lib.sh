# shellcheck shell=bash disable=SC2034 # variables set here are used by the scripts that source it
# scripts/bench/lib.sh - what run.sh, hup.sh, storm.sh, pid1.sh, loops.sh and bpf.sh
# share (sourced, not run).
#
# bench_setup NAME sets: here root SIGVISOR (a private copy) SIGVISOR_ORIG sv_built
# sv_sum GUNICORN BUILD SV_EXTRA SV_READY GU_READY tmp probe sigbench cpus server_cpu
# probe_cpu, compiles probe.c and
# sigbench*.c into $BUILD/bench, and installs the EXIT/INT/TERM traps that stop
# every process started through start_server (only those, by pid).

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
t_start=$(date +%s.%N)
GUNICORN=${GUNICORN:-gunicorn}
failed=0
servers=() # pids this script started and must stop
helpers=() # background helpers (strace, load clients), stopped with INT

log() { printf '%s\n' "bench: $*" >&2; }
die() { log "error: $*"; exit 2; }
abspath() { # a bare name that is not a file here is looked up in PATH
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*/*) printf '%s\n' "$PWD/$1" ;;
	*) if [[ -e $1 ]] || ! command -v "$1" 2>/dev/null; then printf '%s\n' "$PWD/$1"; fi ;;
	esac
}

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package: $2)"); }
need_done() {
	if ((${#missing[@]})); then
		log "missing tools; install them with apt-get install (or make bench, which runs scripts/deps.sh bench):"
		printf '  %s\n' "${missing[@]}" >&2
		exit 2
	fi
}

state_of() { # the state letter of PID, nothing if gone
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }
	printf '%s' "${s%% *}"
}
alive() { local s; s=$(state_of "$1"); [[ -n $s && $s != Z && $s != X ]]; }
children() { cat "/proc/$1/task/$1/children" 2>/dev/null; }
nchildren() { local -a k; read -r -a k <<<"$(children "$1")"; echo "${#k[@]}"; }

switches() { # PID...: context switches of all their threads so far
	local p
	for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done |
		awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}

cpu_ns() { # PID...: CPU time of all their threads so far, ns (schedstat: exact, not in ticks)
	local p
	for p in "$@"; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done |
		awk '{ s += $1 } END { printf "%.0f\n", s + 0 }'
}

descendants() { # PID: its children, their children, ... (what it started and still has)
	local c
	for c in $(children "$1"); do
		echo "$c"
		descendants "$c"
	done
}

stop_server() { # PID: TERM, up to 8 s, then KILL it and whatever it had started; forget it
	local pid=$1 kids i
	alive "$pid" || { wait "$pid" 2>/dev/null; forget_server "$pid"; return 0; }
	kids=$(descendants "$pid")
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 80; i++)); do alive "$pid" || break; sleep 0.1; done
	if alive "$pid"; then
		log "pid $pid still running 8 s after TERM: sending KILL"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	for i in $kids; do alive "$i" && kill -KILL "$i" 2>/dev/null; done
	forget_server "$pid"
	return 0
}

unhelp() { # PID: a helper that has ended
	local -a keep=()
	local p
	for p in "${helpers[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	helpers=("${keep[@]}")
}

forget_server() { # PID: no longer ours to stop (stopped, or gone on its own)
	local -a keep=()
	local p
	for p in "${servers[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	servers=("${keep[@]}")
}

# shellcheck disable=SC2317 # called from the EXIT trap
bench_cleanup() {
	local p
	trap - EXIT INT TERM
	for p in "${helpers[@]}"; do kill -INT "$p" 2>/dev/null; done
	for p in "${servers[@]}"; do stop_server "$p"; done
	declare -F extra_cleanup >/dev/null && extra_cleanup
	if ((failed)) || [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "logs and raw samples kept in $tmp"
	else
		rm -rf "$tmp"
	fi
}

bench_setup() { # NAME
	if [[ -n ${SIGVISOR:-} ]]; then SIGVISOR=$(abspath "$SIGVISOR"); else SIGVISOR=$root/build/sigvisor; fi
	SIGVISOR_ORIG=$SIGVISOR
	BUILD=${BUILD:-build}
	[[ $BUILD == /* ]] || BUILD=$root/$BUILD
	read -r -a SV_EXTRA <<<"${SIGVISOR_BENCH_ARGS:-}"
	SV_READY=${SIGVISOR_READY_SYSCALLS:-epoll_wait,epoll_pwait,epoll_pwait2}
	GU_READY=select,pselect6,poll,ppoll,epoll_wait,epoll_pwait,accept,accept4
	unset SIGVISOR_ARGS GUNICORN_CMD_ARGS
	need cc gcc
	need timeout coreutils
	need awk mawk
	need python3 python3
	need_done
	[[ -x $SIGVISOR ]] || die "$SIGVISOR is not an executable file: run make first, or set SIGVISOR=PATH"

	probe=$BUILD/bench/probe
	sigbench=$BUILD/bench/sigbench
	mkdir -p "$BUILD/bench" || die "cannot create $BUILD/bench"
	if [[ ! -x $probe || $here/probe.c -nt $probe || $here/benchutil.h -nt $probe ||
		$here/benchopt.h -nt $probe ]]; then
		cc -O2 -Wall -Wextra -Werror -pthread -o "$probe" "$here/probe.c" || die "compiling probe.c failed"
	fi
	local src stale=0
	[[ -x $sigbench ]] || stale=1
	for src in "$here"/sigbench*.[ch] "$here/benchutil.h" "$here/benchopt.h"; do
		if [[ $src -nt $sigbench ]]; then stale=1; fi
	done
	if ((stale)); then
		cc -O2 -Wall -Wextra -Werror -pthread -o "$sigbench" "$here"/sigbench*.c ||
			die "compiling sigbench*.c failed"
	fi

	# Logs on tmpfs when there is one: a server that writes its log to a busy disk
	# stalls in write() (these machines show heavy I/O pressure from other work).
	local tdir=${TMPDIR:-/tmp}
	if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]] &&
		! findmnt -no OPTIONS /dev/shm 2>/dev/null | grep -qw noexec; then
		tdir=/dev/shm
	fi
	tmp=$(mktemp -d "$tdir/sigvisor-$1.XXXXXX") || die "mktemp failed"
	trap bench_cleanup EXIT
	trap 'log interrupted; failed=1; exit 130' INT TERM
	# One binary throughout, even if make rebuilds it meanwhile.
	sv_built=$(date -r "$SIGVISOR" '+%F %T')
	cp "$SIGVISOR" "$tmp/sigvisor" || die "cannot copy $SIGVISOR"
	sv_sum=$(sha256sum "$tmp/sigvisor" | cut -c1-12)
	SIGVISOR=$tmp/sigvisor

	cpus=()
	local r c
	local -a ranges
	IFS=, read -r -a ranges <<<"$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)"
	for r in "${ranges[@]}"; do
		if [[ $r == *-* ]]; then for ((c = ${r%-*}; c <= ${r#*-}; c++)); do cpus+=("$c"); done; else cpus+=("$r"); fi
	done
	server_cpu=-1 probe_cpu=-1
	if [[ ${BENCH_PIN:-1} == 1 ]] && ((${#cpus[@]} >= 2)); then
		server_cpu=${cpus[0]} probe_cpu=${cpus[1]}
	fi
}

# start_server LOG CMD...: start CMD with clean signal state (probe exec), pinned
# to the server CPU when PIN=1 is given in the environment; sets spid.
start_server() {
	local logf=$1 p
	shift
	local -a pinning=()
	[[ ${PIN:-0} == 1 && $server_cpu -ge 0 ]] && pinning=(--cpu "$server_cpu")
	"$probe" exec "${pinning[@]}" -- "$@" >>"$logf" 2>&1 &
	p=$!
	servers+=("$p")
	spid=$p
}

free_port() { "$probe" port || die "no free port"; }

# ---- samples and tables --------------------------------------------------------
sample() { printf '%s %s\n' "$2" "$3" >>"$tmp/$1.samples"; } # NAME METRIC VALUE

# stats FILE METRIC -> "median min max n fails sum p99"; nothing when never
# measured. p99 interpolates linearly between the two nearest ranks (as
# numpy's default does); with fewer than 100 samples it is near the maximum.
stats() {
	awk -v m="$2" '
		$1 == m { v[++n] = $2 + 0; s += $2 }
		$1 == "fail" && $2 == m { f++ }
		END {
			if (n == 0 && f == 0) exit
			for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
			med = n == 0 ? 0 : (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
			h = 1 + 0.99 * (n - 1); lo = int(h)
			p99 = n == 0 ? 0 : (lo >= n ? v[n] : v[lo] + (h - lo) * (v[lo + 1] - v[lo]))
			printf "%.6f %.6f %.6f %d %d %.6f %.6f\n", med, v[1], v[n], n, f + 0, s, p99
		}' "$1" 2>/dev/null
}

# cell NAME METRIC SCALE DECIMALS [sum|p99] -> "median (min–max, n)"; with sum
# "Σ total (min–max per run, n)"; with p99 "median, p99 P (min–max, n)". Leaves
# the median (or the sum) in $tmp/NAME.med and the p99 in $tmp/NAME.p99.
cell() {
	local s med min max cnt fails sum p99
	rm -f "$tmp/$1.med" "$tmp/$1.p99"
	s=$(stats "$tmp/$1.samples" "$2")
	if [[ -z $s ]]; then printf 'not measured'; return; fi
	read -r med min max cnt fails sum p99 <<<"$s"
	if ((cnt == 0)); then printf 'FAILED'; return; fi
	awk -v a="$med" -v b="$min" -v c="$max" -v n="$cnt" -v k="$3" -v d="$4" -v f="$fails" -v s="$sum" \
		-v p="$p99" -v mode="${5:-}" 'BEGIN {
		if (mode == "sum") printf "Σ %.*f (%.*f–%.*f per run, %d)", d, s / k, d, b / k, d, c / k, n
		else if (mode == "p99") printf "%.*f, p99 %.*f (%.*f–%.*f, %d)", d, a / k, d, p / k, d, b / k, d, c / k, n
		else printf "%.*f (%.*f–%.*f, %d)", d, a / k, d, b / k, d, c / k, n
		if (f) printf ", %d FAILED", f }'
	if [[ ${5:-} == sum ]]; then printf '%s' "$sum" >"$tmp/$1.med"; else printf '%s' "$med" >"$tmp/$1.med"; fi
	printf '%s' "$p99" >"$tmp/$1.p99"
}

ratio() { # A B [p99]: median (or p99) of B / that of A (both from cell); "—" if either is missing
	local a b ext=${3:-med}
	a=$(cat "$tmp/$1.$ext" 2>/dev/null) b=$(cat "$tmp/$2.$ext" 2>/dev/null)
	[[ -n $a && -n $b ]] || { printf '—'; return; }
	awk -v a="$a" -v b="$b" -v an="${title[$1]:-sigvisor}" 'BEGIN {
		if (a == 0) { printf "%s", b == 0 ? "— (both 0)" : "∞ (" an ": 0)"; exit }
		printf "%.*f×", (b / a < 10 ? 2 : 0), b / a }'
}

target() { # NAME OP LIMIT SCALE UNIT: judge NAME's median
	local s
	s=$(cat "$tmp/$1.med" 2>/dev/null) || { printf '%s %s%s: not measured' "$2" "$3" "$5"; return; }
	awk -v s="$s" -v op="$2" -v lim="$3" -v k="$4" -v u="$5" 'BEGIN {
		v = s / k; ok = (op == "=" ? v == lim : v <= lim)
		printf "%s %s%s: %s", op, lim, u, ok ? "met" : "MISSED" }'
}

# print_table ROWS_ARRAY_NAME HEAD...: rows are tab-separated fields
print_table() {
	local LC_ALL=C.UTF-8 # so that ${#s} counts characters, not bytes
	local -n _rows=$1
	shift
	local -a head=("$@") w f
	local line i out c sep="|" nf=$#
	for ((i = 0; i < nf; i++)); do w[i]=${#head[i]}; done
	for line in "${_rows[@]}"; do
		IFS=$'\t' read -r -a f <<<"$line"
		for ((i = 0; i < nf; i++)); do c=${f[i]:-}; ((${#c} > w[i])) && w[i]=${#c}; done
	done
	for ((i = 0; i < nf; i++)); do sep+=" $(printf '%*s' "${w[i]}" '' | tr ' ' '-') |"; done
	for line in "$(printf '%s\t' "${head[@]}")" "SEP" "${_rows[@]}"; do
		if [[ $line == SEP ]]; then printf '%s\n' "$sep"; continue; fi
		IFS=$'\t' read -r -a f <<<"$line"
		out="|"
		for ((i = 0; i < nf; i++)); do
			c=${f[i]:-}
			out+=" $c$(printf '%*s' $((w[i] - ${#c})) '') |"
		done
		printf '%s\n' "$out"
	done
}

elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }

machine_line() { # what was measured, where
	printf 'sigvisor %s (sha256 %s…); kernel %s, %s CPUs; load average %s' \
		"$("$SIGVISOR" --version 2>&1 | head -n 1 | awk '{ print $2 }')" "$sv_sum" "$(uname -r)" \
		"$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
