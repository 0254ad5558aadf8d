"""Lint a migration against the rules of :mod:`slipway.migrations.rules`.

Pure: :func:`lint_migration` reads nothing and writes nothing; it parses each statement with sqlglot and
walks the tree. Statements sqlglot does not model (VACUUM, CLUSTER, LOCK, REINDEX, DO) are judged by their
leading keywords instead of being reported as syntax errors. Objects created earlier in the same file are
new and empty, so locking rules do not fire for them (``CREATE TABLE t ...; CREATE INDEX ON t ...`` is
fine).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from slipway.errors import LintError, MigrationError
from slipway.migrations.files import Migration, Override, Phase
from slipway.migrations.rules import RULES
from slipway.migrations.statements import Dialect, Statement, split_statements


class _DropCommandFallback(logging.Filter):
    """Silence sqlglot's 'falling back to Command' notice: a fallback is handled here, not an error.

    Without this every ``ALTER TABLE ... VALIDATE CONSTRAINT`` would print a warning to the user's
    terminal through logging's last-resort handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record except the fallback notice."""
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_DropCommandFallback())

#: Statements sqlglot does not model; judged by keywords.
_OPAQUE = frozenset({"VACUUM", "CLUSTER", "LOCK", "REINDEX", "DO", "CHECKPOINT"})
#: Functions whose value differs per row: as a column default they force a table rewrite.
_VOLATILE_FUNCTIONS = frozenset(
    {
        "clock_timestamp",
        "timeofday",
        "random",
        "gen_random_uuid",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "nextval",
        "txid_current",
        "setseed",
    }
)
_SERIAL_TYPES = frozenset(
    {exp.DataType.Type.SERIAL, exp.DataType.Type.BIGSERIAL, exp.DataType.Type.SMALLSERIAL}
)
_DROPPED_OBJECTS = frozenset({"TABLE", "VIEW", "SCHEMA", "SEQUENCE", "TYPE", "DATABASE"})


@dataclass(frozen=True)
class Finding:
    """One rule broken by one statement."""

    rule: str
    name: str
    message: str
    fix: str
    file: str
    line: int
    statement: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.rule} {self.name}] {self.message}"


