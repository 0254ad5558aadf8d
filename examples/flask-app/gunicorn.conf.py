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
errorlog = "-"  # the service's log: shared/log/web-0.log on each host (slipway app logs ENV)

