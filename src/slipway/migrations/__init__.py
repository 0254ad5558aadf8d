"""Database migrations for the parallel-change pattern: expand, migrate (batched backfill), contract.

- :mod:`.files`: find and parse migration files (naming, phase, overrides, batch headers, checksums).
- :mod:`.lint`: pure checks of each statement against the rules in :mod:`.rules`.
- :mod:`.runner`: apply them to PostgreSQL or SQLite under a lock, with a history table.

docs/migrations.md describes the file format, the rules and the runner's guarantees.
"""

import importlib
from typing import TYPE_CHECKING

from slipway.migrations.files import (
    BatchSpec,
    Migration,
    Override,
    Phase,
    checksum,
    load_migrations,
    order_migrations,
    parse_filename,
    parse_migration,
)
from slipway.migrations.results import BatchProgress, MigrationResult, MigrationState, MigrationStatus
from slipway.migrations.rules import RULES, Rule
from slipway.migrations.statements import Dialect, Statement, split_statements

if TYPE_CHECKING:
    from slipway.migrations.lint import Finding, LintReport, lint_migration
    from slipway.migrations.runner import MigrationRunner

#: Names whose modules import sqlglot's parser: loaded on first use, so that importing the package (every
#: CLI start does) does not cost half a second.
_LAZY = {
    "Finding": "slipway.migrations.lint",
    "LintReport": "slipway.migrations.lint",
    "lint_migration": "slipway.migrations.lint",
    "MigrationRunner": "slipway.migrations.runner",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "RULES",
    "BatchProgress",
    "BatchSpec",
    "Dialect",
    "Finding",
    "LintReport",
    "Migration",
    "MigrationResult",
    "MigrationRunner",
    "MigrationState",
    "MigrationStatus",
    "Override",
    "Phase",
    "Rule",
    "Statement",
    "checksum",
    "lint_migration",
    "load_migrations",
    "order_migrations",
    "parse_filename",
    "parse_migration",
    "split_statements",
]
