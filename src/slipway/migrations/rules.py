"""The catalogue of lint rules: id, name, why it matters, how to fix it, where it applies.

The checks themselves live in :mod:`slipway.migrations.lint`; docs/migrations.md lists the same rules
(a test keeps the two in step). Compatibility rules apply to expand files only: they protect the release
that is still running while the new one rolls out. Locking and data-loss rules apply in every phase: a
table locked for minutes or rows deleted by accident hurt whatever the phase.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from slipway.migrations.files import Phase
from slipway.migrations.statements import Dialect

_ALL_PHASES = frozenset(Phase)
_EXPAND = frozenset({Phase.EXPAND})
_NOT_MIGRATE = frozenset({Phase.EXPAND, Phase.CONTRACT})
_ALL_DIALECTS = frozenset(Dialect)
_POSTGRES = frozenset({Dialect.POSTGRES})


#: The page whose per-rule sections (anchor ``#sw008``) each finding links to.
DOCS_PAGE = "docs/migrations.md"
_EXCLUSIVE = "ACCESS EXCLUSIVE"
_ALL_ACCESS = "reads and writes of the table"


class Severity(enum.StrEnum):
    """What a finding means. Both block the migration until fixed or allowed with a reason."""

    #: The linter saw the statement and knows it locks, rewrites, loses data or breaks the running release.
    ERROR = "error"
    #: The linter cannot see what runs (DO block, dynamic SQL): a person must check it and allow it.
    REVIEW = "review"


@dataclass(frozen=True)
class Rule:
    """One lint rule: what it catches, the lock it takes and what that blocks, or what it breaks."""

    id: str
    name: str
    why: str
    fix: str
    phases: frozenset[Phase] = _ALL_PHASES
    dialects: frozenset[Dialect] = _ALL_DIALECTS
    #: The PostgreSQL lock mode the statement takes on the table (None: no lock worth naming).
    lock: str | None = None
    #: What that lock blocks, and for how long.
    blocks: str | None = None
    #: What breaks in the release still running (compatibility rules).
    breaks: str | None = None
    severity: Severity = Severity.ERROR

    def applies(self, phase: Phase, dialect: Dialect) -> bool:
        """True when the rule is checked in a file of ``phase`` for ``dialect``."""
        return phase in self.phases and dialect in self.dialects

    @property
    def docs(self) -> str:
        """The rule's section in the documentation (a stable anchor: the lower-case id)."""
        return f"{DOCS_PAGE}#{self.id.lower()}"


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
        breaks="old code still reads or writes the column: its queries fail with 'column does not exist' "
        "as soon as the drop commits.",
    ),
    Rule(
        "SW002",
        "drop-table",
        "Dropping a table, view, schema, sequence or type breaks the release still running that uses it.",
        "Stop using it in a release first, then drop it in a contract migration.",
        phases=_EXPAND,
        breaks="old code still queries the object: its queries fail with 'relation does not exist'.",
    ),
    Rule(
        "SW003",
        "rename-column",
        "The release still running uses the old column name and fails as soon as the rename commits.",
        "Add the new column (expand), write both and backfill (migrate), switch reads, then drop the old "
        "column (contract).",
        phases=_EXPAND,
        breaks="old code still uses the old name: its queries fail with 'column does not exist' as soon "
        "as the rename commits.",
    ),
    Rule(
        "SW004",
        "rename-table",
        "The release still running uses the old table name and fails as soon as the rename commits.",
        "Create the new table, or a view under the old name, write both and backfill, then drop the old "
        "one in a contract migration.",
        phases=_EXPAND,
        breaks="old code still uses the old table name: its queries fail with 'relation does not exist'.",
    ),
    Rule(
        "SW005",
        "change-column-type",
        "Changing a type usually rewrites the table under an ACCESS EXCLUSIVE lock, and the release "
        "still running may not handle the new type.",
        "Add a column of the new type, backfill it in a migrate file, switch the code, drop the old one. "
        "Allow it only for changes PostgreSQL does without a rewrite (e.g. widening varchar).",
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", for the whole rewrite of the table and its indexes",
        breaks="old code may send or expect values of the old type.",
    ),
    Rule(
        "SW006",
        "add-not-null-column-without-default",
        "Inserts from the release still running do not set the new column and fail; on a table with "
        "rows the statement fails outright.",
        "Add the column as nullable or with a constant DEFAULT; enforce NOT NULL after the backfill.",
        phases=_EXPAND,
        breaks="old code's INSERTs do not set the column and fail with a not-null violation.",
    ),
    Rule(
        "SW007",
        "set-not-null",
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, and the release still "
        "running may still write NULLs.",
        "Add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later migration, then SET NOT NULL "
        "(PostgreSQL 12+ skips the scan) in a contract migration.",
        phases=_EXPAND,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", while every row is scanned",
        breaks="old code that still writes NULL into the column fails.",
    ),
    Rule(
        "SW008",
        "create-index-non-concurrently",
        "CREATE INDEX blocks every write to the table until the index is built.",
        "Use CREATE INDEX CONCURRENTLY, alone in its migration file (it cannot run in a transaction).",
        dialects=_POSTGRES,
        lock="SHARE",
        blocks="writes (INSERT, UPDATE, DELETE) to the table until the index is built; reads go on",
    ),
    Rule(
        "SW009",
        "drop-index-non-concurrently",
        "DROP INDEX takes an ACCESS EXCLUSIVE lock and waits behind every running query on the table.",
        "Use DROP INDEX CONCURRENTLY, alone in its migration file.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + "; it queues behind every running query, and every query after it queues too",
    ),
    Rule(
        "SW010",
        "foreign-key-without-not-valid",
        "Adding a foreign key checks every row while blocking writes to both tables.",
        "Add it with NOT VALID (only new rows are checked), then run ALTER TABLE ... VALIDATE "
        "CONSTRAINT in a later migration, which does not block writes.",
        dialects=_POSTGRES,
        lock="SHARE ROW EXCLUSIVE",
        blocks="writes to the table and to the referenced table while every row is checked",
    ),
    Rule(
        "SW011",
        "check-constraint-without-not-valid",
        "Adding a CHECK constraint scans every row under an ACCESS EXCLUSIVE lock.",
        "Add it with NOT VALID, then VALIDATE CONSTRAINT in a later migration.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", while every row is checked",
    ),
    Rule(
        "SW012",
        "unique-constraint",
        "Adding a UNIQUE constraint builds its index under an ACCESS EXCLUSIVE lock: no reads, no writes.",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE ... ADD CONSTRAINT name UNIQUE "
        "USING INDEX index_name.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", while the unique index is built",
    ),
    Rule(
        "SW013",
        "add-primary-key",
        "Adding a primary key to an existing table builds an index and checks NOT NULL under an ACCESS EXCLUSIVE lock.",
        "CREATE UNIQUE INDEX CONCURRENTLY, then ALTER TABLE ... ADD CONSTRAINT name PRIMARY KEY USING "
        "INDEX index_name.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", while the index is built and every row is checked for NULL",
    ),
    Rule(
        "SW014",
        "vacuum-full",
        "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: no reads, no writes until done.",
        "Let autovacuum work, or use pg_repack outside the deployment.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", for the whole rewrite",
    ),
    Rule(
        "SW015",
        "cluster",
        "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock.",
        "Do it in a maintenance window outside the deployment, or use pg_repack.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", for the whole rewrite",
    ),
    Rule(
        "SW016",
        "truncate",
        "TRUNCATE deletes every row and takes an ACCESS EXCLUSIVE lock.",
        "Delete the rows you mean to in a batched migrate file, or drop the table in a contract migration.",
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + " until the migration commits",
        breaks="every row is gone, for the old release and the new one.",
    ),
    Rule(
        "SW017",
        "delete-without-where",
        "DELETE without WHERE deletes every row in one long transaction.",
        "Add the WHERE you mean; for many rows use a batched migrate file.",
        lock="ROW EXCLUSIVE, and a row lock on every row",
        blocks="writes (UPDATE, DELETE) to every row until the transaction commits",
    ),
    Rule(
        "SW018",
        "lock-table",
        "An explicit LOCK TABLE blocks the application for as long as the migration runs.",
        "Rely on the locks the statements take themselves; Slipway sets a lock_timeout on each.",
        dialects=_POSTGRES,
        lock="the mode it names (ACCESS EXCLUSIVE when none is named)",
        blocks="whatever that mode conflicts with (by default reads and writes of the table) until the "
        "migration commits",
    ),
    Rule(
        "SW019",
        "add-column-with-volatile-default",
        "A volatile DEFAULT (random(), gen_random_uuid(), clock_timestamp(), nextval(), serial, identity "
        "or a generated column) rewrites the whole table under an ACCESS EXCLUSIVE lock.",
        "Add the column without the default (or with a constant one), set the default with ALTER COLUMN "
        "... SET DEFAULT, and backfill existing rows in a migrate file.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", for the whole rewrite",
    ),
    Rule(
        "SW020",
        "reindex-non-concurrently",
        "REINDEX blocks writes to the table (and reads that use the index) until it finishes.",
        "Use REINDEX ... CONCURRENTLY, alone in its migration file.",
        dialects=_POSTGRES,
        lock="SHARE on the table, ACCESS EXCLUSIVE on each index",
        blocks="writes to the table, and reads that use the index, until it finishes",
    ),
    Rule(
        "SW021",
        "update-without-where",
        "UPDATE without WHERE rewrites every row in one transaction, holding row locks until the end.",
        "Move the backfill into a migrate file, which runs it in committed batches.",
        phases=_NOT_MIGRATE,
        lock="ROW EXCLUSIVE, and a row lock on every row",
        blocks="writes (UPDATE, DELETE) to every row until the transaction commits",
    ),
    Rule(
        "SW022",
        "non-transactional-statement-not-alone",
        "A statement that cannot run in a transaction (CONCURRENTLY, VACUUM) makes the whole file run "
        "statement by statement: a failure half way leaves the database half migrated.",
        "Put each such statement in a migration file of its own.",
    ),
    Rule(
        "SW023",
        "exclude-constraint",
        "Adding an EXCLUDE constraint to an existing table builds its index and checks every row under an "
        "ACCESS EXCLUSIVE lock; PostgreSQL allows neither NOT VALID nor USING INDEX for it.",
        "There is no online way: declare it when the table is created, or add it in a maintenance window "
        "(allow SW023 with a reason, e.g. the table is small).",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", while the index is built and every row is checked",
    ),
    Rule(
        "SW024",
        "drop-default",
        "The release still running inserts rows without the column and relies on its default.",
        "Drop the default in a contract migration, once no release that relies on it runs.",
        phases=_EXPAND,
        breaks="old code's INSERTs that leave the column out get NULL instead of the default, or fail "
        "with a not-null violation.",
    ),
    Rule(
        "SW025",
        "drop-constraint",
        "The release still running may rely on the constraint: to reject bad rows, or as the target of "
        "INSERT ... ON CONFLICT.",
        "Drop it in a contract migration, once no release that relies on it runs.",
        phases=_EXPAND,
        breaks="old code's INSERT ... ON CONFLICT on it fails ('no unique or exclusion constraint "
        "matching'), and rows it counted on being refused are accepted.",
    ),
    Rule(
        "SW026",
        "rename-enum-value",
        "The release still running writes and compares the old label of the enum.",
        "ALTER TYPE ... ADD VALUE the new label (expand), write it, backfill the rows, stop using the old "
        "label; leave it, or recreate the type in a contract migration.",
        phases=_EXPAND,
        dialects=_POSTGRES,
        breaks="old code still writes the old label: its writes fail with 'invalid input value for enum', "
        "and its comparisons with the old label match nothing.",
    ),
    Rule(
        "SW027",
        "set-logged-unlogged",
        "SET LOGGED / SET UNLOGGED rewrites the whole table (SET LOGGED also writes it all to the WAL) "
        "under an ACCESS EXCLUSIVE lock.",
        "Create the table with the persistence it needs; change an existing one in a maintenance window.",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks=_ALL_ACCESS + ", for the whole rewrite",
    ),
    Rule(
        "SW028",
        "refresh-materialized-view-non-concurrently",
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY holds an ACCESS EXCLUSIVE lock on the view for "
        "the whole refresh.",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY (the view needs a unique index on plain columns).",
        dialects=_POSTGRES,
        lock=_EXCLUSIVE,
        blocks="reads (and refreshes) of the materialized view, for the whole refresh",
    ),
    Rule(
        "SW029",
        "not-linted",
        "The linter cannot see the statements a DO block runs, nor the SQL that EXECUTE builds at run "
        "time: they may take any lock or break the release still running.",
        "Check by hand each statement it runs against the rules (which lock, for how long, what the "
        "running release still uses), or write them as plain statements the linter checks; then allow "
        "SW029 with a reason saying what you checked.",
        dialects=_POSTGRES,
        severity=Severity.REVIEW,
    ),
)

#: Every rule by id.
RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
