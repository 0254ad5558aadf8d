"""Deploy freezes of an environment: when a deploy stage may not start (pure: the time is passed in).

A freeze is either recurring (a 5-field cron expression marks each start, ``duration`` how long it lasts)
or one span of dates; both are read in the freeze's own time zone, so "Friday 18:00 Europe/Berlin" stays
18:00 in Berlin over a daylight-saving change. A duration is wall-clock time in that zone: a freeze from
Friday 18:00 for 62h ends Monday 08:00 local time even when the clocks moved in between.
docs/config.md ("freezes") documents the keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import Field, field_validator, model_validator

from slipway.model.base import NAME_RE, Frozen

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
#: How many earlier cron starts are looked at for one instant (a freeze longer than that many periods
#: would be a mistake anyway: "* * * * *" for 2 days).
_MAX_STARTS = 10_000


class OnFreeze(StrEnum):
    """What a deploy stage that would start inside a freeze does."""

    #: The stage fails, naming the freeze (nothing deploys).
    FAIL = "fail"
    #: The stage waits until the freeze ends, for at most the stage's timeout.
    WAIT = "wait"


def parse_duration(text: str) -> timedelta:
    """``62h``, ``2d``, ``1h30m``, ``1d12h``: days, hours and minutes; ValueError otherwise."""
    match = _DURATION_RE.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"duration {text!r} is not like 62h, 2d or 1h30m (days d, hours h, minutes m)")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    value = timedelta(days=days, hours=hours, minutes=minutes)
    if value <= timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    return value


def _local(text: str) -> datetime:
    """A naive local time from ``2026-12-20T18:00`` or ``2026-12-20`` (midnight)."""
    try:
        value = datetime.fromisoformat(text) if "T" in text or " " in text else datetime.combine(
            date.fromisoformat(text), datetime.min.time()
        )
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2026-12-20) or a local time (2026-12-20T18:00)") from None
    if value.tzinfo is not None:
        raise ValueError(f"{text!r} carries an offset: give a local time and the freeze's 'timezone'")
    return value


def _in_zone(local: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive local time names in ``zone`` (a time skipped by DST: the later reading)."""
    return local.replace(tzinfo=zone).astimezone(UTC)


class Freeze(Frozen):
    """One freeze window of an environment: ``cron`` + ``duration``, or ``start`` + ``end``."""

    name: str = Field(pattern=NAME_RE)
    #: A 5-field cron expression: each match starts the freeze (in ``timezone``).
    cron: str | None = None
    #: How long each cron-started freeze lasts: ``62h``, ``2d``, ``1h30m`` (wall-clock time in ``timezone``).
    duration: str | None = None
    #: The first instant frozen, a date or a local time (``2026-12-20`` or ``2026-12-20T18:00``).
    start: str | None = None
    #: The first instant free again (exclusive), like ``start``.
    end: str | None = None
    #: An IANA time zone name, such as ``Europe/Berlin``; the cron and the dates are read in it.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin or UTC") from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            if len(value.split()) != 5:
                raise ValueError(f"cron {value!r} needs 5 fields: minute hour day-of-month month day-of-week")
            try:
                CronSim(value, datetime(2000, 1, 1, tzinfo=UTC))
            except CronSimError as exc:
                raise ValueError(f"cron {value!r} is not valid: {exc}") from None
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("start", "end")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        if value is not None:
            _local(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Freeze:
        recurring = self.cron is not None or self.duration is not None
        dated = self.start is not None or self.end is not None
        if recurring == dated or (recurring and None in (self.cron, self.duration)) or (
            dated and None in (self.start, self.end)
        ):
            raise ValueError("a freeze has either 'cron' and 'duration', or 'start' and 'end'")
        if self.start is not None and self.end is not None and _local(self.end) <= _local(self.start):
            raise ValueError(f"end {self.end!r} must be after start {self.start!r}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the freeze is read in."""
        return ZoneInfo(self.timezone)

    def window_at(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) in UTC of this freeze's window that holds ``at`` (aware), or None.

        Of overlapping recurring windows, the one that ends last.
        """
        if self.start is not None and self.end is not None:
            start, end = _in_zone(_local(self.start), self.zone), _in_zone(_local(self.end), self.zone)
            return (start, end) if start <= at < end else None
        assert self.cron is not None and self.duration is not None
        length = parse_duration(self.duration)
        found: tuple[datetime, datetime] | None = None
        local_at = at.astimezone(self.zone)
        starts = CronSim(self.cron, local_at + timedelta(minutes=1), reverse=True)  # includes a start at ``at``
        for _, begin in zip(range(_MAX_STARTS), starts, strict=False):
            if begin.astimezone(UTC) > at:
                continue
            # Wall-clock arithmetic in the zone, then the real instant (a DST change in between moves it).
            end = (begin.replace(tzinfo=None) + length).replace(tzinfo=self.zone).astimezone(UTC)
            if local_at.replace(tzinfo=None) - begin.replace(tzinfo=None) >= length + timedelta(hours=2):
                break  # starts further back cannot reach ``at`` (2h: the largest DST step)
            if end > at and (found is None or end > found[1]):
                found = (begin.astimezone(UTC), end)
        return found


@dataclass(frozen=True)
class ActiveFreeze:
    """A freeze that holds at some instant: which one, since and until when (UTC)."""

    name: str
    start: datetime
    until: datetime
    timezone: str

    def until_text(self) -> str:
        """The end in the freeze's own zone and in UTC, for messages."""
        local = self.until.astimezone(ZoneInfo(self.timezone))
        return f"{local:%Y-%m-%d %H:%M} {self.timezone} ({self.until:%Y-%m-%d %H:%M} UTC)"


def active_freeze(freezes: tuple[Freeze, ...], at: datetime) -> ActiveFreeze | None:
    """The freeze in force at ``at`` (aware); of several, the one that ends last. None: deploys may start."""
    found: ActiveFreeze | None = None
    for freeze in freezes:
        window = freeze.window_at(at)
        if window is not None and (found is None or window[1] > found.until):
            found = ActiveFreeze(freeze.name, window[0], window[1], freeze.timezone)
    return found


def unique_names(freezes: tuple[Freeze, ...]) -> tuple[Freeze, ...]:
    """``freezes``, or ValueError naming a repeated name (an override and the audit log name a freeze)."""
    names = [f.name for f in freezes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"freeze names must be unique; repeated: {', '.join(dupes)}")
    return freezes
