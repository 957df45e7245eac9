#!/bin/sh
# Generates configure and Makefile.in; neither is kept in git.
set -e
cd "$(dirname "$0")"
autoreconf --install --force
