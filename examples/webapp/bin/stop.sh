#!/bin/sh
# Stop the app of a deploy root. Usage: stop.sh SHARED_DIR
# SIGTERM: the app stops accepting, answers the requests it holds (for at most its grace period, 30 s)
# and exits; this script returns once it has (SIGKILL if it is still there 35 s later).
pidfile="$1/run/app.pid"
pid=$(cat "$pidfile" 2>/dev/null) || exit 0
rm -f "$pidfile"
kill "$pid" 2>/dev/null || exit 0
running() {
  # An exited process stays a zombie until its reaper collects it: that counts as gone.
  kill -0 "$1" 2>/dev/null && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}
i=0
while running "$pid"; do
  if [ "$i" -ge 350 ]; then kill -9 "$pid" 2>/dev/null; break; fi
  sleep 0.1
  i=$((i + 1))
done
exit 0
