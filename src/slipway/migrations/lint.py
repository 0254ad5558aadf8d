"""Lint a migration against the rules of :mod:`slipway.migrations.rules`.

Pure: :func:`lint_migration` reads nothing and writes nothing; it parses each statement with sqlglot and
walks the tree. Statements sqlglot does not model (VACUUM, CLUSTER, LOCK, REINDEX, DO) are judged by their
leading keywords instead of being reported as syntax errors. Objects created earlier in the same file are
new and empty, so locking rules do not fire for them (``CREATE TABLE t ...; CREATE INDEX ON t ...`` is
fine).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import NamedTuple, cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from slipway.errors import LintError, MigrationError
from slipway.migrations.files import Migration, Override, Phase
from slipway.migrations.rules import RULES, Rule, Severity
from slipway.migrations.statements import (
    Dialect,
    Statement,
    body_commands,
    do_body,
    named_object,
    routine_bodies,
    split_statements,
)


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
_OPAQUE = frozenset({"VACUUM", "CLUSTER", "LOCK", "REINDEX", "DO", "CHECKPOINT", "REFRESH"})
# Where the name of the object comes in statements judged by their text.
_REFRESH_PREFIX = r"REFRESH\s+MATERIALIZED\s+VIEW(?:\s+CONCURRENTLY)?"
_ROUTINE_PREFIX = r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)"
_ALTER_TYPE_PREFIX = r"ALTER\s+TYPE"
_ALTER_TABLE_PREFIX = r"ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?"
_RENAME_VALUE = re.compile(r"\bRENAME\s+VALUE\b", re.IGNORECASE)
_ADD_CONSTRAINT = re.compile(r"\bADD\s+CONSTRAINT\s+(\w+|\"[^\"]+\")", re.IGNORECASE)
_ADD_EXCLUDE = re.compile(r"\bADD\s+(?:CONSTRAINT\s+(?:\w+|\"[^\"]+\")\s+)?EXCLUDE\b", re.IGNORECASE)
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
    """One rule broken by one statement, with why it matters: the lock and what it blocks, or what breaks."""

    rule: str
    name: str
    message: str
    fix: str
    file: str
    line: int
    statement: str
    severity: str = Severity.ERROR.value
    #: The PostgreSQL lock mode the statement takes (None when the rule is not about a lock).
    lock: str | None = None
    #: What that lock blocks, and for how long.
    blocks: str | None = None
    #: What breaks in the release still running.
    breaks: str | None = None
    why: str = ""
    #: The rule's section in the docs, e.g. ``docs/migrations.md#sw008``.
    docs: str = ""
    #: The table (or index, view) the lock is taken on, when the statement names one.
    table: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.rule} {self.name}] {self.message}"

    @property
    def consequence(self) -> str:
        """Why it matters, in one line: the lock and what it blocks, what breaks, or the rule's reason."""
        if self.lock:
            on = f" on {self.table}" if self.table else ""
            return f"takes a {self.lock} lock{on}, blocks {self.blocks}"
        if self.breaks:
            return f"breaks the release still running: {self.breaks}"
        return self.why

    def as_dict(self) -> dict[str, str | int | None]:
        """The finding as JSON-ready data (``slipway migrations lint --json``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
        lines = [f"line {first.line}: {first.message}: {first.statement}", f"  {first.consequence}"]
        lines += [
            f"  also {f.rule} {f.name} at line {f.line}: {f.message} ({f.consequence})" for f in self.findings[1:]
        ]
        raise LintError(
            "\n".join(lines),
            file=self.file,
            rule=first.rule,
            hint=f'{first.fix} See {first.docs}. If it is safe here, add: -- slipway:allow {first.rule} reason="..."',
        )


class _Hit(NamedTuple):
    """What a check found: the rule, the message, the object locked, and a fix when it differs from the rule's."""

    rule: str
    message: str
    table: str | None = None
    fix: str | None = None


@dataclass
class _Context:
    """What the checks of one file share: dialect, phase and the tables the file created so far."""

    dialect: Dialect
    phase: Phase
    created: set[str] = field(default_factory=set)
    #: (table, constraint) the file adds: dropping such a constraint replaces it rather than removing it.
    readded: frozenset[tuple[str, str]] = frozenset()


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
    context = _Context(dialect=dialect, phase=migration.phase, readded=_constraints_added(statements))
    found: list[Finding] = []
    for statement in statements:
        for hit in _check_statement(statement, context, len(statements)):
            rule = RULES[hit.rule]
            if rule.applies(migration.phase, dialect):
                found.append(_finding(rule, hit, migration.path, statement))
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


