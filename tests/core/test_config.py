"""slipway.yml: valid files load; every mistake names file:line:column, the key path and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.config import load_config, parse_config
from slipway.errors import ConfigError
from slipway.model.states import StageKind

GOOD = """\
name: app
artifact:
  build: make
  paths: [app]
deploy:
  hooks:
    activate: "sh restart.sh {{ vars.port }}"
    migrate: [{run: "migrate", once: true}]
environments:
  dev:
    vars: {port: 8080}
    targets:
      - {kind: local, name: d1, path: t/dev}
pipeline:
  - {name: build, kind: build}
  - {name: unit, kind: test, run: pytest}
  - {name: deploy-dev, kind: deploy, environment: dev}
"""


def parse(text: str) -> object:
    return parse_config(text, path=Path("/p/slipway.yml"))


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse(text)
    return err.value


def test_the_example_pipeline_is_valid(repo_root: Path) -> None:
    loaded = load_config(repo_root / "examples/webapp/slipway.yml")
    kinds = [s.kind for s in loaded.project.pipeline]
    assert kinds[0] is StageKind.BUILD and StageKind.APPROVAL in kinds
    assert set(loaded.project.environments) == {"dev", "staging", "production"}


def test_good_config_parses_with_defaults() -> None:
    project = parse_config(GOOD, path=Path("/p/slipway.yml")).project
    assert project.deploy.keep_releases == 5
    assert project.deploy.hooks.activate[0].run.startswith("sh restart.sh")
    assert project.deploy.hooks.migrate[0].once is True


def test_malformed_yaml_points_at_line_and_column() -> None:
    err = error_of("name: app\nartifact: [unclosed\n")
    assert err.file == "/p/slipway.yml" and err.line is not None and err.column is not None
    assert "malformed YAML" in str(err)


def test_unknown_key_suggests_the_nearest_valid_one() -> None:
    err = error_of(GOOD.replace("keep_releases", "x").replace("  hooks:", "  hookz:"))
    assert err.key_path == "deploy.hookz"
    assert (err.line, err.column) == (6, 3)
    assert "did you mean 'hooks'" in err.hint


def test_unknown_key_in_a_target_names_the_allowed_keys() -> None:
    err = error_of(GOOD.replace("path: t/dev", "pth: t/dev"))
    assert err.key_path == "environments.dev.targets[0].pth"
    assert "did you mean 'path'" in err.hint and "roles" in err.hint


def test_unknown_environment_in_a_stage_is_refused_with_its_position() -> None:
    err = error_of(GOOD.replace("environment: dev}", "environment: dve}"))
    assert err.key_path == "pipeline[2].environment"
    assert err.line == 17
    assert "did you mean 'dev'" in err.hint


def test_duplicate_keys_are_refused() -> None:
    err = error_of(GOOD.replace("name: app\n", "name: app\nname: other\n"))
    assert "appears twice" in str(err) and err.line == 2


def test_missing_required_key() -> None:
    err = error_of(GOOD.replace("  paths: [app]\n", ""))
    assert err.key_path == "artifact.paths" and "missing" in str(err)


def test_pipeline_must_start_with_build() -> None:
    err = error_of(GOOD.replace("  - {name: build, kind: build}\n", ""))
    assert "no build stage" in str(err)


def test_acceptance_before_deploy_is_refused() -> None:
    bad = GOOD + "  - {name: acc, kind: acceptance, environment: dev, run: x}\n"
    parse(bad)  # after the deploy: fine
    bad = GOOD.replace(
        "  - {name: unit, kind: test, run: pytest}\n",
        "  - {name: acc, kind: acceptance, environment: dev, run: x}\n",
    )
    assert "before any stage deploys it" in str(error_of(bad))


def test_stage_fields_must_fit_the_kind() -> None:
    err = error_of(GOOD.replace("{name: unit, kind: test, run: pytest}", "{name: unit, kind: test}"))
    assert "needs 'run'" in str(err)


def test_unknown_stage_kind_lists_the_kinds() -> None:
    err = error_of(GOOD.replace("kind: test", "kind: tset"))
    assert "build" in str(err) + err.hint and err.key_path == "pipeline[1].kind"


def test_secret_needs_exactly_one_source() -> None:
    bad = GOOD.replace("    vars: {port: 8080}\n", "    vars: {port: 8080}\n    secrets: {TOKEN: {}}\n")
    assert "exactly one source" in str(error_of(bad))


def test_shared_paths_cannot_escape() -> None:
    bad = GOOD.replace("  hooks:\n", "  shared: [../etc]\n  hooks:\n")
    assert "inside shared" in str(error_of(bad))


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "slipway.yml")
    assert "slipway init" in err.value.hint


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        parse(text)
    except ConfigError as exc:
        assert str(exc).startswith("/p/slipway.yml")


def alias_bomb(levels: int, width: int) -> str:
    """A 'billion laughs' file: each level names the one before ``width`` times (width**levels values)."""
    lines = ["name: app", "l0: &l0 " + "[" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(60)
def test_an_alias_bomb_is_refused_at_its_line_before_it_grows() -> None:
    err = error_of(alias_bomb(6, 8))  # 8**6 = 262144 values: past the bound, yet small enough to survive a bug
    assert "expands to more than" in err.reason and "alias" in err.hint
    assert err.file == "/p/slipway.yml" and err.line is not None and 2 <= err.line <= 7


def test_anchors_aliases_and_merge_keys_keep_working() -> None:
    text = GOOD.replace("    vars: {port: 8080}\n", "    vars: &dev_vars {port: 8080, host: a}\n").replace(
        "pipeline:",
        "  qa:\n    vars: {<<: *dev_vars, port: 9090}\n"
        "    targets: [{kind: local, name: q1, path: t/qa}]\npipeline:",
    )
    project = parse_config(text, path=Path("/p/slipway.yml")).project
    assert project.environments["qa"].vars == {"port": 9090, "host": "a"}  # a key written beside '<<' wins
    assert project.environments["dev"].vars == {"port": 8080, "host": "a"}
    bad = text.replace("{<<: *dev_vars, port: 9090}", "{<<: *dev_vars, port: 9090, prot: 1}")
    parse(bad)  # vars accept any key: the merged mapping is checked like a written one
    typo = text.replace("    targets: [{kind: local, name: q1, path: t/qa}]", "    targts: []")
    assert error_of(typo).key_path == "environments.qa.targts"


def test_x_keys_hold_shared_blocks_that_environments_merge() -> None:
    """Issue 15: a file keeps the blocks several environments share under ``x-`` keys (as compose files do)."""
    text = (
        "x-common: &common\n  parallel: 4\n  vars: {port: 8080, region: eu}\n"
        + GOOD.replace("  dev:\n    vars: {port: 8080}\n", "  dev:\n    <<: *common\n    x-note: the first one\n")
        .replace("pipeline:", "  qa:\n    <<: *common\n    vars: {port: 9090, x-own: kept}\n"
                 "    targets: [{kind: local, name: q1, path: t/qa}]\npipeline:")
    )
    project = parse_config(text, path=Path("/p/slipway.yml")).project
    assert project.environments["dev"].parallel == 4 and project.environments["dev"].vars == {"port": 8080, "region": "eu"}
    assert project.environments["qa"].vars == {"port": 9090, "x-own": "kept"}  # a variable of one's own stays
    assert error_of(text.replace("x-common:", "common:")).key_path == "common"  # without x- it is a typo


def test_an_alias_inside_itself_and_a_list_as_key_are_refused() -> None:
    assert "part of" in str(error_of("name: &a [x, *a]\n"))
    assert "must be text" in str(error_of("? [a, b]\n: 1\n"))


def test_a_file_nested_too_deeply_is_a_config_error() -> None:
    err = error_of("name: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "too deeply" in str(err)


def test_binary_garbage_names_the_file_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "slipway.yml"
    path.write_bytes(b"name: app\nartifact:\n  build: \xff\xfe\x00garbage\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (err.value.file, err.value.line, err.value.column) == (str(path), 3, 10)
    assert "not UTF-8" in err.value.reason and "0xff" in err.value.reason and "binary" in err.value.hint


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "slipway.yml"
    path.write_bytes(b"name: app\n" + b"# padding\n" * 200_000)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "may have at most" in err.value.reason
