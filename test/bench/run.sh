#!/bin/bash
# run.sh - Postern against Postfix on this machine, alternately, in one run.
#
#   test/bench/run.sh [--quick] [--rounds N] [--duration SECS] [--posternd PATH]
#                     [--only LETTERS] [--results FILE] [--keep]
#
# Builds pgen/psink/fsbench, installs Postfix if missing (postfix.sh), makes a
# temporary directory with an ECDSA P-256 certificate, a sasldb (user
# "bench") and one psink downstream per server, then per round starts
# posternd and a private Postfix, both configured the same way (implicit TLS
# + STARTTLS submission, AUTH PLAIN against the sasldb, durable queue, relay
# to the sink), and runs every scenario on both, alternating which goes
# first:
#   (c) memory: N idle authenticated TLS connections held open; RSS and PSS
#       of all the server's processes, per connection above the idle server
#   (a) throughput: implicit TLS + AUTH, 4 KiB, 20 messages per connection,
#       16 and 64 connections; the clock stops when the sink has them all
#   (d) server CPU per 1,000 messages of (a)
#   (b) new connections: 1 message per connection, no resumption
#   (e) Postern against itself: (a) with everything on, without the trace
#       store, without trace store and limits; fresh servers, alternating
# then prints medians over the rounds with Postern/Postfix ratios.
# Everything listens on 127.0.0.1; every process started here is stopped by
# PID on exit and the temporary directory is removed (--keep keeps it).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

rounds=3
duration=5
quick=0
keep=0
results_out=
only=abcde
posternd=${POSTERND:-}
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1; rounds=1; duration=2 ;;
	--rounds) rounds=$2; shift ;;
	--duration) duration=$2; shift ;;
	--posternd) posternd=$2; shift ;;
	--results) results_out=$2; shift ;;
	--only) only=$2; shift ;;
	--keep) keep=1 ;;
	-h|--help) sed -n '2,25p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
if [ -z "$posternd" ]; then
	for p in /tmp/bench-build/posternd "$top/build/posternd"; do
		[ -x "$p" ] && { posternd=$p; break; }
	done
fi
[ -x "${posternd:-}" ] || { echo "run.sh: no posternd (build one, or --posternd PATH)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (Postfix's private instance, posternd's user switch)" >&2; exit 2; }

if [ $quick -eq 1 ]; then
	a_conns="4 16"; b_conns="4 16"; idle_n=100; idle_big=1000; limit_secs=1
else
	a_conns="16 64"; b_conns="16 64"; idle_n=1000; idle_big=10000; limit_secs=3
fi
msgs_per_conn=20
size=4096
e_warmup=$((quick ? 1 : 4))
realm=bench.test
reply_timeout=10

