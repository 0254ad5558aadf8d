"""Deploy freezes (model/freeze.py): which instant is frozen, by which freeze, until when; pure, fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.config import parse_config
from slipway.errors import ConfigError
from slipway.model.freeze import Freeze, OnFreeze, active_freeze, parse_duration

WEEKEND = Freeze(name="weekend", cron="0 18 * * 5", duration="62h", timezone="Europe/Berlin")
HOLIDAYS = Freeze(name="holidays", start="2026-12-20", end="2027-01-04T06:00", timezone="Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_cron_freeze_starts_at_its_minute_and_ends_after_its_duration() -> None:
    # Friday 2026-12-04 18:00 in Berlin (CET, UTC+1) is 17:00 UTC; 62h later is Monday 08:00 CET.
    assert active_freeze((WEEKEND,), utc("2026-12-04T16:59:59")) is None
    at_start = active_freeze((WEEKEND,), utc("2026-12-04T17:00:00"))
    assert at_start is not None and at_start.name == "weekend"
    assert at_start.start == utc("2026-12-04T17:00") and at_start.until == utc("2026-12-07T07:00")
    assert active_freeze((WEEKEND,), utc("2026-12-06T12:00")) == at_start
    assert active_freeze((WEEKEND,), utc("2026-12-07T06:59:59")) == at_start
    assert active_freeze((WEEKEND,), utc("2026-12-07T07:00:00")) is None  # the end is free again
    assert active_freeze((WEEKEND,), utc("2026-12-10T12:00")) is None  # a Thursday
    assert at_start.until_text() == "2026-12-07 08:00 Europe/Berlin (2026-12-07 07:00 UTC)"


def test_the_cron_is_read_in_the_freeze_time_zone_not_utc() -> None:
    new_york = Freeze(name="evening", cron="0 18 * * *", duration="1h", timezone="America/New_York")
    assert active_freeze((new_york,), utc("2026-12-04T18:30")) is None  # 13:30 in New York
    found = active_freeze((new_york,), utc("2026-12-04T23:30"))  # 18:30 EST
    assert found is not None and found.start == utc("2026-12-04T23:00")


def test_spring_forward_the_window_ends_at_the_same_local_time() -> None:
    # Clocks go forward on Sunday 2027-03-28 in Berlin: Friday 18:00 CET (17:00 UTC) + 62h of wall clock
    # is Monday 08:00 CEST = 06:00 UTC, 61 real hours later.
    found = active_freeze((WEEKEND,), utc("2027-03-29T05:59"))
    assert found is not None and found.start == utc("2027-03-26T17:00") and found.until == utc("2027-03-29T06:00")
    assert active_freeze((WEEKEND,), utc("2027-03-29T06:00")) is None


def test_fall_back_the_window_ends_at_the_same_local_time() -> None:
    # Clocks go back on Sunday 2026-10-25: Friday 18:00 CEST (16:00 UTC) to Monday 08:00 CET (07:00 UTC).
    found = active_freeze((WEEKEND,), utc("2026-10-26T06:59"))
    assert found is not None and found.start == utc("2026-10-23T16:00") and found.until == utc("2026-10-26T07:00")
    assert active_freeze((WEEKEND,), utc("2026-10-23T15:59")) is None


def test_a_cron_start_in_the_skipped_hour_still_freezes() -> None:
    # 02:30 does not exist in Berlin on 2027-03-28; cron semantics run it at the first instant after the gap.
    night = Freeze(name="night", cron="30 2 * * *", duration="1h", timezone="Europe/Berlin")
    found = active_freeze((night,), utc("2027-03-28T01:10"))  # 03:10 CEST
    assert found is not None and found.start <= utc("2027-03-28T01:10") < found.until


def test_a_date_freeze_is_inclusive_at_start_and_exclusive_at_end_in_its_zone() -> None:
    # 2026-12-20 00:00 CET is 2026-12-19 23:00 UTC; 2027-01-04 06:00 CET is 05:00 UTC.
    assert active_freeze((HOLIDAYS,), utc("2026-12-19T22:59:59")) is None
    found = active_freeze((HOLIDAYS,), utc("2026-12-19T23:00"))
    assert found is not None and found.name == "holidays" and found.until == utc("2027-01-04T05:00")
    assert active_freeze((HOLIDAYS,), utc("2027-01-04T04:59:59")) is not None
    assert active_freeze((HOLIDAYS,), utc("2027-01-04T05:00")) is None


def test_of_several_freezes_the_one_that_ends_last_is_named() -> None:
    found = active_freeze((WEEKEND, HOLIDAYS), utc("2026-12-25T18:00"))  # a Friday in the holidays
    assert found is not None and found.name == "holidays"
    found = active_freeze((WEEKEND, HOLIDAYS), utc("2026-12-12T12:00"))  # a Saturday before them
    assert found is not None and found.name == "weekend"


def test_overlapping_windows_of_one_freeze_end_with_the_last_start() -> None:
    every_ten = Freeze(name="busy", cron="*/10 * * * *", duration="25m")
    found = active_freeze((every_ten,), utc("2026-12-04T12:34"))
    assert found is not None and found.start == utc("2026-12-04T12:30") and found.until == utc("2026-12-04T12:55")


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(min_value=-3 * 86400, max_value=20 * 86400))
def test_a_date_window_holds_exactly_the_instants_between_its_ends(offset: int) -> None:
    start, end = utc("2026-12-19T23:00"), utc("2027-01-04T05:00")
    at = start + timedelta(seconds=offset)
    found = active_freeze((HOLIDAYS,), at)
    assert (found is not None) == (start <= at < end)


def test_durations() -> None:
    assert parse_duration("62h") == timedelta(hours=62)
    assert parse_duration("1d12h30m") == timedelta(days=1, hours=12, minutes=30)
    for bad in ("", "0h", "62", "h", "1.5h", "1w"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


CONFIG = """\
name: app
artifact: {paths: [app]}
environments:
  staging:
    targets: [{kind: local, name: s1, path: t/s}]
    on_freeze: wait
    freezes:
      - {name: weekend, cron: "0 18 * * 5", duration: 62h, timezone: Europe/Berlin}
      - FREEZE
