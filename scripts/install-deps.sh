#!/bin/sh
# Installs every Debian package that building, running and testing Postern needs.
# Run as root on Debian 12; non-interactive and idempotent.
set -eu

PACKAGES="
build-essential autoconf automake libtool pkg-config
libssl-dev openssl
libsasl2-dev libsasl2-modules libsasl2-modules-db sasl2-bin
libuv1-dev
libldns-dev ldnsutils
libconfuse-dev
libsqlite3-dev sqlite3
libseccomp-dev
check
python3 python3-pytest
swaks libnet-ssleay-perl libio-socket-ssl-perl msmtp curl
fail2ban
postfix
"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing; run this script as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix is a relay hop in the trace tests, which run private instances
# (postfix -c DIR) on loopback ports: the system instance gets no
# configuration, so it neither starts nor takes port 25.
case " $missing " in
*" postfix "*)
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections ;;
esac
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