want() { [[ $only == *"$1"* ]]; }   # is scenario letter $1 to run?
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- set-up --------------------------------------------------------------------
work=$(mktemp -d /tmp/postern-bench.XXXXXX)
chmod 755 "$work"
pids=()
postfix_dir="$work/postfix"
postern_pid=
cleanup() {
	local p
	for p in "${pids[@]+"${pids[@]}"}"; do
		kill -TERM "$p" 2>/dev/null
	done
	[ -n "$postern_pid" ] && kill -TERM "$postern_pid" 2>/dev/null
	[ -d "$postfix_dir/etc" ] && "$here/postfix.sh" stop "$postfix_dir" >/dev/null 2>&1
	for p in "${pids[@]+"${pids[@]}"}" $postern_pid; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ $keep -eq 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/build.sh" "$work/bin" || { echo "run.sh: build failed" >&2; exit 1; }
bin=$work/bin
"$here/postfix.sh" install || { echo "run.sh: cannot install Postfix" >&2; exit 1; }

# One descriptor per connection on each side: the hard limit caps the
# 10,000-connection scenario (an unprivileged ulimit cannot go past it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((idle_big + 200)) ]; then
	log "RLIMIT_NOFILE is $nofile: no $idle_big-connection scenario"
	idle_big=0
fi

read -r p_smtps p_subm f_smtps f_subm sink_p sink_f bare_port < <(python3 - <<'EOF'
import random, socket
ports = []
while len(ports) < 7:
    p = random.randint(20000, 32000)   # below the ephemeral range
    if p in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        ports.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(*ports)
EOF
)

cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
	-subj "/CN=$realm" -addext "subjectAltName=DNS:$realm,DNS:localhost,IP:127.0.0.1" \
	-keyout key.pem -out cert.pem 2>/dev/null
chmod 644 key.pem cert.pem   # Postfix's smtpd reads it as root, posternd before dropping to nobody
saslpasswd2=$(command -v saslpasswd2 || echo /usr/sbin/saslpasswd2)
printf 'bench-secret' | "$saslpasswd2" -p -c -f "$work/sasldb2" -u "$realm" bench
chmod 644 "$work/sasldb2"

wait_port() {
	local i
	for i in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

"$bin/psink" -p "$sink_p" 2>"$work/sink-postern.log" & pids+=($!)
"$bin/psink" -p "$sink_f" 2>"$work/sink-postfix.log" & pids+=($!)
wait_port "$sink_p" && wait_port "$sink_f" || { echo "run.sh: sinks did not start" >&2; exit 1; }

# Variants for (e): "full" has the trace store (with the signed header) and
# the policy layer with every counter in use (limits far above the load);
# "notrace" the same without the trace store; "bare" neither the trace store
# nor limits (the sender map stays: without it no one may send).
printf 'bench bench@%s\n' "$realm" > "$work/senders"
chmod 644 "$work/senders"
(umask 077 && printf 'b1 %s\n' "$(openssl rand -hex 32)" > "$work/trace.keys")
policy_full='messages_per_hour = 100000000 recipients_per_hour = 100000000
	max_connections_per_ip = 1000000 connections_per_ip_per_minute = 100000000'
policy_bare='max_connections_per_ip = 0'

start_postern() {
	local r=$1 variant=${2:-full} d="$work/postern-$1-${2:-full}"
	local trace="key_file = \"$work/trace.keys\"" policy=$policy_full
	case $variant in
	notrace) trace='enabled = false' ;;
	bare) trace='enabled = false'; policy=$policy_bare ;;
	esac
	mkdir -p "$d/spool"
	chown nobody:nogroup "$d/spool"
	chmod 755 "$d"
	cat > "$d/postern.conf" <<EOF
hostname = "$realm"
user = "nobody"
loops = 2
log { syslog = false level = "warn" }
listen smtps { address = "127.0.0.1:$p_smtps" }
listen submission { address = "127.0.0.1:$p_subm" }
tls { cert = "$work/cert.pem" key = "$work/key.pem" }
sasl { sasldb = "$work/sasldb2" }
limits { max_connections = 20000 }
spool { directory = "$d/spool" }
relay { downstream = "smtp://127.0.0.1:$sink_p" workers = 8 }
trace { $trace }
policy { sender_map = "$work/senders" $policy }
dns { reverse_lookup = false }
EOF
	"$posternd" -c "$d/postern.conf" >"$d/posternd.log" 2>&1 &
	postern_pid=$!
	wait_port "$p_smtps" && wait_port "$p_subm" || { cat "$d/posternd.log" >&2; echo "run.sh: posternd did not start" >&2; exit 1; }
}

stop_postern() {
	[ -n "$postern_pid" ] || return 0
	kill -TERM "$postern_pid" 2>/dev/null
	local i
	for i in $(seq 1 250); do kill -0 "$postern_pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$postern_pid" 2>/dev/null
	wait "$postern_pid" 2>/dev/null
	postern_pid=
}

start_postfix() {
	"$here/postfix.sh" start "$postfix_dir" "$f_smtps" "$f_subm" "$sink_f" \
		"$work/cert.pem" "$work/key.pem" "$work/sasldb2" "$realm" || exit 1
}
stop_postfix() { "$here/postfix.sh" stop "$postfix_dir"; }

# The server's processes: posternd, or Postfix's master and all its children
# (postlogd left out: it stands in for syslogd).
root_pid() {
	case $1 in postern*) echo "$postern_pid" ;; *) tr -d ' \n' < "$postfix_dir/queue/pid/master.pid" ;; esac
}
srv_cpu() { python3 "$here/procstat.py" cpu "$(root_pid "$1")" --exclude postlogd; }
srv_mem() { python3 "$here/procstat.py" mem "$(root_pid "$1")" --exclude postlogd; }
port_of() { case $1 in postern*) echo "$p_smtps" ;; *) echo "$f_smtps" ;; esac; }
sink_of() { case $1 in postern*) echo "$sink_p" ;; *) echo "$sink_f" ;; esac; }

results="$work/results.txt"
: > "$results"
record() { echo "$*" >> "$results"; }   # round server scenario key value
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }

