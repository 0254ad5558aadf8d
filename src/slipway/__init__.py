"""Slipway: build once, deploy the same way everywhere."""

__version__ = "0.1.0"