pipeline:
  - {name: build, kind: build}
  - {name: deploy-staging, kind: deploy, environment: staging}
"""


def parse_with(freeze: str) -> object:
    return parse_config(CONFIG.replace("FREEZE", freeze), path=Path("/p/slipway.yml"))


def test_freezes_load_from_slipway_yml() -> None:
    loaded = parse_with('{name: holidays, start: "2026-12-20", end: "2027-01-04", timezone: UTC}')
    env = loaded.project.environments["staging"]  # type: ignore[attr-defined]
    assert env.on_freeze is OnFreeze.WAIT and [f.name for f in env.freezes] == ["weekend", "holidays"]


@pytest.mark.parametrize(
    ("freeze", "says"),
    [
        ('{name: x, cron: "61 18 * * 5", duration: 1h}', "cron '61 18 * * 5' is not valid"),
        ('{name: x, cron: "0 18 * *", duration: 1h}', "needs 5 fields"),
        ('{name: x, cron: "0 18 * * 5", duration: 1h, timezone: Mars/Olympus}', "unknown time zone 'Mars/Olympus'"),
        ('{name: x, cron: "0 18 * * 5", duration: 3x}', "duration '3x'"),
        ('{name: x, cron: "0 18 * * 5"}', "either 'cron' and 'duration', or 'start' and 'end'"),
        ('{name: x, cron: "0 18 * * 5", duration: 1h, start: "2026-12-20", end: "2026-12-21"}', "either 'cron'"),
        ('{name: x, start: "2026-12-20", end: "2026-12-19"}', "must be after start"),
        ('{name: x, start: "20.12.2026", end: "2026-12-21"}', "is not a date"),
        ('{name: x, start: "2026-12-20T00:00+01:00", end: "2026-12-21"}', "carries an offset"),
        ('{name: weekend, start: "2026-12-20", end: "2026-12-21"}', "freeze names must be unique"),
    ],
)
def test_a_bad_freeze_is_a_config_error_naming_the_key_path(freeze: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_with(freeze)
    text = str(err.value)
    assert says in text, text
    assert "environments.staging.freezes" in text, text


def test_on_freeze_takes_fail_or_wait() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG.replace("on_freeze: wait", "on_freeze: queue").replace("      - FREEZE\n", ""),
                     path=Path("/p/slipway.yml"))
    assert "environments.staging.on_freeze" in str(err.value)
