"""Every error Slipway raises on purpose derives from :class:`SlipwayError`.

The tree::

    SlipwayError
    ├── ConfigError            slipway.yml is wrong: file, line, column, key path, hint
    │   └── SecretError        a secret reference cannot be resolved
    ├── ArtifactError
    │   ├── ArtifactNotFound   no artifact with that digest in the store
    │   ├── DigestMismatch     the bytes do not hash to the digest they claim
    │   └── UnsafeArchive      an archive member would escape its directory
    ├── TargetError            a host could not do what was asked (carries host, command, evidence)
    │   ├── HostUnreachable
    │   ├── AuthenticationFailed
    │   ├── HostKeyError       unknown or changed host key
    │   ├── CommandFailed      non-zero exit: exit code and the tail of stderr
    │   └── CommandTimeout
    ├── DeploymentError        a deployment failed; holds the per-host result map
    │   ├── HostsUnreachable   hosts could not be reached (or refused us) before anything changed: exit 5
    │   ├── CircuitBreakerTripped
    │   ├── DeploymentHalted   a check failed and the policy is halt: hosts left as they are
    │   ├── CanaryRejected     a person rejected a parked canary: its hosts went back
    │   └── RetireFailed       a container target switched, but its old containers were not all stopped
    ├── MigrationError         a database migration cannot or must not run
    │   ├── LintError          an unsafe statement in an expand file (rule id, file, fix)
    │   ├── ChecksumMismatch   an applied migration was edited
    │   └── LockTimeout        another runner holds the migration lock
    ├── CheckFailed            a smoke/health check did not pass (carries evidence)
    │   └── DependencyUnavailable  an external service's breaker is open
    ├── GateError              an approval/promotion rule forbids the action
    │   ├── NotAuthenticated   the server got no valid credentials (HTTP 401)
    │   └── AccessDenied       the user's roles do not permit it (HTTP 403)
    ├── StateError             an illegal state transition, or a run not in the needed state
    │   └── NotFound           no such run, project, environment or user (HTTP 404)
    ├── LockHeld               another process holds the environment lock (names the holder)
    ├── MergeConflict          a merge request does not merge into its target (names the paths)
    ├── Cancelled              a signal (SIGINT, SIGTERM, SIGHUP) stopped the run: exit 128 + signal
    └── StoreError             the state store cannot be read or written

Adapters translate third-party exceptions into these at the seam (``raise TargetError(...) from exc``);
nothing from asyncssh, SQLAlchemy or docker leaks past its adapter. The CLI maps each class to an exit
code (docs/cli.md) and prints ``str(error)`` plus ``error.hint``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class SlipwayError(Exception):
    """Base class of every error Slipway raises on purpose."""

    exit_code: int = 1
    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint


class ConfigError(SlipwayError):
    """The configuration is invalid; points at file:line:column and the key path."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        key_path: str | None = None,
        hint: str = "",
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.key_path = key_path
        where = ""
        if file:
            where = file
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        key = f"{key_path}: " if key_path else ""
        super().__init__(f"{where}{key}{message}", hint=hint)
        self.reason = message


class SecretError(ConfigError):
    """A secret reference (environment variable or file) cannot be resolved."""


class ArtifactError(SlipwayError):
    """An artifact cannot be built, stored or fetched."""

    exit_code = 4


class ArtifactNotFound(ArtifactError):
    """No artifact with the requested digest is in the store."""


class DigestMismatch(ArtifactError):
    """Bytes do not hash to the digest they are stored under: refuse to use them."""


class UnsafeArchive(ArtifactError):
    """An archive member has an absolute path, '..', or a link leaving the archive."""


@dataclass(frozen=True)
class CommandResult:
    """What one command did on one host."""

    host: str
    command: str
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0

    def tail(self, lines: int = 10) -> str:
        """The last lines of stderr (or stdout when stderr is empty)."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


class TargetError(SlipwayError):
    """A host could not do what was asked."""

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        command: str = "",
        exit_code: int | None = None,
        stderr_tail: str = "",
        hint: str = "",
    ) -> None:
        self.host = host
        self.command = command
        self.command_exit_code = exit_code
        self.stderr_tail = stderr_tail
        prefix = f"[{host}] " if host else ""
        super().__init__(f"{prefix}{message}", hint=hint)


class HostUnreachable(TargetError):
    """The host did not answer (connection refused, timed out, lost)."""


class AuthenticationFailed(TargetError):
    """The host refused our credentials."""


class HostKeyError(TargetError):
    """The host's key is unknown or changed: refused until the user accepts it explicitly."""


class CommandFailed(TargetError):
    """A command exited non-zero."""

    exit_code = 1

    @classmethod
    def from_result(cls, result: CommandResult, *, what: str = "command failed") -> CommandFailed:
        """Build the error from a command result, keeping its evidence."""
        tail = result.tail()
        msg = f"{what}: exit code {result.exit_code}: {result.command}"
        if tail:
            msg += "\n" + "\n".join(f"    {line}" for line in tail.splitlines())
        return cls(msg, host=result.host, command=result.command, exit_code=result.exit_code, stderr_tail=tail)


