"""slipway.yml's migrations section and per-environment database: valid forms and pointed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.errors import ConfigError
from slipway.migrations import parse_migration
from slipway.services.migrations import parse_directory, with_default_batch_size

pytestmark = pytest.mark.timeout(30)

BASE = """\
name: app
artifact: {{paths: [app, db]}}
migrations:
  directory: db/migrations
{migrations}environments:
  dev:
{env}    targets: [{{kind: local, name: d, path: t}}]
pipeline:
  - {{name: build, kind: build}}
  - {{name: deploy-dev, kind: deploy, environment: dev}}
"""
SECRET_DB = "    secrets: {DATABASE_URL: {env: APP_DB}}\n    database: {secret: DATABASE_URL}\n"


def load(migrations: str = "", env: str = SECRET_DB, text: str | None = None) -> object:
    return parse_config(text or BASE.format(migrations=migrations, env=env), path=Path("/p/slipway.yml"))


def error(**kwargs: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    return info.value


def test_defaults_and_a_secret_database() -> None:
    project = load().project  # type: ignore[attr-defined]
    spec = project.migrations
    assert (spec.directory, spec.contract, spec.batch_size, spec.lock_wait) == ("db/migrations", "auto", 1000, 30)
    assert project.environments["dev"].database.secret == "DATABASE_URL"


def test_unknown_key_in_migrations_gets_did_you_mean_with_position() -> None:
    err = error(migrations="  batchsize: 10\n")
    assert (err.line, err.column, err.key_path) == (5, 3, "migrations.batchsize")
    assert "did you mean 'batch_size'" in err.hint


def test_unknown_key_in_database_gets_did_you_mean() -> None:
    err = error(env="    secrets: {DATABASE_URL: {env: APP_DB}}\n    database: {secrt: DATABASE_URL}\n")
    assert err.key_path == "environments.dev.database.secrt" and "did you mean 'secret'" in err.hint


def test_contract_mode_is_auto_or_manual() -> None:
    err = error(migrations="  contract: sometimes\n")
    assert err.key_path == "migrations.contract" and "auto" in err.hint and "manual" in err.hint


def test_database_secret_must_be_defined() -> None:
    err = error(env="    secrets: {DATABASE_URL: {env: APP_DB}}\n    database: {secret: DATABASE_UR}\n")
    assert err.key_path == "environments.dev.database.secret" and err.line == 8
    assert "did you mean 'DATABASE_URL'" in err.hint


def test_a_password_in_the_url_is_refused() -> None:
    err = error(env='    database: {url: "postgresql://app:hunter2@db/app"}\n')
    assert err.key_path == "environments.dev.database" and "secret" in err.reason


def test_every_environment_needs_a_database_when_migrations_are_set() -> None:
    err = error(env="")
    assert err.key_path == "environments.dev" and "no database" in err.reason


def test_a_database_needs_the_migrations_section() -> None:
    text = BASE.format(migrations="", env=SECRET_DB).replace("migrations:\n  directory: db/migrations\n", "")
    with pytest.raises(ConfigError) as info:
        load(text=text)
    assert info.value.key_path == "environments.dev.database"


def test_directory_stays_inside_the_artifact() -> None:
    text = BASE.format(migrations="", env=SECRET_DB).replace("db/migrations", "../outside")
    with pytest.raises(ConfigError) as info:
        load(text=text)
    assert info.value.key_path == "migrations.directory"


def test_batch_size_default_applies_only_without_an_explicit_size() -> None:
    plain = parse_migration(
        "0002_migrate_x.sql",
        "-- slipway:batch table=t key=id\nUPDATE t SET a = 1 WHERE id BETWEEN :batch_start AND :batch_end;\n",
    )
    sized = parse_migration(
        "0003_migrate_y.sql",
        "-- slipway:batch table=t key=id size=7\nUPDATE t SET a = 1 WHERE id BETWEEN :batch_start AND :batch_end;\n",
    )
    assert with_default_batch_size(plain, 50).batch.size == 50  # type: ignore[union-attr]
    assert with_default_batch_size(sized, 50).batch.size == 7  # type: ignore[union-attr]
    assert with_default_batch_size(plain, 50).checksum == plain.checksum
    ordered = parse_directory(
        {
            "db/m/0003_migrate_y.sql": sized.sql,
            "db/m/0002_migrate_x.sql": plain.sql,
            "db/m/.x.sql": "junk",
            "db/m/README.md": "hi",
        },
        batch_size=9,
    )
    assert [m.version for m in ordered] == [2, 3]
