#!/bin/sh
# Start the app of this release in place of the running one, without dropping a request.
# Usage: restart.sh PORT SHARED_DIR [ADDRESS]   (ADDRESS defaults to 127.0.0.1)
# The interpreter is ${SLIPWAY_PYTHON:-python3} (PostgreSQL needs one with psycopg); the app reads its
# database from DATABASE_URL when set (a secret in slipway.yml), else SQLite in SHARED_DIR/data/app.db.
#
# The new process takes the listening socket over from the running one through SHARED_DIR/run/app.sock
# (app/handover.py): the port never closes, the old process stops accepting only once the new one
# serves, then answers the requests it holds and exits. This script returns once the new process serves
# and the old one has exited (exit 0): no process of the previous release runs any more, which a
# contract migration after the switch relies on. If the new process cannot start, it fails with the
# log's tail while the old one keeps serving (exit 1).
set -eu
port=$1
shared=$2
address=${3:-127.0.0.1}
mkdir -p "$shared/run" "$shared/log" "$shared/data"
pidfile="$shared/run/app.pid"
log="$shared/log/app.log"
if [ -f "$pidfile" ] && [ ! -S "$shared/run/app.sock" ]; then
  # Started by an earlier version of this script, which cannot hand over: stop it first (a short gap).
  sh "$(dirname "$0")/stop.sh" "$shared"
fi
cd "$(dirname "$0")/.."
if ! "${SLIPWAY_PYTHON:-python3}" -m app.server --host "$address" --port "$port" --data "$shared/data" \
    --handover "$shared/run/app.sock" --pidfile "$pidfile" --detach >>"$log" 2>&1 </dev/null; then
  echo "the app of this release did not start; the last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "started app (pid $(cat "$pidfile")) on $address:$port"
