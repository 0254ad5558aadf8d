#!/bin/sh
# The example pipeline end to end: build once, test, dev, staging, approve, production, status.
# 'demo.sh stop' stops the example apps the demo left running.
set -eu
S=${SLIPWAY:-slipway}
DEMO=.demo/webapp
stop_apps() {
  if [ -d "$DEMO/.slipway/targets" ]; then
    for shared in "$DEMO"/.slipway/targets/*/shared; do sh examples/webapp/bin/stop.sh "$shared"; done
  fi
}
if [ "${1:-}" = stop ]; then stop_apps; echo "demo apps stopped"; exit 0; fi
stop_apps
rm -rf .demo
mkdir -p .demo
cp -R examples/webapp "$DEMO"
cd "$DEMO"
git init -q
git add -A
git -c user.name="Slipway demo" -c user.email=demo@example.invalid commit -qm "webapp: first release"
echo "== slipway validate"
"$S" validate
echo "== slipway run (builds one artifact, tests it, deploys it to dev and staging, then waits at the gate)"
"$S" run
run_id=$("$S" history --json --limit 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
echo "== slipway approve $run_id (a person approves production; the reason is recorded)"
"$S" --as "demo-approver" approve "$run_id" --reason "demo: acceptance tests passed on staging"
echo "== slipway status: the same artifact digest runs in every environment"
"$S" status
"$S" history --limit 3
cat <<MSG

The example app runs in three environments:
  dev         http://127.0.0.1:18461/health
  staging     http://127.0.0.1:18462/health
  production  http://127.0.0.1:18463/health
Explore: cd $DEMO && $S logs $run_id, $S deployments production, $S rollback production
Stop the apps with: make demo-stop
MSG
