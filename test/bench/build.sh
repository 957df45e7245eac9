#!/bin/sh
# Builds the benchmark's programs (pgen, psink, fsbench) next to their
# sources, or into $1. Needs a C compiler, pkg-config and libssl-dev.
set -eu
src=$(cd "$(dirname "$0")" && pwd)
out=${1:-$src}
mkdir -p "$out"
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g -Wall -Wextra}
ssl=$(pkg-config --cflags --libs openssl)
$CC $CFLAGS -o "$out/pgen" "$src/pgen.c" -lpthread $ssl
$CC $CFLAGS -o "$out/psink" "$src/psink.c" -lpthread $ssl
$CC $CFLAGS -o "$out/fsbench" "$src/fsbench.c" -lpthread
$CC $CFLAGS -o "$out/keysign" "$src/keysign.c" $ssl
