"""The seams between the core and the edges.

The engine talks to the outside world only through these Protocols. Adapters implement them:
``targets/`` (local, ssh, container), ``artifacts/`` (content-addressed store), ``store/`` (SQLAlchemy),
``checks/``, ``routers/``. ``slipway.testing`` has fakes that let unit tests drive the engine without
patching anything: :class:`slipway.testing.FakeTarget` (a Target) and :class:`slipway.testing.FakeClock`
(a Clock). tests/contract runs the same behaviours against every Target implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

from slipway.errors import CommandResult

#: Receives one line of output: (stream name "stdout"/"stderr", line without newline).
OutputSink = Callable[[str, str], None]


@runtime_checkable
class Target(Protocol):
    """One host Slipway deploys to. Local, SSH and container targets differ only here.

    Every method raises a :class:`slipway.errors.TargetError` subclass for transport problems
    (unreachable, authentication, host key, timeout). A command that runs and exits non-zero is
    *not* an exception: ``run`` returns its :class:`CommandResult` and the caller decides.
    """

    #: The host's name as written in slipway.yml (used in logs and the store).
    name: str
    #: Absolute path of the deploy root on the host (``releases/``, ``shared/``, ``current``).
    root: str

    async def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        on_output: OutputSink | None = None,
    ) -> CommandResult:
        """Run a POSIX shell command on the host and return what it did."""
        ...

    async def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` on the host atomically (temp file, then rename)."""
        ...

    async def read(self, path: str) -> bytes:
        """Read a file from the host; raises TargetError if it does not exist."""
        ...

    async def close(self) -> None:
        """Release connections; the target may be used again afterwards (it reconnects)."""
        ...


class Clock(Protocol):
    """Time, injected so that retries, bake times, breakers and locks are testable.

    Tests inject :class:`slipway.testing.FakeClock`; :class:`slipway.clock.SystemClock` is the real one.
    """

    def now(self) -> float:
        """Seconds since the epoch (wall clock)."""
        ...

    def monotonic(self) -> float:
        """A monotonic reading for measuring durations."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait asynchronously."""
        ...
