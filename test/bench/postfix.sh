#!/bin/bash
# postfix.sh - a private Postfix instance for the benchmark, configured like
# Postern: implicit TLS (smtps, wrappermode) and STARTTLS submission on
# 127.0.0.1 high ports, Cyrus SASL AUTH against a sasldb, TLS required
# before AUTH, a normal durable queue, everything relayed to one downstream.
#
#   postfix.sh install
#       installs postfix, sasl2-bin and libsasl2-modules from Debian if
#       missing, without letting the package start the system instance
#       (a temporary /usr/sbin/policy-rc.d exiting 101).
#   postfix.sh start DIR SMTPS_PORT SUBMISSION_PORT SINK_PORT CERT KEY SASLDB REALM
#       writes DIR/etc (main.cf, master.cf), DIR/etc/sasl/smtpd.conf and DIR/queue,
#       DIR/data, starts the instance with `postfix -c DIR/etc start` and
#       waits until both ports answer.
#   postfix.sh stop DIR       stops it (postfix stop; then the master's PID)
#   postfix.sh pids DIR       prints the PIDs of every process of the instance
#   postfix.sh queue DIR      prints the number of messages in its queue
#
# Nothing here touches /etc/postfix or the system instance; the instance
# logs to DIR/maillog through its own postlogd.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

die() { echo "postfix.sh: $*" >&2; exit 1; }

cmd_install() {
	local need=()
	[ -x /usr/sbin/postfix ] || need+=(postfix)
	[ -x /usr/sbin/saslpasswd2 ] || need+=(sasl2-bin)
	[ -e /usr/lib/x86_64-linux-gnu/sasl2/libplain.so ] || ls /usr/lib/*/sasl2/libplain.so >/dev/null 2>&1 \
		|| need+=(libsasl2-modules)
	ls /usr/lib/*/sasl2/libsasldb.so >/dev/null 2>&1 || need+=(libsasl2-modules-db)
	[ ${#need[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "installing ${need[*]} needs root"
	echo "postfix.sh: installing ${need[*]}" >&2
	local made_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local rc=0
	{
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
	} || rc=$?
	[ $made_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
	# The system instance must not be left running (port 25).
	if [ -f /var/spool/postfix/pid/master.pid ]; then
		local p; p=$(tr -d ' ' < /var/spool/postfix/pid/master.pid || true)
		if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
			/usr/sbin/postfix stop >/dev/null 2>&1 || true
		fi
	fi
	return $rc
}

master_pid() {
	local f="$1/queue/pid/master.pid"
	[ -f "$f" ] || return 1
	local p; p=$(tr -d ' \n' < "$f")
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

cmd_start() {
	[ $# -eq 8 ] || die "usage: postfix.sh start DIR SMTPS_PORT SUBMISSION_PORT SINK_PORT CERT KEY SASLDB REALM"
	local dir=$1 smtps=$2 subm=$3 sink=$4 cert=$5 key=$6 sasldb=$7 realm=$8
	[ -x /usr/sbin/postfix ] || die "postfix is not installed (postfix.sh install)"
	mkdir -p "$dir/etc/sasl" "$dir/queue" "$dir/data"
	dir=$(cd "$dir" && pwd)
	chmod 755 "$dir" "$dir/etc" "$dir/etc/sasl"
	chown postfix "$dir/data"
	: > "$dir/maillog"; chown postfix "$dir/maillog"
	# Debian's Postfix reads $config_directory/sasl/smtpd.conf whatever
	# cyrus_sasl_config_path says; set both.
	cat > "$dir/etc/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $sasldb
mech_list: PLAIN LOGIN
EOF
	chmod 644 "$dir/etc/sasl/smtpd.conf"
	cat > "$dir/etc/main.cf" <<EOF
# Private benchmark instance written by test/bench/postfix.sh
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $realm
mydomain = $realm
myorigin = $realm
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
biff = no

# Like Postern: TLS first, then AUTH, then anything; relay only for AUTH users.
smtpd_tls_chain_files = $key, $cert
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 0
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $dir/etc/sasl
smtpd_sasl_local_domain = $realm
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_client_restrictions =
smtpd_helo_required = no

# The load comes from one address: no per-client limits (Postern has none yet).
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_client_auth_rate_limit = 0
smtpd_recipient_limit = 1000
message_size_limit = 52428800

# Enough smtpd processes for the idle-connection scenario (1,000 clients).
default_process_limit = 1200

# The downstream: plain SMTP, connection cache on (Postfix's default).
smtp_tls_security_level = none
smtp_connection_cache_on_demand = yes
EOF
	cat > "$dir/etc/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$smtps inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
$(printf '127.0.0.1:%s' "$subm") inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	/usr/sbin/postfix -c "$dir/etc" check >/dev/null 2>"$dir/check.err" || {
		cat "$dir/check.err" >&2; die "postfix check failed"; }
	/usr/sbin/postfix -c "$dir/etc" start >/dev/null 2>"$dir/start.err" || {
		cat "$dir/start.err" >&2; die "postfix start failed"; }
	local i
	for i in $(seq 1 100); do
		if master_pid "$dir" >/dev/null &&
			(exec 3<>"/dev/tcp/127.0.0.1/$smtps") 2>/dev/null &&
			(exec 3<>"/dev/tcp/127.0.0.1/$subm") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	cat "$dir/maillog" >&2
	die "postfix did not come up"
}

cmd_pids() {
	local dir=$1 m
	m=$(master_pid "$dir") || return 0
	# the master and every descendant
	local all=("$m") frontier=("$m") next
	while [ ${#frontier[@]} -gt 0 ]; do
		next=()
		for p in "${frontier[@]}"; do
			for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
				all+=("$c"); next+=("$c")
			done
		done
		frontier=("${next[@]+"${next[@]}"}")
	done
	printf '%s\n' "${all[@]}"
}

cmd_stop() {
	local dir=$1 m
	m=$(master_pid "$dir") || return 0
	/usr/sbin/postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
	local i
	for i in $(seq 1 100); do
		kill -0 "$m" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -TERM "$m" 2>/dev/null || true
	sleep 1
	kill -KILL "$m" 2>/dev/null || true
}

cmd_queue() {
	local dir=$1 n=0 d
	for d in incoming active deferred maildrop hold; do
		[ -d "$dir/queue/$d" ] || continue
		n=$((n + $(find "$dir/queue/$d" -type f | wc -l)))
	done
	echo "$n"
}

case "${1:-}" in
install) shift; cmd_install "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
pids) shift; cmd_pids "$@" ;;
queue) shift; cmd_queue "$@" ;;
*) die "usage: postfix.sh install|start|stop|pids|queue ..." ;;
esac
