#!/bin/sh
# Stop the app of a deploy root. Usage: stop.sh SHARED_DIR
pidfile="$1/run/app.pid"
[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
rm -f "$pidfile"
exit 0
