"""Slipway: build once, deploy the same way everywhere."""

__version__ = "0.1.0"

#: Where the documentation is read online (what ``slipway init`` and error hints point to).
DOCS_URL = "https://github.com/slipway-deploy/slipway/blob/main/docs"
