#!/bin/sh
# Creates a demo state directory (once) and runs posternd on it in the
# foreground: self-signed certificate, a demo account, a config listening
# on 127.0.0.1 (implicit TLS 10465, submission 10587, MX 10025) and local
# Maildir delivery. Usage: scripts/demo.sh [BUILDDIR] [STATEDIR]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=$(cd "${1:-$top/build}" && pwd)
state=${2:-$top/demo}
saslpasswd2=$(command -v saslpasswd2 || echo /usr/sbin/saslpasswd2)

mkdir -p "$state"
cd "$state"
if [ ! -f postern.conf ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
		-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout key.pem -out cert.pem 2>/dev/null
	chmod 600 key.pem
	password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | cut -c1-12)
	printf '%s' "$password" | "$saslpasswd2" -p -c -f sasldb2 -u localhost demo
	printf '%s\n' "$password" > password
	chmod 600 password
	mkdir -p spool Maildir trace
	# Which MAIL FROM the demo account may use.
	printf 'demo  demo@localhost, @localhost\n' > senders
	# The key that signs every message's trace header; readable by root only
	# (posternd reads it before it drops privileges).
	(umask 077 && printf '1 %s\n' "$(openssl rand -hex 32)" > trace.keys)
	user_line=""
	if [ "$(id -u)" -eq 0 ]; then
		# posternd refuses to keep root: it will run as nobody.
		chown -R nobody:nogroup spool Maildir trace
		chgrp nogroup sasldb2
		chmod 640 sasldb2
		user_line='user = "nobody"'
	fi
	cat > postern.conf <<CONF
# Demo configuration written by scripts/demo.sh; paths are relative to it.
hostname = "localhost"
$user_line
log { syslog = false level = "info" }
listen smtps      { address = "127.0.0.1:10465" }
listen submission { address = "127.0.0.1:10587" }
listen mx         { address = "127.0.0.1:10025" }
tls  { cert = "cert.pem" key = "key.pem" }
sasl { sasldb = "sasldb2" fail_delay = "1s" }
policy { local_domains = { "localhost" } sender_map = "senders" }
trace { db = "trace/trace.db" key_file = "trace.keys" }
spool { directory = "spool" }
relay { maildir = "Maildir" }
CONF
fi
cat <<MSG
Postern demo, state in $state
  account:   demo   password: $(cat password)
  listening: 127.0.0.1:10465 (implicit TLS), 127.0.0.1:10587 (STARTTLS), 127.0.0.1:10025 (MX)
  mail goes: $state/Maildir/new/
  who sent what: $builddir/postern trace -c $state/postern.conf
Try:  swaks --server 127.0.0.1:10465 --tlsc --auth PLAIN --auth-user demo \\
        --auth-password $(cat password) --from demo@localhost --to you@example.org
Stop with Ctrl-C.
MSG
exec "$builddir/posternd" -c "$state/postern.conf"
