"""gunicorn's settings for the app (the service's command adds --bind with the host's address and $PORT)."""

import os

wsgi_app = "app:create_app()"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Load the app once in the master, before it binds the port: when the port answers, the app is imported
# (the readiness check passes only then) and the workers fork with the bytecode already loaded. The master
# opens no database connection (the engine connects on a worker's first request), so none is shared by a fork.
preload_app = True
# SIGTERM (Slipway's stop signal) is gunicorn's graceful stop: workers finish the requests they have,
# for at most this long; keep it below the service's stop_timeout.
graceful_timeout = 20
accesslog = None
# gunicorn >= 25.1 opens a control socket at $HOME/.gunicorn/gunicorn.ctl by default: one path for every
# gunicorn of the user, so two environments on one machine (or the old and the new process of a restart)
# would take it from each other. Nothing here uses it (gunicornc).
control_socket_disable = True
errorlog = "-"  # the service's log: shared/log/web-0.log on each host (slipway app logs ENV)

