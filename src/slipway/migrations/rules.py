"""The catalogue of lint rules: id, name, why it matters, how to fix it, where it applies.

The checks themselves live in :mod:`slipway.migrations.lint`; docs/migrations.md lists the same rules
(a test keeps the two in step). Compatibility rules apply to expand files only: they protect the release
that is still running while the new one rolls out. Locking and data-loss rules apply in every phase: a
table locked for minutes or rows deleted by accident hurt whatever the phase.
"""

from __future__ import annotations

from dataclasses import dataclass

from slipway.migrations.files import Phase
from slipway.migrations.statements import Dialect

_ALL_PHASES = frozenset(Phase)
_EXPAND = frozenset({Phase.EXPAND})
_NOT_MIGRATE = frozenset({Phase.EXPAND, Phase.CONTRACT})
_ALL_DIALECTS = frozenset(Dialect)
_POSTGRES = frozenset({Dialect.POSTGRES})


@dataclass(frozen=True)
class Rule:
    """One lint rule."""

    id: str
    name: str
    why: str
    fix: str
    phases: frozenset[Phase] = _ALL_PHASES
    dialects: frozenset[Dialect] = _ALL_DIALECTS

    def applies(self, phase: Phase, dialect: Dialect) -> bool:
        """True when the rule is checked in a file of ``phase`` for ``dialect``."""
        return phase in self.phases and dialect in self.dialects


_RULES = (
    Rule(
        "SW000",
        "syntax-error",
        "sqlglot cannot parse the statement, so no other rule can check it.",
        "Fix the SQL. If PostgreSQL accepts it and only the parser does not, allow SW000 with a reason: "
        "the statement then runs unlinted.",
    ),
    Rule(
        "SW001",
        "drop-column",
        "The release still running reads or writes the column and fails once it is gone.",
        "Stop using the column in a release first, then drop it in a contract migration.",
        phases=_EXPAND,
    ),
    Rule(
        "SW002",
        "drop-table",
        "Dropping a table, view, schema, sequence or type breaks the release still running that uses it.",
        "Stop using it in a release first, then drop it in a contract migration.",
        phases=_EXPAND,
    ),
    Rule(
        "SW003",
        "rename-column",
        "The release still running uses the old column name and fails as soon as the rename commits.",
        "Add the new column (expand), write both and backfill (migrate), switch reads, then drop the old "
        "column (contract).",
        phases=_EXPAND,
    ),
    Rule(
        "SW004",
        "rename-table",
        "The release still running uses the old table name and fails as soon as the rename commits.",
        "Create the new table, or a view under the old name, write both and backfill, then drop the old "
        "one in a contract migration.",
        phases=_EXPAND,
    ),
    Rule(
        "SW005",
        "change-column-type",
        "Changing a type usually rewrites the table under an ACCESS EXCLUSIVE lock, and the release "
        "still running may not handle the new type.",
        "Add a column of the new type, backfill it in a migrate file, switch the code, drop the old one. "
        "Allow it only for changes PostgreSQL does without a rewrite (e.g. widening varchar).",
    ),
    Rule(
        "SW006",
        "add-not-null-column-without-default",
        "Inserts from the release still running do not set the new column and fail; on a table with "
        "rows the statement fails outright.",
        "Add the column as nullable or with a constant DEFAULT; enforce NOT NULL after the backfill.",
        phases=_EXPAND,
    ),
    Rule(
        "SW007",
        "set-not-null",
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, and the release still "
        "running may still write NULLs.",
        "Add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL "
        "(PostgreSQL 12+ skips the scan) in a contract migration.",
        phases=_EXPAND,
    ),
    Rule(
        "SW008",
        "create-index-non-concurrently",
        "CREATE INDEX blocks every write to the table until the index is built.",
        "Use CREATE INDEX CONCURRENTLY, alone in its migration file (it cannot run in a transaction).",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW009",
        "drop-index-non-concurrently",
        "DROP INDEX takes an ACCESS EXCLUSIVE lock and waits behind every running query on the table.",
        "Use DROP INDEX CONCURRENTLY, alone in its migration file.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW010",
        "foreign-key-without-not-valid",
        "Adding a foreign key checks every row while blocking writes to both tables.",
        "Add it with NOT VALID (only new rows are checked), then run ALTER TABLE ... VALIDATE "
        "CONSTRAINT in a later migration, which does not block writes.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW011",
        "check-constraint-without-not-valid",
        "Adding a CHECK constraint scans every row under an ACCESS EXCLUSIVE lock.",
        "Add it with NOT VALID, then VALIDATE CONSTRAINT in a later migration.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW012",
        "unique-constraint",
        "Adding a UNIQUE constraint builds its index while blocking writes to the table.",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE ... ADD CONSTRAINT name UNIQUE "
        "USING INDEX index_name.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW013",
        "add-primary-key",
        "Adding a primary key to an existing table builds an index and checks NOT NULL under an ACCESS "
        "EXCLUSIVE lock.",
        "CREATE UNIQUE INDEX CONCURRENTLY, then ALTER TABLE ... ADD CONSTRAINT name PRIMARY KEY USING "
        "INDEX index_name.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW014",
        "vacuum-full",
        "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: no reads, no writes until done.",
        "Let autovacuum work, or use pg_repack outside the deployment.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW015",
        "cluster",
        "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock.",
        "Do it in a maintenance window outside the deployment, or use pg_repack.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW016",
        "truncate",
        "TRUNCATE deletes every row and takes an ACCESS EXCLUSIVE lock.",
        "Delete the rows you mean to in a batched migrate file, or drop the table in a contract migration.",
    ),
    Rule(
        "SW017",
        "delete-without-where",
        "DELETE without WHERE deletes every row in one long transaction.",
        "Add the WHERE you mean; for many rows use a batched migrate file.",
    ),
    Rule(
        "SW018",
        "lock-table",
        "An explicit LOCK TABLE blocks the application for as long as the migration runs.",
        "Rely on the locks the statements take themselves; Slipway sets a lock_timeout on each.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW019",
        "add-column-with-volatile-default",
        "A volatile DEFAULT (random(), gen_random_uuid(), clock_timestamp(), nextval(), serial, identity "
        "or a generated column) rewrites the whole table under an ACCESS EXCLUSIVE lock.",
        "Add the column without the default (or with a constant one), set the default with ALTER COLUMN "
        "... SET DEFAULT, and backfill existing rows in a migrate file.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW020",
        "reindex-non-concurrently",
        "REINDEX blocks writes to the table (and reads that use the index) until it finishes.",
        "Use REINDEX ... CONCURRENTLY, alone in its migration file.",
        dialects=_POSTGRES,
    ),
    Rule(
        "SW021",
        "update-without-where",
        "UPDATE without WHERE rewrites every row in one transaction, holding row locks until the end.",
        "Move the backfill into a migrate file, which runs it in committed batches.",
        phases=_NOT_MIGRATE,
    ),
    Rule(
        "SW022",
        "non-transactional-statement-not-alone",
        "A statement that cannot run in a transaction (CONCURRENTLY, VACUUM) makes the whole file run "
        "statement by statement: a failure half way leaves the database half migrated.",
        "Put each such statement in a migration file of its own.",
    ),
)

#: Every rule by id.
RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