def _finding(rule: Rule, hit: _Hit, file: str, statement: Statement) -> Finding:
    """The finding for ``hit``: the rule's lock, what it blocks or breaks, and its docs anchor."""
    return Finding(
        hit.rule,
        rule.name,
        hit.message,
        hit.fix or rule.fix,
        file,
        statement.line,
        statement.short(),
        severity=rule.severity.value,
        lock=rule.lock,
        blocks=rule.blocks,
        breaks=rule.breaks,
        why=rule.why,
        docs=rule.docs,
        table=hit.table or None,
    )


def _check_statement(statement: Statement, ctx: _Context, count: int) -> Iterator[_Hit]:
    """Yield what one statement breaks."""
    if count > 1 and statement.needs_autocommit(ctx.dialect):
        yield _Hit("SW022", f"{' '.join(statement.keywords[:4])} cannot run in a transaction")
    if statement.keywords[:1] and statement.keywords[0] in _OPAQUE:
        yield from _check_opaque(statement, ctx)
        return
    yield from _check_routine(statement)
    try:
        tree = cast(exp.Expression, sqlglot.parse_one(statement.text, read=ctx.dialect.value))
    except (ParseError, TokenError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield _Hit("SW000", f"statement {statement.index} cannot be parsed ({detail})")
        return
    if isinstance(tree, exp.Command):  # sqlglot's fallback: judged by the statement's words instead
        yield from _check_command(statement, ctx)
    else:
        yield from _check_tree(tree, ctx)


def _check_opaque(statement: Statement, ctx: _Context) -> Iterator[_Hit]:
    """Rules for statements judged by their keywords."""
    words = statement.keywords
    if words[0] == "VACUUM" and "FULL" in words:
        yield _Hit("SW014", "VACUUM FULL rewrites the table under an exclusive lock")
    elif words[0] == "CLUSTER":
        yield _Hit("SW015", "CLUSTER rewrites the table under an exclusive lock")
    elif words[0] == "LOCK":
        yield _Hit("SW018", "explicit LOCK TABLE")
    elif words[0] == "REINDEX" and "CONCURRENTLY" not in words:
        yield _Hit("SW020", "REINDEX without CONCURRENTLY")
    elif words[0] == "DO":
        yield from _check_do(statement)
    elif statement.starts_with("REFRESH", "MATERIALIZED", "VIEW") and "CONCURRENTLY" not in words[:4]:
        view = named_object(statement.text, after=_REFRESH_PREFIX)
        if view not in ctx.created:
            yield _Hit("SW028", f"REFRESH MATERIALIZED VIEW {view} without CONCURRENTLY", table=view)


def _check_do(statement: Statement) -> Iterator[_Hit]:
    """A DO block that runs commands: the linter cannot check them, so it says so."""
    commands = body_commands(do_body(statement.text))
    if not commands:  # only queries, RAISE, assignments and control flow: nothing to lint
        return
    listed = ", ".join(commands)
    if "EXECUTE" in commands:
        yield _Hit("SW029", f"DO block runs dynamic SQL (EXECUTE) built at run time, and {listed}: not linted")
    else:
        yield _Hit("SW029", f"DO block runs {listed}: the statements inside it are not linted")


def _check_routine(statement: Statement) -> Iterator[_Hit]:
    """A function or procedure whose body runs dynamic SQL: nobody can lint what EXECUTE will run."""
    words = [w for w in statement.keywords[:4] if w not in ("OR", "REPLACE")]
    if words[:1] != ["CREATE"] or words[1:2] not in (["FUNCTION"], ["PROCEDURE"]):
        return
    if any("EXECUTE" in body_commands(body) for body in routine_bodies(statement.text)):
        name = named_object(statement.text, after=_ROUTINE_PREFIX)
        yield _Hit(
            "SW029", f"{words[1]} {name} runs dynamic SQL (EXECUTE): not linted, here or wherever it is called"
        )


def _check_command(statement: Statement, ctx: _Context) -> Iterator[_Hit]:
    """Rules for statements sqlglot parses only as a generic command."""
    text = statement.text
    if statement.starts_with("ALTER", "TYPE") and _RENAME_VALUE.search(text):
        type_name = named_object(text, after=_ALTER_TYPE_PREFIX)
        yield _Hit("SW026", f"renames a value of enum {type_name}", table=type_name)
    elif statement.starts_with("ALTER", "TABLE") and _ADD_EXCLUDE.search(text):
        table = named_object(text, after=_ALTER_TABLE_PREFIX)
        if table not in ctx.created:
            yield _Hit("SW023", f"adds an EXCLUDE constraint to existing table {table}", table=table)


def _check_tree(tree: exp.Expression, ctx: _Context) -> Iterator[_Hit]:
    """Rules for a parsed statement."""
    if isinstance(tree, exp.Alter) and str(tree.args.get("kind", "")).upper() == "TABLE":
        table = _table_name(tree.this)
        if table not in ctx.created:
            for action in tree.args.get("actions") or []:
                if _replaces_constraint(action, table, ctx):
                    continue
                for hit in _check_alter_action(action, table, bool(tree.args.get("not_valid"))):
                    yield hit._replace(table=hit.table or table)
    elif isinstance(tree, exp.Create):
        yield from _check_create(tree, ctx)
    elif isinstance(tree, exp.Drop):
        yield from _check_drop(tree, ctx)
    elif isinstance(tree, exp.TruncateTable):
        names = ", ".join(_table_name(t) for t in tree.expressions)
        yield _Hit("SW016", "TRUNCATE deletes every row", table=names)
    elif isinstance(tree, exp.Delete) and not tree.args.get("where"):
        yield _Hit("SW017", f"DELETE FROM {_table_name(tree.this)} has no WHERE", table=_table_name(tree.this))
    elif isinstance(tree, exp.Update) and not tree.args.get("where"):
        yield _Hit("SW021", f"UPDATE {_table_name(tree.this)} has no WHERE", table=_table_name(tree.this))


def _check_create(tree: exp.Create, ctx: _Context) -> Iterator[_Hit]:
    """CREATE TABLE records a new table; CREATE INDEX must be concurrent on existing tables."""
    kind = str(tree.args.get("kind", "")).upper()
    if kind == "TABLE" or (kind == "VIEW" and _is_materialized(tree)):
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        ctx.created.add(_table_name(target))
    elif kind == "INDEX" and not tree.args.get("concurrently"):
        table = _table_name(tree.this.args.get("table")) if isinstance(tree.this, exp.Index) else ""
        if table in ctx.created:
            return
        if tree.args.get("unique"):  # the fix must keep the index unique
            fix = "Use CREATE UNIQUE INDEX CONCURRENTLY, alone in its migration file (it cannot run in a transaction)."
            yield _Hit("SW008", f"CREATE UNIQUE INDEX on {table or 'a table'} without CONCURRENTLY", table, fix)
        else:
            yield _Hit("SW008", f"CREATE INDEX on {table or 'a table'} without CONCURRENTLY", table)


def _check_drop(tree: exp.Drop, ctx: _Context) -> Iterator[_Hit]:
    """DROP INDEX must be concurrent; dropping other objects breaks the running release."""
    kind = str(tree.args.get("kind", "")).upper()
    names = [_table_name(t) for t in tree.args.get("tables") or []]
    if kind == "INDEX" and not tree.args.get("concurrently"):
        yield _Hit("SW009", f"DROP INDEX {', '.join(names)} without CONCURRENTLY", ", ".join(names))
    elif kind in _DROPPED_OBJECTS and not all(n in ctx.created for n in names):
        what = "MATERIALIZED VIEW" if tree.args.get("materialized") else kind
        yield _Hit("SW002", f"drops {what} {', '.join(names)}")


def _check_alter_action(action: exp.Expression, table: str, not_valid: bool) -> Iterator[_Hit]:
    """Rules for one action of ALTER TABLE on an existing table."""
    if isinstance(action, exp.Drop) and str(action.args.get("kind", "")).upper() == "COLUMN":
        columns = ", ".join(c.name for c in action.args.get("tables") or [])
        yield _Hit("SW001", f"drops column {columns} of {table}")
    elif isinstance(action, exp.RenameColumn):
        yield _Hit("SW003", f"renames column {action.this.name} of {table} to {action.args['to'].name}")
    elif isinstance(action, exp.AlterRename):
        yield _Hit("SW004", f"renames table {table} to {_table_name(action.this)}")
    elif isinstance(action, exp.AlterColumn):
        if action.args.get("dtype"):
            yield _Hit("SW005", f"changes the type of {table}.{action.this.name} to {action.args['dtype'].sql()}")
        if action.args.get("allow_null") is False and not action.args.get("drop"):
            yield _Hit("SW007", f"sets NOT NULL on {table}.{action.this.name}")
        if action.args.get("drop") and action.args.get("allow_null") is None:
            yield _Hit("SW024", f"drops the default of {table}.{action.this.name}")
    elif isinstance(action, exp.Drop) and str(action.args.get("kind", "")).upper() == "CONSTRAINT":
        names = ", ".join(c.name for c in action.args.get("tables") or [])
        yield _Hit("SW025", f"drops constraint {names} of {table}")
    elif isinstance(action, exp.AlterSet) and action.text("option").upper() in ("LOGGED", "UNLOGGED"):
        yield _Hit("SW027", f"SET {action.text('option').upper()} rewrites {table}")
    elif isinstance(action, exp.ColumnDef):
        yield from _check_add_column(action, table)
    elif isinstance(action, exp.AddConstraint):
        for constraint in action.expressions:
            parts = constraint.expressions if isinstance(constraint, exp.Constraint) else [constraint]
            for part in parts:
                yield from _check_constraint(part, table, not_valid)


def _check_constraint(part: exp.Expression, table: str, not_valid: bool) -> Iterator[_Hit]:
    """Rules for ALTER TABLE ... ADD CONSTRAINT."""
    if isinstance(part, exp.ForeignKey) and not not_valid:
        yield _Hit("SW010", f"adds a foreign key to {table} without NOT VALID")
    elif isinstance(part, exp.CheckColumnConstraint) and not not_valid:
        yield _Hit("SW011", f"adds a CHECK constraint to {table} without NOT VALID")
    elif isinstance(part, exp.UniqueColumnConstraint):
        yield _Hit("SW012", f"adds a UNIQUE constraint to {table} directly")
    elif isinstance(part, exp.PrimaryKey):
        yield _Hit("SW013", f"adds a primary key to existing table {table}")
    elif isinstance(part, exp.ExcludeColumnConstraint):
        yield _Hit("SW023", f"adds an EXCLUDE constraint to existing table {table}")


def _check_add_column(column: exp.ColumnDef, table: str) -> Iterator[_Hit]:
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
        yield _Hit("SW006", f"adds NOT NULL column {name} without a DEFAULT")
    if serial or generated or any(_is_volatile(d) for d in defaults):
        yield _Hit("SW019", f"adds column {name} whose default is computed per row")
    for kind in kinds:
        if isinstance(kind, exp.Reference):
            yield _Hit("SW010", f"adds column {name} with an inline foreign key (cannot be NOT VALID)")
        elif isinstance(kind, exp.CheckColumnConstraint):
            yield _Hit("SW011", f"adds column {name} with an inline CHECK (cannot be NOT VALID)")
        elif isinstance(kind, exp.UniqueColumnConstraint):
            yield _Hit("SW012", f"adds column {name} with an inline UNIQUE constraint")
        elif isinstance(kind, exp.PrimaryKeyColumnConstraint):
            yield _Hit("SW013", f"adds column {name} as the primary key of an existing table")


def _is_volatile(expression: exp.Expression) -> bool:
    """True when the expression calls a function whose value differs per row."""
    for node in expression.walk():
        if isinstance(node, exp.Rand | exp.Uuid):
            return True
        if isinstance(node, exp.Anonymous) and node.name.lower() in _VOLATILE_FUNCTIONS:
            return True
    return False


def _constraints_added(statements: tuple[Statement, ...]) -> frozenset[tuple[str, str]]:
    """Every (table, constraint name) that an ALTER TABLE ... ADD CONSTRAINT of the file adds."""
    added: set[tuple[str, str]] = set()
    for statement in statements:
        if statement.starts_with("ALTER", "TABLE"):
            table = named_object(statement.text, after=_ALTER_TABLE_PREFIX)
            added |= {(table, name.replace('"', "").lower()) for name in _ADD_CONSTRAINT.findall(statement.text)}
    return frozenset(added)


def _replaces_constraint(action: exp.Expression, table: str, ctx: _Context) -> bool:
    """True for DROP CONSTRAINT of constraints the same file adds again (how expand loosens a CHECK)."""
    if not isinstance(action, exp.Drop) or str(action.args.get("kind", "")).upper() != "CONSTRAINT":
        return False
    names = [c.name.lower() for c in action.args.get("tables") or []]
    return bool(names) and all((table, name) in ctx.readded for name in names)


def _is_materialized(tree: exp.Create) -> bool:
    """True for CREATE MATERIALIZED VIEW."""
    properties = tree.args.get("properties")
    return properties is not None and any(isinstance(p, exp.MaterializedProperty) for p in properties.expressions)


def _table_name(table: exp.Expression | None) -> str:
    """``schema.table`` in lower case (unquoted SQL names are case-insensitive)."""
    if not isinstance(table, exp.Table):
        return table.sql().lower() if table is not None else ""
    parts = [p for p in (table.args.get("db"), table.args.get("this")) if p is not None]
    return ".".join(p.name for p in parts).lower()
