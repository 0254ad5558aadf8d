"""Public fakes for testing code that uses Slipway: no pytest, no test servers, nothing patched.

* :class:`FakeClock`: a :class:`~slipway.ports.Clock` whose time moves only when told to.
* :class:`FakeTarget`: a :class:`~slipway.ports.Target` that runs commands in a private temporary
  directory, records every call, and can be scripted to fail or to be unreachable.

See docs/testing.md. The test benches of Slipway's own suite (OpenSSH, PostgreSQL, nginx, podman) live in
the repository's ``tests/support``, not here.
"""

from slipway.testing.fakeclock import FakeClock
from slipway.testing.faketarget import Call, FakeTarget, Response

__all__ = ["Call", "FakeClock", "FakeTarget", "Response"]
