"""Test benches (real OpenSSH, PostgreSQL, nginx, podman, a registry, load) and their pytest fixtures.

They live with the tests, not in the wheel: ``slipway.testing`` ships only the public fakes.
"""
