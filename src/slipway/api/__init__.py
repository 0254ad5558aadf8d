"""``slipway serve``: the HTTP API (this package) and the web UI (slipway.web), thin over the services.

Only this package and slipway.web import FastAPI and Starlette (pyproject's import-linter contracts).
"""
