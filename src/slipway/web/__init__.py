"""The web UI of ``slipway serve``: server-rendered pages (Jinja2), htmx and server-sent events, no build."""
