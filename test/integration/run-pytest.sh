#!/bin/sh
# make check runs the integration tests through this: Debian's python3 with
# its pytest, against the posternd of this build.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir/build}
py=/usr/bin/python3
if ! "$py" -c 'import pytest' 2>/dev/null; then
	echo "python3-pytest is missing: run scripts/install-deps.sh" >&2
	exit 77
fi
export POSTERN_BUILDDIR="$top_builddir" POSTERN_SRCDIR="$top_srcdir"
cd "$top_srcdir/test/integration"
"$py" -m pytest -q -p no:cacheprovider -x ${PYTEST_ARGS:-} .
rc=$?
[ $rc -eq 5 ] && { echo "no integration tests collected" >&2; exit 1; }
exit $rc
