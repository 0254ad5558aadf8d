"""Hook templates: strict variables, and values shell-quoted unless marked raw."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slipway.engine.masking import Masker
from slipway.engine.template import render
from slipway.errors import ConfigError


def test_values_are_shell_quoted() -> None:
    out = render("echo {{ vars.name }}", {"vars": {"name": "a b; rm -rf /"}})
    assert shlex.split(out) == ["echo", "a b; rm -rf /"]


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40))
def test_any_value_arrives_as_one_argument(value: str) -> None:
    out = render("printf %s {{ v }}", {"v": value})
    result = subprocess.run(["sh", "-c", out], capture_output=True, check=True)
    assert result.stdout.decode("utf-8", "surrogateescape") == value


def test_raw_opts_out_of_quoting() -> None:
    assert render("a {{ x | raw }}", {"x": "1 && 2"}) == "a 1 && 2"


def test_plain_rendering_for_urls() -> None:
    assert render("http://h:{{ vars.port }}/", {"vars": {"port": 80}}, shell=False) == "http://h:80/"


def test_undefined_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError) as err:
        render("echo {{ vars.prot }}", {"vars": {"port": 1}}, where="deploy.hooks.activate[0]")
    assert "prot" in str(err.value)
    assert "deploy.hooks.activate[0]" in str(err.value)


def test_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="syntax"):
        render("echo {{ oops", {})


def test_masker_hides_every_secret_and_each_line_of_multiline_ones() -> None:
    mask = Masker(["s3cret-token", "line-one\nline-two", "ab"])
    text = "token=s3cret-token first line-one then line-two short ab"
    masked = mask(text)
    assert "s3cret" not in masked and "line-one" not in masked and "line-two" not in masked
    assert masked.count("***") == 3
    assert "ab" in masked  # too short to mask meaningfully
