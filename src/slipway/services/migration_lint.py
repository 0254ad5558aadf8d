"""``slipway migrations lint``: check migration files against the lint rules, without a database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slipway.config import find_config, load_config
from slipway.errors import MigrationError
from slipway.migrations import Dialect, load_migrations
from slipway.migrations.lint import Finding as Finding  # what a lint report holds, for the CLI
from slipway.migrations.lint import lint_migration
from slipway.model.config import MigrationsSpec

#: The dialects whose rules ``lint`` knows, for a caller to check its input against.
DIALECTS = tuple(d.value for d in Dialect)


@dataclass(frozen=True)
class LintReport:
    """The findings without an override in the migration files of ``directory``."""

    directory: Path
    findings: tuple[Finding, ...]


def lint_directory(directory: Path, *, dialect: str) -> list[Finding]:
    """Lint every migration file of ``directory``; the findings without an override."""
    findings: list[Finding] = []
    for m in load_migrations(directory):
        findings += lint_migration(m, dialect=dialect).findings
    return findings


def lint(directory: Path | None, *, dialect: str, config_path: Path | None = None, cwd: Path | None = None) -> LintReport:
    """Lint ``directory``, or (when None) the ``migrations.directory`` of the project's slipway.yml
    (``config_path``, or found upwards from ``cwd``); MigrationError when it has no migrations section."""
    if directory is None:
        loaded = load_config((config_path or find_config(cwd or Path.cwd())).resolve())
        if loaded.project.migrations is None:
            raise MigrationError(
                "slipway.yml has no 'migrations' section", hint="pass the directory: slipway migrations lint PATH"
            )
        spec = loaded.project.migrations
        if spec.tool == "alembic":
            return LintReport(loaded.root, tuple(lint_alembic(loaded.root, spec, dialect=dialect)))
        if spec.tool != "sql":
            raise MigrationError(
                f"'slipway migrations lint' reads .sql files and Alembic revisions; with tool {spec.tool} the SQL "
                "comes from the tool against the environment's database ("
                + ("manage.py sqlmigrate" if spec.tool == "django" else "migrations.commands.sql")
                + "), so it is linted when a deployment checks the release, before any host changes",
                hint="run 'slipway run' (or deploy to a dev environment): a finding stops it before any host changes",
            )
        assert spec.directory is not None
        directory = loaded.root / spec.directory
    return LintReport(directory, tuple(lint_directory(directory, dialect=dialect)))


def lint_alembic(root: Path, spec: MigrationsSpec, *, dialect: str) -> list[Finding]:
    """Lint the SQL every revision of the Alembic project in ``root`` would execute (offline mode, from the
    first revision, for ``dialect``: no database is touched); the findings without an ``allow``."""
    from slipway.migrations.alembic_tool import AlembicProject, as_migration

    url = "sqlite://" if dialect == Dialect.SQLITE.value else "postgresql+psycopg://"
    project = AlembicProject(root, url, config=spec.alembic_config, script_location=spec.script_location, python=spec.python)
    revisions = project.revisions()
    if not revisions:
        return []
    sql = project.offline_sql(None, revisions[-1].revision)
    findings: list[Finding] = []
    for position, revision in enumerate(revisions, start=1):
        migration = as_migration(revision, sql.get(revision.revision, ""), position=position)
        findings += lint_migration(migration, dialect=dialect).findings
    return findings
