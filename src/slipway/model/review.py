"""Review environments: the ``review:`` template of slipway.yml (docs/config.md, "review").

A template is an environment (targets, vars, url, database, smoke, strategy ...) whose string values may use
``{{ review.number }}``, ``{{ review.name }}`` (``review-<N>``) and ``{{ review.branch }}``, plus the keys
of its own (``ttl``, ``teardown``). It becomes one environment per merge request in
:mod:`slipway.model.review_environment`; this module holds only its shape (model/config.py's Project
imports it, so it imports nothing of that module).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

from slipway.model.base import Frozen
from slipway.model.freeze import parse_duration

#: The keys of ``review:`` that are not the environment's own.
REVIEW_KEYS = ("ttl", "teardown")

#: An example request number: the template is filled in with it when slipway.yml is validated.
SAMPLE_NUMBER = 1


def review_name(number: int) -> str:
    """The environment name of merge request ``number``: ``review-<N>``."""
    return f"review-{number}"


def review_number(environment: str) -> int | None:
    """The request number of a review environment's name; None for any other name."""
    prefix, _, rest = environment.partition("-")
    return int(rest) if prefix == "review" and rest.isdigit() and not rest.startswith("0") else None


def review_context(number: int, branch: str) -> dict[str, Any]:
    """What ``{{ review.* }}`` holds for request ``number``."""
    return {"number": number, "name": review_name(number), "branch": branch}


class ReviewTemplate(Frozen):
    """``review:`` in slipway.yml: an environment template, its TTL and its teardown commands."""

    #: The environment's keys as written, templates not filled in (model/review_environment.py does).
    environment: dict[str, Any] = Field(default_factory=dict)
    #: Tear an open review environment down once it was not updated for this long (e.g. 72h); None: never.
    ttl: str | None = None
    #: Shell commands run on each host, in its current release directory, before the environment is removed.
    teardown: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """``review:`` is written flat: the keys other than ``ttl`` and ``teardown`` are the environment's
        (config.py's check_review names an unknown one with its line)."""
        if not isinstance(value, dict) or "environment" in value:
            return value
        own = {k: v for k, v in value.items() if k in REVIEW_KEYS}
        return {**own, "environment": {k: v for k, v in value.items() if k not in REVIEW_KEYS}}

    @field_validator("teardown", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def ttl_delta(self) -> timedelta | None:
        """The TTL as a duration; None when review environments live until their request closes."""
        return parse_duration(self.ttl) if self.ttl else None


class ReviewState(StrEnum):
    """A review environment is open (deployed, or being deployed) until it is closed, for good."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class ReviewUpdate:
    """What a merge-request run records of its review environment when it is created."""

    project: str
    number: int
    environment: str
    branch: str
    target: str
    head_commit: str
    merge_commit: str
    url: str | None
    run_id: int
    at: float


@dataclass(frozen=True)
class ReviewRecord:
    """A review environment as the store keeps it: open, or closed (when, why, by whom)."""

    project: str
    number: int
    environment: str
    state: ReviewState
    branch: str
    target: str
    head_commit: str
    merge_commit: str
    url: str | None
    run_id: int | None
    opened_at: float
    updated_at: float
    closed_at: float | None = None
    closed_by: str | None = None
    close_reason: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the environment is still up (or being brought up)."""
        return self.state is ReviewState.OPEN
