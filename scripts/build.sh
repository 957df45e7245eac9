#!/bin/sh
# Builds Postern out of tree: scripts/build.sh BUILDDIR [configure options]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=$1
shift
[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh >/dev/null 2>&1)
mkdir -p "$builddir"
cd "$builddir"
if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ]; then
	"$top/configure" --quiet "$@"
fi
make -j"$(nproc)" >/dev/null
make -j"$(nproc)" check TESTS= >/dev/null  # builds the unit tests too