# pgen in the background so that a signal to run.sh can stop it by PID.
run_pgen() {
	local out="$work/pgen.out"
	"$bin/pgen" "$@" >"$out" 2>"$work/pgen.err" &
	local p=$!
	pids+=($p)
	wait "$p"
	pids=("${pids[@]/$p}")
	cat "$out"
}

scenario_load() {   # round server scenario conns msgs_per_conn
	local r=$1 s=$2 sc=$3 n=$4 m=$5
	local c0 c1 line ok
	c0=$(srv_cpu "$s")
	line=$(run_pgen -p "$(port_of "$s")" -c "$n" -T 2 -n "$m" -s "$size" -r 1 -d "$duration" \
		--sink "127.0.0.1:$(sink_of "$s")" --timeout "$reply_timeout" --sink-timeout 120 --label "$s-$sc" -q)
	c1=$(srv_cpu "$s")
	ok=$(kv "$line" msgs_ok)
	record "$r $s $sc msgs_per_s $(kv "$line" msgs_per_s)"
	record "$r $s $sc accept_per_s $(kv "$line" accept_per_s)"
	record "$r $s $sc conns_per_s $(kv "$line" conns_per_s)"
	record "$r $s $sc txn_p50_ms $(kv "$line" txn_p50_ms)"
	record "$r $s $sc txn_p99_ms $(kv "$line" txn_p99_ms)"
	record "$r $s $sc setup_p50_ms $(kv "$line" setup_p50_ms)"
	record "$r $s $sc setup_p99_ms $(kv "$line" setup_p99_ms)"
	record "$r $s $sc client_cpu_pct $(kv "$line" cpu_pct)"
	record "$r $s $sc errors $(kv "$line" errors)"
	record "$r $s $sc errs $(kv "$line" errs)"
	record "$r $s $sc sink_complete $(kv "$line" sink_complete)"
	if [ "${ok:-0}" -gt 0 ]; then
		record "$r $s $sc cpu_per_1000 $(python3 -c "print(f'{($c1 - $c0) * 1000 / $ok:.3f}')")"
	fi
	log "  $s $sc: $(kv "$line" msgs_per_s) msgs/s, $(kv "$line" conns_per_s) conns/s," \
		"p50/p99 $(kv "$line" txn_p50_ms)/$(kv "$line" txn_p99_ms) ms, server CPU $(python3 -c "print(f'{$c1 - $c0:.2f}')") s," \
		"client CPU $(kv "$line" cpu_pct)%, errors $(kv "$line" errs)"
}

scenario_idle() {   # round server scenario conns
	local r=$1 s=$2 sc=$3 n=$4
	local base loaded ready="$work/ready" out="$work/idle.out" p i
	# per connection = (server with N idle connections - the fresh server) / N
	base=$(srv_mem "$s")
	rm -f "$ready"
	"$bin/pgen" --idle -p "$(port_of "$s")" -c "$n" --ramp 100 --ready-file "$ready" \
		--timeout 60 --label "$s-$sc" -q >"$out" 2>"$work/idle.err" &
	p=$!
	pids+=($p)
	for i in $(seq 1 1800); do
		[ -f "$ready" ] && break
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	if [ -f "$ready" ]; then
		sleep 1
		loaded=$(srv_mem "$s")
	fi
	kill -TERM "$p" 2>/dev/null
	wait "$p"
	pids=("${pids[@]/$p}")
	local line; line=$(cat "$out")
	if [ -z "${loaded:-}" ]; then
		log "  $s $sc: the $n connections were not all established (held $(kv "$line" held), errors $(kv "$line" errs))"
		record "$r $s $sc errors $(kv "$line" errors)"
		record "$r $s $sc errs $(kv "$line" errs)"
		return
	fi
	# shellcheck disable=SC2086
	set -- $base; local brss=$1 bpss=$2
	# shellcheck disable=SC2086
	set -- $loaded; local rss=$1 pss=$2 np=$3
	record "$r $s $sc rss_mib $(python3 -c "print(f'{$rss / 1024:.1f}')")"
	record "$r $s $sc pss_mib $(python3 -c "print(f'{$pss / 1024:.1f}')")"
	record "$r $s $sc rss_kib_per_conn $(python3 -c "print(f'{($rss - $brss) / $n:.1f}')")"
	record "$r $s $sc pss_kib_per_conn $(python3 -c "print(f'{($pss - $bpss) / $n:.1f}')")"
	record "$r $s $sc nprocs $np"
	record "$r $s $sc errors $(kv "$line" errors)"
	record "$r $s $sc errs $(kv "$line" errs)"
	log "  $s $sc: $n idle connections: RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB in $np processes;" \
		"per connection RSS $(( (rss - brss) / n )) KiB, PSS $(( (pss - bpss) / n )) KiB"
}

