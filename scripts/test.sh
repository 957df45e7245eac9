#!/bin/sh
# The second command: installs what the tests need, then builds and runs the
# whole test suite twice, in a normal build and with AddressSanitizer and
# UndefinedBehaviorSanitizer.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/as-root.sh" "$top/scripts/install-deps.sh"

run() {
	name=$1
	shift
	dir="$top/build-$name"
	echo "== $name build: $dir"
	"$top/scripts/build.sh" "$dir" "$@"
	if ! make -C "$dir" -j2 check; then
		for f in "$dir"/test/unit/*.log "$dir"/test/integration/*.log; do
			[ -f "$f" ] && { echo "--- $f"; tail -n 200 "$f"; }
		done
		return 1
	fi
}

status=0
run check || status=1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run sanitizers --enable-sanitizers || status=1
exit $status
