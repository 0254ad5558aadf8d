"""Routers: adapters that move traffic between backends (nginx today) behind one small Protocol."""

from slipway.model.routing import Backend, Router, RouterState

__all__ = ["Backend", "Router", "RouterState"]