# ---- the machine's limits --------------------------------------------------------
log "work dir $work; posternd $posternd; $rounds round(s) of ${duration}s per load scenario"
log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
record "0 machine - loadavg_start $(cut -d' ' -f1 /proc/loadavg)"
"$bin/psink" -p "$bare_port" -T 2 --tls "$work/cert.pem" "$work/key.pem" 2>/dev/null & bare_pid=$!
pids+=($bare_pid)
wait_port "$bare_port"
line=$(run_pgen --handshake -p "$bare_port" -c 32 -T 2 -d "$limit_secs" -q)
record "0 machine - tls_handshakes_per_s $(kv "$line" conns_per_s)"
record "0 machine - tls_handshake_client_cpu_pct $(kv "$line" cpu_pct)"
line=$(run_pgen --handshake -p "$bare_port" -c 32 -T 2 -d "$limit_secs" -R -q)
record "0 machine - tls_resumed_per_s $(kv "$line" conns_per_s)"
kill -TERM "$bare_pid"; wait "$bare_pid" 2>/dev/null; pids=("${pids[@]/$bare_pid}")
mkdir -p "$work/fsync"
line=$("$bin/fsbench" "$work/fsync" "$limit_secs" 1)
record "0 machine - fsync_rename_per_s_1 $(kv "$line" per_s)"
line=$("$bin/fsbench" "$work/fsync" "$limit_secs" 16)
record "0 machine - fsync_rename_per_s_16 $(kv "$line" per_s)"
log "machine: $(grep machine "$results" | cut -d' ' -f4- | tr '\n' ' ')"

# ---- rounds ------------------------------------------------------------------------
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) -eq 1 ]; then order="postern postfix"; else order="postfix postern"; fi
	if want a || want b || want c || want d; then
		log "round $r/$rounds (order: $order)"
		start_postern "$r"
		start_postfix
		sleep 1
		if want c; then
			for s in $order; do
				scenario_idle "$r" "$s" "c$idle_n" "$idle_n"
			done
			if [ "$idle_big" -gt 0 ]; then
				scenario_idle "$r" postern "c$idle_big" "$idle_big"
			fi
		fi
		for s in $order; do   # warm-up, not recorded
			run_pgen -p "$(port_of "$s")" -c 16 -n 5 -d 1 --sink "127.0.0.1:$(sink_of "$s")" -q >/dev/null
		done
		if want a || want d; then
			for n in $a_conns; do
				for s in $order; do scenario_load "$r" "$s" "a$n" "$n" "$msgs_per_conn"; done
			done
		fi
		if want b; then
			for n in $b_conns; do
				for s in $order; do scenario_load "$r" "$s" "b$n" "$n" 1; done
			done
		fi
		stop_postern
		stop_postfix
	fi
	# (e): what the trace store and the policy layer cost, on (a). Each
	# variant on a fresh server (empty trace store and queue), one after the
	# other, the order turning each round, so that none of them inherits a
	# bigger database or the tail of another scenario.
	if want e; then
		case $((r % 3)) in
		1) variants="full notrace bare" ;;
		2) variants="notrace bare full" ;;
		0) variants="bare full notrace" ;;
		esac
		log "round $r/$rounds (e): $variants"
		for v in $variants; do
			start_postern "${r}e" "$v"
			# Warm up to a steady state: a fresh trace store grows its
			# files with every commit at first, which a running gate
			# does not pay.
			run_pgen -p "$p_smtps" -c 16 -T 2 -n "$msgs_per_conn" -s "$size" -d "$e_warmup" \
				--sink "127.0.0.1:$sink_p" -q >/dev/null
			for n in $a_conns; do scenario_load "$r" "postern-$v" "a$n" "$n" "$msgs_per_conn"; done
			stop_postern
		done
	fi
done
line=$("$bin/fsbench" "$work/fsync" "$limit_secs" 1)
record "0 machine - fsync_rename_per_s_1_end $(kv "$line" per_s)"
[ -n "$results_out" ] && cp "$results" "$results_out"

