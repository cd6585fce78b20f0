#!/usr/bin/env bash
# scripts/bench/fair.sh - how evenly connections and requests spread over the
# workers: sigvisor (built-in worker), nginx from Debian (a static response,
# shared listening socket, and with `reuseport`) and gunicorn (sync, app.py),
# one after the other on 127.0.0.1, at 4 and at 8 workers each.
#
# Per server and worker count: BENCH_FAIR_RUNS windows of `wrk -t2 -c64` with a
# Lua script that counts the responses by the pid that sent them (sigvisor and
# nginx say it in the body, gunicorn in an X-Pid header), and once in the middle
# of each window the established connections per worker (ss). From the counts:
# Jain's fairness index over the workers, (Σx)² / (n·Σx²), n the worker count
# (a worker that answered nothing counts as 0): 1 is perfectly even, 1/n is one
# worker taking everything. req/s and p99 come from the same windows (the Lua
# response() hook costs the client some speed, the same for every server).
# Then, at 4 workers, one long wrk run through the reload sequence: 5 HUPs,
# 3 USR2s (sigvisor only: its in-place upgrade) and 20 TTIN/TTOU (sigvisor and
# gunicorn; nginx has none), each HUP and USR2 waited for until the old workers
# are gone and the new ones up (sigbench hup); failed requests = wrk's socket
# errors + non-2xx responses.
#
# Environment: SIGVISOR BUILD GUNICORN SIGVISOR_BENCH_ARGS as run.sh;
# NGINX=PATH (default nginx from PATH, then /usr/sbin/nginx)
# BENCH_FAIR_RUNS=3 BENCH_FAIR_SECONDS=4 BENCH_FAIR_WORKERS="4 8"
# BENCH_FAIR_SERVERS="sv ngx ngxrp gu" BENCH_FAIR_RELOAD=1 (0: no reload sequence)
# BENCH_FAIR_CONNS=64 BENCH_KEEP=1
set -u -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${BENCH_FAIR_RUNS:-3}
WRK_S=${BENCH_FAIR_SECONDS:-4}
CONNS=${BENCH_FAIR_CONNS:-64}
RELOAD=${BENCH_FAIR_RELOAD:-1}
read -r -a WORKER_COUNTS <<<"${BENCH_FAIR_WORKERS:-4 8}"
read -r -a names <<<"${BENCH_FAIR_SERVERS:-sv ngx ngxrp gu}"
RELOAD_WORKERS=4
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
need wrk wrk
need ss iproute2
need "$GUNICORN" gunicorn
need "$NGINX" nginx-light
bench_setup fair

declare -A title=([sv]=sigvisor [ngx]="nginx" [ngxrp]="nginx reuseport" [gu]=gunicorn)
declare -A ready=([sv]=$SV_READY [ngx]="epoll_wait,epoll_pwait" [ngxrp]="epoll_wait,epoll_pwait" [gu]=$GU_READY)
declare -A pid port

cat >"$tmp/count.lua" <<'EOF'
-- Count responses by the pid that sent them; done() prints "pid PID N" lines.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
	local p = headers["X-Pid"] or (body and body:match("pid=(%d+)")) or "?"
	counts[p] = (counts[p] or 0) + 1
end
function done(summary, latency, requests)
	local all = {}
	for _, t in ipairs(threads) do
		for k, v in pairs(t:get("counts")) do all[k] = (all[k] or 0) + v end
	end
	for k, v in pairs(all) do io.write(string.format("pid %s %d\n", k, v)) end
end
EOF

nginx_conf() { # NAME WORKERS PORT: write the config, print its path
	local rp="" conf="$tmp/$1-$2.conf"
	[[ $1 == ngxrp ]] && rp=" reuseport"
	mkdir -p "$tmp/ngx"
	cat >"$conf" <<-EOF
		daemon off;
		master_process on;
		worker_processes $2;
		pid $tmp/$1.pid;
		error_log $tmp/$1.log warn;
		events { worker_connections 1024; }
		http {
			access_log off;
			client_body_temp_path $tmp/ngx/body;
			proxy_temp_path $tmp/ngx/proxy;
			fastcgi_temp_path $tmp/ngx/fastcgi;
			uwsgi_temp_path $tmp/ngx/uwsgi;
			scgi_temp_path $tmp/ngx/scgi;
			server {
				listen 127.0.0.1:$3$rp;
				default_type text/plain;
				location / { return 200 "nginx worker pid=\$pid\n"; }
			}
		}
	EOF
	printf '%s\n' "$conf"
}

