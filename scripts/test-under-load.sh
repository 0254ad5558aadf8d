#!/bin/sh
# Runs 'make test' RUNS times in a row (default 3) while one busy loop per core keeps the CPU loaded, as
# issue 11 asks of the suite. Each loop is bounded by `timeout` and stopped at the end. Summaries go to
# stdout and each run's output to .test-under-load/run-N.log. Stops at the first failed run.
set -u
runs=${1:-3}
cores=$(nproc)
mkdir -p .test-under-load
pids=""
i=0
while [ "$i" -lt "$cores" ]; do
  timeout 10800 python3 -c 'while True: pass' &
  pids="$pids $!"
  i=$((i + 1))
done
trap 'kill $pids 2>/dev/null' EXIT
n=1
status=0
while [ "$n" -le "$runs" ]; do
  start=$(date +%s)
  # -v names each test as it ends, so a failure is known (and can be looked at) before the run is over
  make test PYTEST_ARGS="-n 2 --dist loadgroup -v" > ".test-under-load/run-$n.log" 2>&1
  status=$?
  echo "run $n: exit $status in $(( $(date +%s) - start )) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  grep -E '^=+ .*(passed|failed)' ".test-under-load/run-$n.log" | tail -n 1
  [ "$status" -ne 0 ] && break
  n=$((n + 1))
done
exit "$status"