# ---- the table -----------------------------------------------------------------------
python3 - "$results" "$rounds" "$a_conns" "$b_conns" "$idle_n" "$idle_big" "$posternd" <<'EOF'
import statistics, sys
path, rounds, a_conns, b_conns, idle_n, idle_big, posternd = sys.argv[1:]
a_conns, b_conns = a_conns.split(), b_conns.split()
vals, byround, errs, machine = {}, {}, {}, {}
for line in open(path):
    parts = line.split()
    if len(parts) < 5:
        continue
    r, srv, sc, key, v = parts[0], parts[1], parts[2], parts[3], " ".join(parts[4:])
    if srv == "machine":
        machine[key] = v
        continue
    if key == "errs":
        if v != "-":
            errs.setdefault((srv, sc), []).append(v)
        continue
    try:
        vals.setdefault((srv, sc, key), []).append(float(v))
        byround.setdefault((srv, sc, key), {})[r] = float(v)
    except ValueError:
        pass

def med(srv, sc, key):
    v = vals.get((srv, sc, key))
    return statistics.median(v) if v else None

def fmt(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"

def cell(srv, sc, key, nd=1):
    v = vals.get((srv, sc, key))
    if not v:
        return "-"
    m = statistics.median(v)
    if len(v) > 1:
        return f"{fmt(m, nd)} [{fmt(min(v), nd)}-{fmt(max(v), nd)}]"
    return fmt(m, nd)

rows = []
def row(label, sc, key, nd=1, target=None, better="higher", ratio=True):
    p, f = med("postern", sc, key), med("postfix", sc, key)
    rt = (p / f) if (ratio and p is not None and f not in (None, 0)) else None
    verdict = ""
    if target is not None:
        kind, t = target
        x = rt if kind == "ratio" else p
        if x is None:
            verdict = "n/a"
        else:
            ok = x >= t if better == "higher" else x <= t
            verdict = "met" if ok else "MISSED"
        tgt = (f">= {t:g}x" if better == "higher" else f"<= {t:.2f}x") if kind == "ratio" else f"<= {t:g}"
    else:
        tgt = ""
    rows.append((label, cell("postern", sc, key, nd), cell("postfix", sc, key, nd),
                 "-" if rt is None else f"{rt:.2f}x", tgt, verdict))

for n in a_conns:
    row(f"(a) throughput {n} conns, msgs/s", f"a{n}", "msgs_per_s", target=("ratio", 3))
    row(f"    {n} conns: txn p50 ms", f"a{n}", "txn_p50_ms", 2, ratio=False)
    row(f"    {n} conns: txn p99 ms", f"a{n}", "txn_p99_ms", 2, ratio=False)
    row(f"    {n} conns: client CPU %", f"a{n}", "client_cpu_pct", 0, ratio=False)
for n in b_conns:
    row(f"(b) new connections {n} conns, conns/s", f"b{n}", "conns_per_s", target=("ratio", 2))
    row(f"    {n} conns: set-up p50 ms", f"b{n}", "setup_p50_ms", 2, ratio=False)
    row(f"    {n} conns: set-up p99 ms", f"b{n}", "setup_p99_ms", 2, ratio=False)
    row(f"    {n} conns: client CPU %", f"b{n}", "client_cpu_pct", 0, ratio=False)
hs = float(machine.get("tls_handshakes_per_s", "0") or 0)
for n in b_conns:
    p = med("postern", f"b{n}", "conns_per_s")
    if p is not None and hs > 0:
        pct = p / hs * 100
        rows.append((f"(b) {n} conns: % of bare TLS handshake rate", f"{pct:.0f}%", "-", "-",
                     ">= 60%", "met" if pct >= 60 else "MISSED"))
row(f"(c) {idle_n} idle conns: PSS KiB/conn", f"c{idle_n}", "pss_kib_per_conn", target=("abs", 32), better="lower")
row(f"    {idle_n} idle conns: RSS KiB/conn", f"c{idle_n}", "rss_kib_per_conn", ratio=False)
row(f"    {idle_n} idle conns: total PSS MiB", f"c{idle_n}", "pss_mib", ratio=False)
row(f"    {idle_n} idle conns: total RSS MiB", f"c{idle_n}", "rss_mib", ratio=False)
row(f"    {idle_n} idle conns: processes", f"c{idle_n}", "nprocs", 0, ratio=False)
if idle_big != "0":
    row(f"(c) {idle_big} idle conns: PSS KiB/conn", f"c{idle_big}", "pss_kib_per_conn", target=("abs", 32), better="lower")
    row(f"    {idle_big} idle conns: total PSS MiB", f"c{idle_big}", "pss_mib", ratio=False)
for n in a_conns:
    row(f"(d) server CPU s per 1000 msgs, a{n}", f"a{n}", "cpu_per_1000", 3, target=("ratio", 1 / 3), better="lower")
for n in b_conns:
    row(f"    server CPU s per 1000 conns, b{n}", f"b{n}", "cpu_per_1000", 3)

# (e): Postern against itself. The cost is paired per round (the variants
# ran one after the other on the same machine state), then the median over
# rounds: the machine's speed drifts between rounds by more than the cost
# being measured, and pairing takes that drift out.
def cost_row(label, sc, with_srv, without_srv, limit):
    a = byround.get((with_srv, sc, "msgs_per_s"), {})
    b = byround.get((without_srv, sc, "msgs_per_s"), {})
    costs = [(1 - a[r] / b[r]) * 100 for r in a if b.get(r)]
    if not costs:
        rows.append((label, "-", "-", "-", f"<= {limit}%", "n/a"))
        return
    cost = statistics.median(costs)
    rng = f" [{min(costs):+.1f}..{max(costs):+.1f}]" if len(costs) > 1 else ""
    rows.append((label, cell(with_srv, sc, "msgs_per_s"), cell(without_srv, sc, "msgs_per_s"),
                 f"{cost:+.1f}%{rng}", f"<= {limit}%", "met" if cost <= limit else "MISSED"))
# The same pairing for server CPU per message: steadier than throughput on
# a shared machine, shown beside it (no target of its own).
def cpu_row(label, sc, with_srv, without_srv):
    a = byround.get((with_srv, sc, "cpu_per_1000"), {})
    b = byround.get((without_srv, sc, "cpu_per_1000"), {})
    costs = [(a[r] / b[r] - 1) * 100 for r in a if b.get(r)]
    if not costs:
        return
    rng = f" [{min(costs):+.1f}..{max(costs):+.1f}]" if len(costs) > 1 else ""
    rows.append((label, cell(with_srv, sc, "cpu_per_1000", 3), cell(without_srv, sc, "cpu_per_1000", 3),
                 f"{statistics.median(costs):+.1f}%{rng}", "", ""))
for n in a_conns:
    cost_row(f"(e) trace store cost, a{n} (with | without)", f"a{n}", "postern-full", "postern-notrace", 10)
    cpu_row(f"    trace store CPU s per 1000 msgs, a{n}", f"a{n}", "postern-full", "postern-notrace")
    cost_row(f"(e) policy layer cost, a{n} (with | without)", f"a{n}", "postern-notrace", "postern-bare", 5)
    cpu_row(f"    policy layer CPU s per 1000 msgs, a{n}", f"a{n}", "postern-notrace", "postern-bare")

w = [max(len(r[i]) for r in rows + [("scenario", "Postern", "Postfix", "ratio", "target", "")]) for i in range(6)]
hdr = ("scenario", "Postern", "Postfix", "ratio", "target", "")
print()
print(f"Postern vs Postfix, {rounds} round(s), median [min-max]; posternd = {posternd}")
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)).rstrip())
print("  ".join("-" * w[i] for i in range(6)))
for r in rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
print()
if idle_big != "0":
    print(f"Postfix at {idle_big} idle connections: not run (one smtpd process per connection).")
print("machine: TLS 1.3 full handshakes/s (bare OpenSSL server, 2+2 threads): %s (client CPU %s%%); resumed: %s"
      % (machine.get("tls_handshakes_per_s", "-"), machine.get("tls_handshake_client_cpu_pct", "-"),
         machine.get("tls_resumed_per_s", "-")))
print("machine: 4 KiB write+fsync+rename/s: %s (1 thread), %s (16 threads) at start, %s (1 thread) at end"
      % (machine.get("fsync_rename_per_s_1", "-"), machine.get("fsync_rename_per_s_16", "-"),
         machine.get("fsync_rename_per_s_1_end", "-")))
print("machine: load average %s before the run (other work on the machine skews every figure)"
      % machine.get("loadavg_start", "-"))
if errs:
    print("errors (phase_code:count, per round):")
    for (srv, sc), v in sorted(errs.items()):
        print(f"  {srv} {sc}: {' '.join(v)}")
else:
    print("errors: none")
EOF
