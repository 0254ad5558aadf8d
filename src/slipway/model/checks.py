"""What a check is, as written in slipway.yml: frozen, validated models and nothing that does I/O.

A ``checks:`` or ``dependencies:`` list item is one of the models below, chosen by its ``kind``::

    - kind: http
      url: http://127.0.0.1:8080/health
      expect_status: [200, 204]

The runner (:mod:`slipway.checks.runner`) executes them; the breaker (:mod:`slipway.checks.breaker`)
reads :class:`BreakerPolicy` from a dependency's ``breaker:`` key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from slipway.errors import ConfigError
from slipway.model.jsonpath import Segment, parse_json_path

#: HTTP methods a check may use. Checks observe; they never change anything on purpose.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NAME_LIMIT = 60


def is_template(value: str) -> bool:
    """Whether ``value`` holds a Jinja2 expression or statement.

    slipway.yml templates check values per host and environment (``url: "{{ environment.url }}/health"``).
    Validators that need the final text (URLs, addresses) let a template through when the file is read;
    the same validators run again on the rendered value before the check is used.
    """
    return "{{" in value or "{%" in value


class CheckKind(StrEnum):
    """The kinds of check; the ``kind`` key of a list item."""

    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"
    SQL = "sql"
    DNS = "dns"


class FrozenModel(BaseModel):
    """Base of every check model: immutable, and unknown keys are errors (typos do not pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Backoff(FrozenModel):
    """Exponential backoff between attempts: ``initial * factor**(n-1)``, capped at ``max``."""

    initial: float = Field(default=0.5, ge=0)
    factor: float = Field(default=2.0, ge=1)
    max: float = Field(default=10.0, ge=0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        # Cap the exponent so that a large attempt number cannot overflow a float.
        return float(min(self.max, self.initial * self.factor ** min(attempt - 1, 64)))


class OpenAfterSwitch(StrEnum):
    """What a dependency whose breaker is open means once the hosts run the new release.

    The release passed its verify and smoke checks; an open breaker only says the dependency is
    unavailable, so by default the release stays (docs/checks.md, "An open breaker after the switch").
    """

    #: The deployment stays (recorded as succeeded, every host on the new release); the run fails (exit 8).
    FAIL = "fail"
    #: Treated like a failed check: the environment's ``on_failure`` reverts (or halts) the hosts.
    REVERT = "revert"
    #: A warning in the check's log; the deployment and the run go on.
    IGNORE = "ignore"


class BreakerPolicy(FrozenModel):
    """How a dependency's circuit breaker decides (see docs/checks.md, "Circuit breakers").

    The window is count-based: the outcomes of the last ``window`` checks, optionally ignoring those
    older than ``max_age`` seconds.
    """

    window: int = Field(default=20, ge=1, le=1000)
    min_calls: int = Field(default=5, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    cool_down: float = Field(default=60.0, gt=0)
    half_open_trials: int = Field(default=1, ge=1, le=100)
    max_age: float | None = Field(default=None, gt=0)
    #: What the breaker being open means for the check after the switch (not for the one before it).
    open_after_switch: OpenAfterSwitch = OpenAfterSwitch.FAIL

    @model_validator(mode="after")
    def _min_calls_fit_window(self) -> Self:
        if self.min_calls > self.window:
            raise ValueError(f"min_calls ({self.min_calls}) cannot exceed window ({self.window})")
        return self


class _CheckBase(FrozenModel):
    """Fields every check kind has."""

    name: str = ""
    timeout: float = Field(default=10.0, gt=0, le=3600)
    retries: int = Field(default=0, ge=0, le=100)
    backoff: Backoff = Backoff()
    #: For dependencies: a failing optional dependency is reported but does not stop the deployment.
    required: bool = True
    #: For dependencies only: the breaker policy (defaults apply when absent).
    breaker: BreakerPolicy | None = None

    @model_validator(mode="after")
    def _derive_name(self) -> Self:
        if not self.name:
            # The model is frozen; filling a default derived from other fields is part of construction.
            object.__setattr__(self, "name", _shorten(self.describe()))
        return self

    def describe(self) -> str:
        """A short, secret-free description, used as the name when none is given."""
        raise NotImplementedError


class HttpCheck(_CheckBase):
    """An HTTP request whose status, body, JSON value and latency are checked."""

    kind: Literal[CheckKind.HTTP] = CheckKind.HTTP
    method: str = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: int | tuple[int, ...] = 200
    body_contains: str | None = None
    json_path: str | None = None
    #: Compared with JSON equality. Absent (or null): the value at ``json_path`` must only exist.
    json_equals: Any = None
    max_latency_ms: float | None = Field(default=None, gt=0)

    @field_validator("method")
    @classmethod
    def _safe_method(cls, value: str) -> str:
        method = value.upper()
        if method not in SAFE_METHODS:
            raise ValueError(f"method {value!r} is not allowed in a check; use one of {sorted(SAFE_METHODS)}")
        return method

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if is_template(value):
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: int | tuple[int, ...]) -> int | tuple[int, ...]:
        statuses = (value,) if isinstance(value, int) else value
        if not statuses or any(not 100 <= s <= 599 for s in statuses):
            raise ValueError("expect_status must be one HTTP status (100-599) or a non-empty list of them")
        return value

    @field_validator("json_path")
    @classmethod
    def _json_path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_json_path(value)
        return value

    @model_validator(mode="after")
    def _equals_needs_path(self) -> Self:
        if self.json_equals is not None and self.json_path is None:
            raise ValueError("json_equals needs json_path")
        return self

    @property
    def expected_statuses(self) -> frozenset[int]:
        """The statuses that pass."""
        return frozenset((self.expect_status,) if isinstance(self.expect_status, int) else self.expect_status)

    @property
    def json_segments(self) -> tuple[Segment, ...]:
        """The parsed ``json_path`` (empty when there is none)."""
        return parse_json_path(self.json_path) if self.json_path is not None else ()

    def describe(self) -> str:
        """``http GET host/path``, without credentials or query string."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return f"http {self.method} {urlunsplit((parts.scheme, netloc, parts.path, '', ''))}"


class TcpCheck(_CheckBase):
    """A TCP connection that must be accepted."""

    kind: Literal[CheckKind.TCP] = CheckKind.TCP
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)

    def describe(self) -> str:
        """``tcp host:port``."""
        return f"tcp {self.host}:{self.port}"


class CommandCheck(_CheckBase):
    """A shell command whose exit code and output are checked."""

    kind: Literal[CheckKind.COMMAND] = CheckKind.COMMAND
    run: str = Field(min_length=1)
    expect_exit: int = 0
    #: A regular expression searched (not fully matched) in stdout and stderr together.
    output_matches: str | None = None

    @field_validator("output_matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None and not is_template(value):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"output_matches is not a valid regular expression: {exc}") from exc
        return value

    def describe(self) -> str:
        """``command <first line of the command>``."""
        return f"command {self.run.strip().splitlines()[0] if self.run.strip() else self.run}"


class SqlCheck(_CheckBase):
    """A query whose first column of the first row is compared, as text, with ``expect``."""

    kind: Literal[CheckKind.SQL] = CheckKind.SQL
    url: str = Field(min_length=1)
    query: str = Field(min_length=1)
    #: Absent: the query only has to succeed. Compared as text: write ``"null"`` to expect NULL.
    expect: str | int | float | bool | None = None

    @property
    def expected_text(self) -> str | None:
        """``expect`` rendered the way result values are rendered, or None when absent."""
        return None if self.expect is None else render_scalar(self.expect)

    def describe(self) -> str:
        """``sql <query>``: never the URL, which may hold a password."""
        return f"sql {' '.join(self.query.split())}"


class DnsCheck(_CheckBase):
    """A name that must resolve, optionally to a given address.

    The name to resolve is ``host`` because ``name`` is every check's label.
    """

    kind: Literal[CheckKind.DNS] = CheckKind.DNS
    host: str = Field(min_length=1)
    expect_address: str | None = None

    @field_validator("expect_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not is_template(value):
            try:
                return str(ipaddress.ip_address(value))
            except ValueError as exc:
                raise ValueError(f"expect_address must be an IPv4 or IPv6 address, got {value!r}") from exc
        return value

    def describe(self) -> str:
        """``dns host``."""
        return f"dns {self.host}"


class LoadThresholds(FrozenModel):
    """Limits the figures must stay within; an absent limit is not checked."""

    p50_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=None, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)


class LoadTestSpec(FrozenModel):
    """What to send, how much, how fast, and for how long at most."""

    urls: tuple[str, ...] = Field(min_length=1)
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    requests: int = Field(default=100, ge=1, le=100_000)
    concurrency: int = Field(default=10, ge=1, le=256)
    #: Hard limit for the whole run, in seconds: requests still in flight then are abandoned.
    time_limit: float = Field(default=30.0, gt=0, le=600)
    request_timeout: float = Field(default=10.0, gt=0, le=600)
    thresholds: LoadThresholds = LoadThresholds()
    #: A run that the time limit stops before every request finished fails, unless this is true.
    allow_partial: bool = False

    @field_validator("method")
    @classmethod
    def _safe_method(cls, value: str) -> str:
        method = value.upper()
        if method not in SAFE_METHODS:
            raise ValueError(f"a load test only sends {sorted(SAFE_METHODS)}, not {value!r}")
        return method

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if is_template(url):
                continue  # rendered and validated again before the test runs
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"expected http:// or https:// URLs with a host, got {url!r}")
        return urls


_KIND_VALUES = frozenset(kind.value for kind in CheckKind)

CheckSpec = Annotated[HttpCheck | TcpCheck | CommandCheck | SqlCheck | DnsCheck, Field(discriminator="kind")]


def _named(spec: CheckSpec) -> CheckSpec:
    if "name" not in spec.model_fields_set:
        raise ValueError("a dependency needs an explicit 'name': it keys the dependency's circuit breaker")
    return spec


#: A ``dependencies:`` item: a check with an explicit name (the key of its circuit breaker).
DependencySpec = Annotated[CheckSpec, AfterValidator(_named)]
_CHECK_LIST: TypeAdapter[list[CheckSpec]] = TypeAdapter(list[CheckSpec])


def render_scalar(value: object) -> str:
    """Text form used to compare SQL values: ``true``/``false``, ``null``, else ``str(value)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_checks(items: object, *, key_path: str = "checks", file: str | None = None) -> tuple[CheckSpec, ...]:
    """Validate a ``checks:``/``dependencies:`` list; the first problem becomes a ConfigError with its key."""
    try:
        return tuple(_CHECK_LIST.validate_python(items))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = key_path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in _user_loc(error["loc"]))
        raise ConfigError(error["msg"], file=file, key_path=where, hint=_hint_for(error)) from exc


def check_names(specs: Sequence[CheckSpec]) -> list[str]:
    """The names of ``specs``, in order (derived names included)."""
    return [spec.name for spec in specs]


def _user_loc(loc: tuple[int | str, ...]) -> list[int | str]:
    # pydantic puts the discriminator's tag ("http") into the location; users never wrote it.
    return [part for part in loc if not (isinstance(part, str) and part in _KIND_VALUES)]


def _hint_for(error: Any) -> str:
    if error["type"] == "union_tag_invalid" or error["type"] == "union_tag_not_found":
        return f"kind must be one of: {', '.join(k.value for k in CheckKind)}"
    if error["type"] == "extra_forbidden":
        return "remove the key or check its spelling against docs/checks.md"
    return ""


def _shorten(text: str) -> str:
    return text if len(text) <= _NAME_LIMIT else text[: _NAME_LIMIT - 3] + "..."
