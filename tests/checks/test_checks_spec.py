"""Parsing check specs (and the examples in docs/checks.md), the JSON path, and the fake clock."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from slipway.checks import (
    Backoff,
    CommandCheck,
    DnsCheck,
    HttpCheck,
    LoadTestSpec,
    SqlCheck,
    TcpCheck,
    parse_checks,
)
from slipway.checks.jsonpath import MISSING, extract_json_path, json_equal, parse_json_path
from slipway.config import parse_config
from slipway.engine.planner import ReleaseInfo
from slipway.errors import ConfigError
from slipway.services.checks import render_all
from slipway.testing.fakeclock import FakeClock

pytestmark = pytest.mark.timeout(60)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "checks.md"

YAML_LIST = """
- {kind: http, url: "http://127.0.0.1:8080/health", expect_status: 200}
- {kind: tcp, host: 127.0.0.1, port: 5432}
- {kind: command, run: "true"}
- {kind: sql, url: "sqlite://", query: "SELECT 1", expect: 1}
- {kind: dns, host: localhost, expect_address: 127.0.0.1}
"""


def test_a_yaml_list_parses_into_one_model_per_kind() -> None:
    specs = parse_checks(yaml.safe_load(YAML_LIST))
    assert [type(s) for s in specs] == [HttpCheck, TcpCheck, CommandCheck, SqlCheck, DnsCheck]
    assert [s.name for s in specs] == [
        "http GET http://127.0.0.1:8080/health",
        "tcp 127.0.0.1:5432",
        "command true",
        "sql SELECT 1",
        "dns localhost",
    ]
    assert all(s.required and s.retries == 0 and s.timeout == 10 for s in specs)


def test_every_yaml_example_in_the_docs_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) >= 7
    seen: set[str] = set()
    for block in blocks:
        document: dict[str, Any] = yaml.safe_load(block)
        if "pipeline" in document:  # a complete slipway.yml: every check kind, templates rendered
            kinds = set(re.findall(r"kind: ([\w-]+)", block))
            assert {"http", "tcp", "command", "sql", "dns", "load-test"} <= kinds, kinds
            loaded = parse_config(block, path=DOCS.with_name("slipway.yml"))
            assert render_all(loaded, ReleaseInfo("20260101T000000Z-0123456789ab", "sha256:" + "0" * 64, "a" * 40))
            seen.add("slipway.yml")
            continue
        for key, value in document.items():
            seen.add(key)
            if key == "load_test":
                LoadTestSpec.model_validate(value)
            else:
                assert key in ("checks", "dependencies")
                parse_checks(value, key_path=key)
    assert seen == {"checks", "dependencies", "load_test", "slipway.yml"}


def test_models_are_frozen() -> None:
    spec = TcpCheck(host="db", port=5432)
    with pytest.raises(ValidationError):
        spec.port = 1


def test_a_dumped_spec_parses_back_to_the_same_spec() -> None:
    for spec in parse_checks(yaml.safe_load(YAML_LIST)):
        assert parse_checks([spec.model_dump(mode="json")])[0] == spec


def test_derived_names_carry_no_credentials_or_query() -> None:
    http = parse_checks([{"kind": "http", "url": "https://u:secret@api.example:8443/ping?token=abc"}])[0]
    sql = parse_checks([{"kind": "sql", "url": "postgresql://u:secret@db/app", "query": "SELECT\n  1"}])[0]
    assert http.name == "http GET https://api.example:8443/ping"
    assert sql.name == "sql SELECT 1"
    long = parse_checks([{"kind": "command", "run": "x" * 200}])[0]
    assert len(long.name) == 60 and long.name.endswith("...")


@pytest.mark.parametrize(
    ("item", "key_path", "message"),
    [
        ({"kind": "smtp", "host": "x"}, "checks[0]", "does not match any of the expected tags"),
        ({"kind": "tcp", "host": "x", "port": 70000}, "checks[0].port", "less than or equal to 65535"),
        ({"kind": "tcp", "host": "x", "prot": 1}, "checks[0].port", "Field required"),
        ({"kind": "http", "url": "ftp://x/"}, "checks[0].url", "http:// or https://"),
        ({"kind": "http", "url": "http://x/", "method": "POST"}, "checks[0].method", "not allowed"),
        (
            {"kind": "http", "url": "http://x/", "expect_status": [200, 700]},
            "checks[0].expect_status",
            "100-599",
        ),
        ({"kind": "http", "url": "http://x/", "json_equals": 1}, "checks[0]", "json_equals needs json_path"),
        (
            {"kind": "http", "url": "http://x/", "json_path": "a..b"},
            "checks[0].json_path",
            "invalid JSON path",
        ),
        ({"kind": "command", "run": "true", "output_matches": "("}, "checks[0].output_matches", "regular"),
        ({"kind": "dns", "host": "x", "expect_address": "300.1.1.1"}, "checks[0].expect_address", "IPv4"),
        ({"kind": "tcp", "host": "x", "port": 1, "retries": -1}, "checks[0].retries", "greater than"),
        (
            {"kind": "tcp", "host": "x", "port": 1, "breaker": {"window": 2, "min_calls": 3}},
            "checks[0].breaker",
            "min_calls",
        ),
    ],
)
def test_invalid_items_become_config_errors_with_the_key_path(
    item: dict[str, object], key_path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_checks([item], file="slipway.yml")
    assert caught.value.key_path == key_path
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"slipway.yml: {key_path}: ")


def test_unknown_kind_and_unknown_key_come_with_hints() -> None:
    with pytest.raises(ConfigError) as kind:
        parse_checks([{"kind": "smtp"}])
    assert kind.value.hint == "kind must be one of: http, tcp, command, sql, dns"
    with pytest.raises(ConfigError) as key:
        parse_checks([{"kind": "tcp", "host": "x", "port": 1, "retires": 3}])
    assert key.value.key_path == "checks[0].retires"
    assert "spelling" in key.value.hint


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    backoff = Backoff(initial=0.5, factor=2, max=3)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1, 2, 3, 3]
    with pytest.raises(ValueError):
        backoff.delay(0)


@given(st.floats(0, 100), st.floats(1, 10), st.floats(0, 1000), st.integers(1, 10_000))
def test_backoff_never_exceeds_its_cap_and_never_shrinks(
    initial: float, factor: float, cap: float, attempt: int
) -> None:
    backoff = Backoff(initial=initial, factor=factor, max=cap)
    assert 0 <= backoff.delay(attempt) <= cap
    assert backoff.delay(attempt) <= backoff.delay(attempt + 1)


# --- the JSON path -----------------------------------------------------------------------------------


def test_json_path_syntax() -> None:
    assert parse_json_path("$.a.b[0][-1].c") == ("a", "b", 0, -1, "c")
    assert parse_json_path("a.b") == ("a", "b")
    assert parse_json_path('$["key.with.dots"].x') == ("key.with.dots", "x")
    assert parse_json_path("$") == ()
    assert parse_json_path("[2]") == (2,)
    for bad in ("a..b", "$.a[x]", "$.a b", "$.[1"):
        with pytest.raises(ValueError):
            parse_json_path(bad)


def test_json_path_extraction() -> None:
    document = {"a": [{"b": 1}, {"b": None}], "c": {"d.e": True}}
    assert extract_json_path(document, parse_json_path("a[1].b")) is None
    assert extract_json_path(document, parse_json_path("a[-2].b")) == 1
    assert extract_json_path(document, parse_json_path('c["d.e"]')) is True
    for missing in ("a[2]", "a.b", "c.x", "a[0].b.c"):
        assert extract_json_path(document, parse_json_path(missing)) is MISSING


def test_json_equality_keeps_booleans_apart_from_numbers() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1) and not json_equal(0, False)
    assert json_equal({"a": [1, True]}, {"a": [1.0, True]})
    assert not json_equal({"a": [1, True]}, {"a": [1, 1]})
    assert not json_equal([1], [1, 2])


keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,8}", fullmatch=True)
segments = st.lists(st.one_of(keys, st.integers(0, 3)), max_size=6)


@given(segments, st.integers())
def test_a_path_written_from_segments_finds_the_value_planted_there(path: list[str | int], leaf: int) -> None:
    document: object = leaf
    for segment in reversed(path):
        document = [None] * segment + [document] if isinstance(segment, int) else {segment: document}
    text = "$" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path)
    assert parse_json_path(text) == tuple(path)
    assert extract_json_path(document, parse_json_path(text)) == leaf


# --- the fake clock ----------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=1000.0, monotonic_start=5.0)
    assert (clock.now(), clock.monotonic()) == (1000.0, 5.0)
    assert (clock.now(), clock.monotonic()) == (1000.0, 5.0)
    clock.advance(2.5)
    assert (clock.now(), clock.monotonic()) == (1002.5, 7.5)
    asyncio.run(clock.sleep(10))
    assert (clock.now(), clock.monotonic(), clock.sleeps) == (1012.5, 17.5, [10])
    with pytest.raises(ValueError):
        clock.advance(-1)
