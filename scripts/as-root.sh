#!/bin/sh
# Runs its arguments as root: directly when we are root, else through sudo.
if [ "$(id -u)" -eq 0 ]; then
	exec "$@"
fi
exec sudo "$@"