launch() { # NAME WORKERS: start it unpinned (a load test wants both CPUs), wait until it serves
	local n=$1 nw=$2 p
	p=$(free_port)
	port[$n]=$p
	case $n in
	sv) start_server "$tmp/sv.log" "$SIGVISOR" -b "127.0.0.1:$p" -w "$nw" --graceful-timeout 5 \
		--control "$tmp/sv.sock" "${SV_EXTRA[@]}" ;;
	gu) start_server "$tmp/gu.log" "$GUNICORN" --chdir "$here" app:app -w "$nw" \
		-b "127.0.0.1:$p" --graceful-timeout 5 ;;
	ngx | ngxrp) start_server "$tmp/$n.out" "$NGINX" -p "$tmp/ngx" -e "$tmp/$n.log" -c "$(nginx_conf "$n" "$nw" "$p")" ;;
	esac
	pid[$n]=$spid
	if ! "$probe" wait --pid "$spid" --port "$p" --workers "$nw" --ready "${ready[$n]}" --timeout 20; then
		failed=1
		log "${title[$n]} did not come up; last lines of its log:"
		tail -n 20 "$tmp/$n.log" "$tmp/$n.out" >&2 2>/dev/null
		return 1
	fi
	log "${title[$n]} serves on 127.0.0.1:$p with $nw workers, master pid $spid"
}

# conns_per_worker NAME: established connections on the server's port per
# worker pid, largest first ("61 1 1 1"), workers with none as 0
conns_per_worker() {
	local n=$1 nw=$2
	ss -Htnp state established "( sport = :${port[$n]} )" 2>/dev/null |
		grep -o 'pid=[0-9]*' | sort | uniq -c | awk -v w="$nw" '{ print $1 }
			END { for (i = NR; i < w; i++) print 0 }' | sort -rn | tr '\n' ' '
}

# NAME W OUT: one counted window; samples <n>_<w> rps, p99_ms, jain, maxshare, conns
fair_window() {
	local n=$1 nw=$2 out=$3 k c
	timeout $((WRK_S + 15)) wrk -t2 -c"$CONNS" -d"${WRK_S}s" --latency -s "$tmp/count.lua" \
		"http://127.0.0.1:${port[$n]}/" >"$out" 2>&1 &
	k=$!
	helpers+=("$k")
	sleep "$(awk -v s="$WRK_S" 'BEGIN { print s / 2 }')"
	c=$(conns_per_worker "$n" "$nw")
	wait "$k"
	unhelp "$k"
	echo "conns $c" >>"$out"
	if ! grep -q 'requests in' "$out"; then
		echo "fail rps" >>"$tmp/$n-$nw.samples"
		failed=1
		return
	fi
	awk -v w="$nw" '
		/^Requests\/sec:/ { printf "rps %s\n", $2 }
		$1 == "99%" {
			v = $2; u = $2; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u)
			f = u == "us" ? 0.001 : u == "ms" ? 1 : u == "s" ? 1000 : u == "m" ? 60000 : 0
			printf "p99_ms %.3f\n", v * f
		}
		/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { e += $NF }
		$1 == "pid" { x[++m] = $3; s += $3; q += $3 * $3 }
		$1 == "conns" { top = $2 + 0; conns = 0; for (i = 2; i <= NF; i++) conns += $i }
		END {
			nw = m > w ? m : w
			if (q > 0) printf "jain %.4f\n", s * s / (nw * q)
			for (i = 1; i <= m; i++) if (x[i] > mx) mx = x[i]
			if (s > 0) printf "maxshare %.4f\n", mx / s
			if (conns > 0) printf "topconns %d\n", top
			printf "errors %d\n", e
		}' "$out" >>"$tmp/$n-$nw.samples"
}

# NAME: wrk through the reload sequence; samples reload_failed, reload_requests
reload_run() {
	local n=$1 nw=$RELOAD_WORKERS out=$tmp/$1.reload k i
	local -a seq=()
	for ((i = 0; i < 5; i++)); do seq+=(HUP); done
	[[ $n == sv ]] && for ((i = 0; i < 3; i++)); do seq+=(USR2); done
	if [[ $n == sv || $n == gu ]]; then for ((i = 0; i < 10; i++)); do seq+=(TTIN TTOU); done; fi
	log "${title[$n]}: wrk through ${#seq[@]} signals ($(printf '%s\n' "${seq[@]}" | sort | uniq -c |
		awk '{ printf "%s%s×%d", (NR > 1 ? ", " : ""), $2, $1 }'))"
	# long enough for anything; stopped with INT (wrk then prints its summary)
	timeout 200 wrk -t2 -c"$CONNS" -d180s --latency "http://127.0.0.1:${port[$n]}/" >"$out" 2>&1 &
	k=$!
	helpers+=("$k")
	sleep 1
	for s in "${seq[@]}"; do
		case $s in
		HUP | USR2)
			local -a how=()
			[[ $s == USR2 ]] && how=(--signals USR2)
			if ! timeout 30 "$sigbench" hup --pid "${pid[$n]}" --workers "$nw" --timeout 15 "${how[@]}" \
				>>"$out.hup" 2>>"$tmp/$n.err"; then
				failed=1
				log "${title[$n]}: $s: $(tail -n 1 "$tmp/$n.err")"
			fi
			sleep 0.5
			;;
		TTIN | TTOU)
			kill -"$s" "${pid[$n]}"
			sleep 0.25
			;;
		esac
	done
	sleep 1
	kill -INT "$k" 2>/dev/null
	wait "$k"
	unhelp "$k"
	echo "signals ${#seq[@]}" >>"$tmp/$n.reload.info"
	if ! grep -q 'requests in' "$out"; then
		echo "fail reload_failed" >>"$tmp/$n-$nw.samples"
		failed=1
		return
	fi
	awk '
		/requests in/ { r = $1 }
		/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { e += $NF }
		END { printf "reload_requests %d\nreload_failed %d\n", r, e }' "$out" >>"$tmp/$n-$nw.samples"
}