@dataclass(frozen=True)
class LintReport:
    """What the linter found in one migration."""

    file: str
    version: int
    #: Findings no override waives: the migration must not run while there are any.
    findings: tuple[Finding, ...] = ()
    #: Findings waived by an override in the file.
    suppressed: tuple[Finding, ...] = ()
    #: The overrides that waived at least one finding: record these with the migration.
    overrides_used: tuple[Override, ...] = ()
    #: Overrides that waived nothing (stale or misplaced).
    unused_overrides: tuple[Override, ...] = ()
    statements: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing blocks the migration."""
        return not self.findings

    def raise_for_findings(self) -> None:
        """Raise LintError for the first blocking finding, listing all of them."""
        if not self.findings:
            return
        first = self.findings[0]
        lines = [f"line {first.line}: {first.message}: {first.statement}"]
        lines += [f"  also {f.rule} {f.name} at line {f.line}: {f.message}" for f in self.findings[1:]]
        raise LintError(
            "\n".join(lines),
            file=self.file,
            rule=first.rule,
            hint=f'{first.fix} If it is safe here, add: -- slipway:allow {first.rule} reason="..."',
        )


@dataclass
class _Context:
    """What the checks of one file share: dialect, phase and the tables the file created so far."""

    dialect: Dialect
    phase: Phase
    created: set[str] = field(default_factory=set)


def lint_migration(migration: Migration, *, dialect: Dialect | str) -> LintReport:
    """Check every statement of ``migration`` against the rules for its phase and ``dialect``."""
    dialect = Dialect(dialect)
    for override in migration.overrides:
        if override.rule not in RULES:
            raise MigrationError(
                f"line {override.line}: override names unknown rule {override.rule}",
                file=migration.path,
                hint="the rules are listed in docs/migrations.md",
            )
    statements = split_statements(migration.sql, dialect=dialect, file=migration.path)
    context = _Context(dialect=dialect, phase=migration.phase)
    found: list[Finding] = []
    for statement in statements:
        for rule_id, message in _check_statement(statement, context, len(statements)):
            rule = RULES[rule_id]
            if rule.applies(migration.phase, dialect):
                found.append(
                    Finding(
                        rule_id,
                        rule.name,
                        message,
                        rule.fix,
                        migration.path,
                        statement.line,
                        statement.short(),
                    )
                )
    waived = {o.rule for o in migration.overrides}
    return LintReport(
        file=migration.path,
        version=migration.version,
        findings=tuple(f for f in found if f.rule not in waived),
        suppressed=tuple(f for f in found if f.rule in waived),
        overrides_used=tuple(o for o in migration.overrides if any(f.rule == o.rule for f in found)),
        unused_overrides=tuple(o for o in migration.overrides if all(f.rule != o.rule for f in found)),
        statements=len(statements),
    )


def _check_statement(statement: Statement, ctx: _Context, count: int) -> Iterator[tuple[str, str]]:
    """Yield (rule id, message) for one statement."""
    if count > 1 and statement.needs_autocommit(ctx.dialect):
        yield "SW022", f"{' '.join(statement.keywords[:4])} cannot run in a transaction"
    if statement.keywords[:1] and statement.keywords[0] in _OPAQUE:
        yield from _check_opaque(statement)
        return
    try:
        tree = cast(exp.Expression, sqlglot.parse_one(statement.text, read=ctx.dialect.value))
    except (ParseError, TokenError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield "SW000", f"statement {statement.index} cannot be parsed ({detail})"
        return
    yield from _check_tree(tree, ctx)


def _check_opaque(statement: Statement) -> Iterator[tuple[str, str]]:
    """Rules for statements judged by their keywords."""
    words = statement.keywords
    if words[0] == "VACUUM" and "FULL" in words:
        yield "SW014", "VACUUM FULL rewrites the table under an exclusive lock"
    elif words[0] == "CLUSTER":
        yield "SW015", "CLUSTER rewrites the table under an exclusive lock"
    elif words[0] == "LOCK":
        yield "SW018", "explicit LOCK TABLE"
    elif words[0] == "REINDEX" and "CONCURRENTLY" not in words:
        yield "SW020", "REINDEX without CONCURRENTLY"


def _check_tree(tree: exp.Expression, ctx: _Context) -> Iterator[tuple[str, str]]:
    """Rules for a parsed statement."""
    if isinstance(tree, exp.Alter) and str(tree.args.get("kind", "")).upper() == "TABLE":
        table = _table_name(tree.this)
        if table not in ctx.created:
            for action in tree.args.get("actions") or []:
                yield from _check_alter_action(action, table, bool(tree.args.get("not_valid")))
    elif isinstance(tree, exp.Create):
        yield from _check_create(tree, ctx)
    elif isinstance(tree, exp.Drop):
        yield from _check_drop(tree, ctx)
    elif isinstance(tree, exp.TruncateTable):
        yield "SW016", "TRUNCATE deletes every row"
    elif isinstance(tree, exp.Delete) and not tree.args.get("where"):
        yield "SW017", f"DELETE FROM {_table_name(tree.this)} has no WHERE"
    elif isinstance(tree, exp.Update) and not tree.args.get("where"):
        yield "SW021", f"UPDATE {_table_name(tree.this)} has no WHERE"


def _check_create(tree: exp.Create, ctx: _Context) -> Iterator[tuple[str, str]]:
    """CREATE TABLE records a new table; CREATE INDEX must be concurrent on existing tables."""
    kind = str(tree.args.get("kind", "")).upper()
    if kind == "TABLE":
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        ctx.created.add(_table_name(target))
    elif kind == "INDEX" and not tree.args.get("concurrently"):
        table = _table_name(tree.this.args.get("table")) if isinstance(tree.this, exp.Index) else ""
        if table not in ctx.created:
            yield "SW008", f"CREATE INDEX on {table or 'a table'} without CONCURRENTLY"


def _check_drop(tree: exp.Drop, ctx: _Context) -> Iterator[tuple[str, str]]:
    """DROP INDEX must be concurrent; dropping other objects breaks the running release."""
    kind = str(tree.args.get("kind", "")).upper()
    names = [_table_name(t) for t in tree.args.get("tables") or []]
    if kind == "INDEX" and not tree.args.get("concurrently"):
        yield "SW009", f"DROP INDEX {', '.join(names)} without CONCURRENTLY"
    elif kind in _DROPPED_OBJECTS and not all(n in ctx.created for n in names):
        what = "MATERIALIZED VIEW" if tree.args.get("materialized") else kind
        yield "SW002", f"drops {what} {', '.join(names)}"


def _check_alter_action(action: exp.Expression, table: str, not_valid: bool) -> Iterator[tuple[str, str]]:
    """Rules for one action of ALTER TABLE on an existing table."""
    if isinstance(action, exp.Drop) and str(action.args.get("kind", "")).upper() == "COLUMN":
        columns = ", ".join(c.name for c in action.args.get("tables") or [])
        yield "SW001", f"drops column {columns} of {table}"
    elif isinstance(action, exp.RenameColumn):
        yield "SW003", f"renames column {action.this.name} of {table} to {action.args['to'].name}"
    elif isinstance(action, exp.AlterRename):
        yield "SW004", f"renames table {table} to {_table_name(action.this)}"
    elif isinstance(action, exp.AlterColumn):
        if action.args.get("dtype"):
            yield "SW005", f"changes the type of {table}.{action.this.name} to {action.args['dtype'].sql()}"
        if action.args.get("allow_null") is False and not action.args.get("drop"):
            yield "SW007", f"sets NOT NULL on {table}.{action.this.name}"
    elif isinstance(action, exp.ColumnDef):
        yield from _check_add_column(action, table)
    elif isinstance(action, exp.AddConstraint):
        for constraint in action.expressions:
            parts = constraint.expressions if isinstance(constraint, exp.Constraint) else [constraint]
            for part in parts:
                yield from _check_constraint(part, table, not_valid)


def _check_constraint(part: exp.Expression, table: str, not_valid: bool) -> Iterator[tuple[str, str]]:
    """Rules for ALTER TABLE ... ADD CONSTRAINT."""
    if isinstance(part, exp.ForeignKey) and not not_valid:
        yield "SW010", f"adds a foreign key to {table} without NOT VALID"
    elif isinstance(part, exp.CheckColumnConstraint) and not not_valid:
        yield "SW011", f"adds a CHECK constraint to {table} without NOT VALID"
    elif isinstance(part, exp.UniqueColumnConstraint):
        yield "SW012", f"adds a UNIQUE constraint to {table} directly"
    elif isinstance(part, exp.PrimaryKey):
        yield "SW013", f"adds a primary key to existing table {table}"


def _check_add_column(column: exp.ColumnDef, table: str) -> Iterator[tuple[str, str]]:
    """Rules for ALTER TABLE ... ADD COLUMN."""
    name = f"{table}.{column.name}"
    kinds = [c.args.get("kind") for c in column.args.get("constraints") or []]
    not_null = any(isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null") for k in kinds)
    defaults = [k.this for k in kinds if isinstance(k, exp.DefaultColumnConstraint)]
    generated = any(
        isinstance(k, exp.ComputedColumnConstraint | exp.GeneratedAsIdentityColumnConstraint) for k in kinds
    )
    data_type = column.args.get("kind")
    serial = isinstance(data_type, exp.DataType) and data_type.this in _SERIAL_TYPES
    if not_null and not defaults and not generated and not serial:
        yield "SW006", f"adds NOT NULL column {name} without a DEFAULT"
    if serial or generated or any(_is_volatile(d) for d in defaults):
        yield "SW019", f"adds column {name} whose default is computed per row"
    for kind in kinds:
        if isinstance(kind, exp.Reference):
            yield "SW010", f"adds column {name} with an inline foreign key (cannot be NOT VALID)"
        elif isinstance(kind, exp.CheckColumnConstraint):
            yield "SW011", f"adds column {name} with an inline CHECK (cannot be NOT VALID)"
        elif isinstance(kind, exp.UniqueColumnConstraint):
            yield "SW012", f"adds column {name} with an inline UNIQUE constraint"
        elif isinstance(kind, exp.PrimaryKeyColumnConstraint):
            yield "SW013", f"adds column {name} as the primary key of an existing table"


def _is_volatile(expression: exp.Expression) -> bool:
    """True when the expression calls a function whose value differs per row."""
    for node in expression.walk():
        if isinstance(node, exp.Rand | exp.Uuid):
            return True
        if isinstance(node, exp.Anonymous) and node.name.lower() in _VOLATILE_FUNCTIONS:
            return True
    return False


def _table_name(table: exp.Expression | None) -> str:
    """``schema.table`` in lower case (unquoted SQL names are case-insensitive)."""
    if not isinstance(table, exp.Table):
        return table.sql().lower() if table is not None else ""
    parts = [p for p in (table.args.get("db"), table.args.get("this")) if p is not None]
    return ".".join(p.name for p in parts).lower()
