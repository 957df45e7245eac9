#!/bin/sh
# The first command on a fresh Debian 12 machine: installs what Postern
# needs, builds it, creates a demo set-up and runs posternd in the foreground.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/as-root.sh" "$top/scripts/install-deps.sh"
"$top/scripts/build.sh" "$top/build"
exec "$top/scripts/demo.sh" "$top/build" "$top/demo"
