#!/bin/sh
# Stop the running app (if any) and start the one in this release.
# Usage: restart.sh PORT SHARED_DIR [ADDRESS]   (ADDRESS defaults to 127.0.0.1)
# The interpreter is ${SLIPWAY_PYTHON:-python3} (PostgreSQL needs one with psycopg); the app reads its
# database from DATABASE_URL when set (a secret in slipway.yml), else SQLite in SHARED_DIR/data/app.db.
set -eu
port=$1
shared=$2
address=${3:-127.0.0.1}
mkdir -p "$shared/run" "$shared/log" "$shared/data"
pidfile="$shared/run/app.pid"
if [ -f "$pidfile" ]; then
  old=$(cat "$pidfile")
  if kill -0 "$old" 2>/dev/null; then
    kill "$old" 2>/dev/null || true
    i=0
    while kill -0 "$old" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    kill -9 "$old" 2>/dev/null || true
  fi
fi
cd "$(dirname "$0")/.."
setsid nohup "${SLIPWAY_PYTHON:-python3}" -m app.server --host "$address" --port "$port" --data "$shared/data" >>"$shared/log/app.log" 2>&1 </dev/null &
echo $! >"$pidfile"
echo "started app (pid $!) on $address:$port"