class CommandTimeout(TargetError):
    """A command ran longer than its timeout and was stopped."""


@dataclass(frozen=True)
class HostOutcome:
    """How one host fared in a multi-host step."""

    host: str
    ok: bool
    step: str = ""
    error: str = ""
    release: str | None = None
    duration: float = 0.0
    details: Mapping[str, str] = field(default_factory=dict)


def of_hosts(count: int, total: int) -> str:
    """``1 of 3 hosts``, ``2 of 2 hosts``, ``1 host`` (when there is one): counts of the environment in messages."""
    if total == 1:
        return f"{count} host"
    return f"{count} of {total} hosts"


class DeploymentError(SlipwayError):
    """A deployment failed; ``results`` holds what happened on every host."""

    exit_code = 6

    def __init__(self, message: str, *, results: Mapping[str, HostOutcome] | None = None, hint: str = "") -> None:
        self.results = dict(results or {})
        failed = [o for o in self.results.values() if not o.ok]
        if failed:
            message += "".join(f"\n  - {o.host}: {o.step + ': ' if o.step else ''}{o.error}" for o in failed)
        super().__init__(message, hint=hint)


class HostsUnreachable(DeploymentError):
    """Hosts could not be reached, refused authentication or had an unknown key, before anything changed.

    A connection fault, not a broken release: it exits like a TargetError (5, see docs/ssh.md), and it
    keeps the per-host map of a DeploymentError.
    """

    exit_code = 5


class CircuitBreakerTripped(DeploymentError):
    """Too many hosts failed: the deployment stopped and (by policy) rolled back."""


class DeploymentHalted(DeploymentError):
    """A check failed and the environment's ``on_failure`` is ``halt``: every host was left as it is."""


class CanaryRejected(DeploymentError):
    """A person rejected a canary that waited for a decision; its hosts went back to what they ran."""


class RetireFailed(DeploymentError):
    """A container target serves its new containers, but stopping the old ones failed (e.g. the engine
    was lost): ``left`` names the old containers that may still run, out of the router."""

    def __init__(self, message: str, *, host: str, left: tuple[str, ...], hint: str = "") -> None:
        self.host = host
        self.left = left
        super().__init__(f"[{host}] {message}", hint=hint)


class MigrationError(SlipwayError):
    """A database migration cannot or must not run."""

    exit_code = 7

    def __init__(self, message: str, *, file: str = "", hint: str = "") -> None:
        self.file = file
        super().__init__(f"{file}: {message}" if file else message, hint=hint)


class LintError(MigrationError):
    """A migration breaks a lint rule and carries no override for it."""

    def __init__(self, message: str, *, file: str = "", rule: str = "", hint: str = "") -> None:
        self.rule = rule
        super().__init__(f"[{rule}] {message}" if rule else message, file=file, hint=hint)


class ChecksumMismatch(MigrationError):
    """An applied migration's file was edited after it ran."""


class LockTimeout(MigrationError):
    """Another migration runner held the lock longer than we may wait."""


class CheckFailed(SlipwayError):
    """A check did not pass; ``evidence`` says what was seen."""

    exit_code = 8

    def __init__(self, message: str, *, check: str = "", evidence: str = "", hint: str = "") -> None:
        self.check = check
        self.evidence = evidence
        text = f"check {check!r} failed: {message}" if check else message
        if evidence:
            text += f"\n    {evidence}"
        super().__init__(text, hint=hint)


class DependencyUnavailable(CheckFailed):
    """An external dependency's circuit breaker is open: fail fast."""


class GateError(SlipwayError):
    """A promotion or approval rule forbids the action."""

    exit_code = 9


class NotAuthenticated(GateError):
    """The server got no valid credentials (a session, a token, a password): HTTP 401."""


class AccessDenied(GateError):
    """Signed in, but the user's roles do not permit the action: HTTP 403."""


class StateError(SlipwayError):
    """An illegal state transition, or an object not in the state the action needs."""

    exit_code = 9


class NotFound(StateError):
    """No such run, project, environment, user ...: HTTP 404."""


class LockHeld(SlipwayError):
    """Another process holds the lock; the message names the holder."""

    exit_code = 11


class MergeConflict(SlipwayError):
    """A merge request's head does not merge cleanly into its target branch; ``paths`` are the conflicts."""

    def __init__(self, message: str, *, paths: tuple[str, ...] = (), hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.paths = paths


class Cancelled(SlipwayError):
    """A signal stopped the run; ``exit_code`` is 128 + the signal (130 for SIGINT, the default)."""

    exit_code = 130


class StoreError(SlipwayError):
    """The state store cannot be read or written."""

    exit_code = 12