for n in "${names[@]}"; do
	for nw in "${WORKER_COUNTS[@]}"; do
		launch "$n" "$nw" || { stop_server "$spid"; continue; }
		log "${title[$n]}, $nw workers: $RUNS counted windows of ${WRK_S} s"
		for ((r = 1; r <= RUNS; r++)); do fair_window "$n" "$nw" "$tmp/$n-$nw.wrk.$r"; done
		if ((RELOAD)) && ((nw == RELOAD_WORKERS)); then reload_run "$n"; fi
		stop_server "${pid[$n]}"
	done
done

# ---- the table ------------------------------------------------------------------
rows=()
for n in "${names[@]}"; do
	for nw in "${WORKER_COUNTS[@]}"; do
		sf=$n-$nw
		[[ -s $tmp/$sf.samples ]] || { rows+=("${title[$n]}"$'\t'"$nw"$'\t'"not measured"); continue; }
		rps=$(cell "$sf" rps 1 0)
		p99=$(cell "$sf" p99_ms 1 2)
		jain=$(cell "$sf" jain 1 3)
		t=$(awk -v j="$(cat "$tmp/$sf.med" 2>/dev/null)" 'BEGIN { print (j == "" ? "not measured" : j >= 0.95 ? "met" : "MISSED") }')
		ms=$(cell "$sf" maxshare 0.01 0)
		top=$(cell "$sf" topconns 1 0)
		conns=$(awk '$1 == "conns" { $1 = ""; sub(/^ /, ""); printf "%s%s", (c++ ? " / " : ""), $0 }' \
			"$tmp/$sf".wrk.* 2>/dev/null)
		rel="—"
		if [[ -n $(stats "$tmp/$sf.samples" reload_failed) ]]; then
			rel="$(cell "$sf" reload_failed 1 0 sum | sed 's/ (.*//') of $(cell "$sf" reload_requests 1 0 sum |
				sed 's/ (.*//; s/Σ //') ($(awk '{ print $2 }' "$tmp/$n.reload.info" 2>/dev/null) signals)"
		fi
		errs=$(cell "$sf" errors 1 0 sum | sed 's/ (.*//')
		rows+=("${title[$n]}"$'\t'"$nw"$'\t'"$rps"$'\t'"$p99"$'\t'"$jain"$'\t'"$t"$'\t'"$ms"$'\t'"$top"$'\t'"$conns"$'\t'"$errs"$'\t'"$rel")
	done
done

echo
echo "Fairness: wrk -t2 -c$CONNS -d${WRK_S}s --latency with a Lua script counting responses per worker pid," \
	"$RUNS windows per server and worker count, servers one at a time, unpinned; sigvisor built-in worker," \
	"nginx $("$NGINX" -v 2>&1 | sed 's|.*/||') (return 200, keepalive_requests default), gunicorn" \
	"$("$GUNICORN" --version 2>&1 | awk '{ print $NF }' | tr -d '()') sync + app.py; $(machine_line)"
echo
print_table rows "server" "workers" "req/s median (min–max, n)" "p99 ms" "Jain index" "≥ 0.95" "busiest worker's % of requests" \
	"busiest worker's connections" "connections per worker, each window" "errors in the windows" \
	"failed requests through the reloads (of all)"
echo
echo "Jain's index over the workers' request counts: (Σx)²/(n·Σx²), 1 = even, 1/n = one worker serves all; goal ≥ 0.95."
echo "Reload sequence at $RELOAD_WORKERS workers, under one wrk -t2 -c$CONNS run: 5 HUPs (each waited for until the old workers" \
	"are gone and the new ones up), then 3 USR2s (sigvisor), then 10 × (TTIN, TTOU) 250 ms apart (sigvisor, gunicorn);" \
	"failed = socket errors (connect, read, write, timeout) + non-2xx."
for n in "${names[@]}"; do
	[[ -s $tmp/$n.err ]] && echo "${title[$n]} said: $(tail -n 2 "$tmp/$n.err" | tr '\n' ' ')"
done
log "fair.sh took $(elapsed) s"
exit $((failed ? 1 : 0))
