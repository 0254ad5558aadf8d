"""Split a migration's SQL into statements with their original text, line and leading keywords.

The text we run is the text the author wrote, cut at top-level semicolons: never SQL regenerated from a
parse tree, which could differ from what was reviewed. sqlglot's tokenizer does the cutting, so
semicolons inside strings, quoted identifiers, comments and PostgreSQL dollar-quoted bodies are not
mistaken for statement ends.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from slipway.errors import MigrationError


class Dialect(enum.StrEnum):
    """The databases whose SQL Slipway lints and runs."""

    POSTGRES = "postgres"
    SQLITE = "sqlite"


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a migration file, as written."""

    #: 1-based position of the statement in its file.
    index: int
    #: 1-based line of the statement's first token.
    line: int
    #: The statement's text without the terminating semicolon and without leading comments.
    text: str
    #: The first few words, upper-cased (``("CREATE", "UNIQUE", "INDEX", "CONCURRENTLY")``).
    keywords: tuple[str, ...]

    def starts_with(self, *words: str) -> bool:
        """True when the statement's leading keywords are ``words``."""
        return self.keywords[: len(words)] == tuple(w.upper() for w in words)

    def short(self, limit: int = 120) -> str:
        """The text on one line, shortened for messages."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= limit else flat[: limit - 3] + "..."

    def needs_autocommit(self, dialect: Dialect) -> bool:
        """True for statements the database refuses to run inside a transaction block."""
        if self.starts_with("VACUUM"):
            return True
        if dialect is not Dialect.POSTGRES:
            return False
        head = self.keywords
        concurrently = "CONCURRENTLY" in head[:5]
        if concurrently and (self.starts_with("CREATE") or self.starts_with("DROP")):
            return "INDEX" in head[:3]
        if concurrently and self.starts_with("REINDEX"):
            return True
        return (
            self.starts_with("CREATE", "DATABASE")
            or self.starts_with("DROP", "DATABASE")
            or self.starts_with("ALTER", "SYSTEM")
        )


_KEYWORD_COUNT = 8


def split_statements(sql: str, *, dialect: Dialect | str, file: str = "") -> tuple[Statement, ...]:
    """Cut ``sql`` into statements; raises MigrationError (naming ``file``) if it cannot be tokenized."""
    import sqlglot  # imported here: it is half a second of every CLI start, and most commands never parse SQL
    from sqlglot.errors import TokenError

    dialect = Dialect(dialect)
    try:
        tokens = sqlglot.tokenize(sql, read=dialect.value)
    except TokenError as exc:
        raise MigrationError(
            f"SQL cannot be tokenized ({_first_line(exc)}): an unterminated string, quoted name or comment?",
            file=file,
        ) from exc
    statements: list[Statement] = []
    current: list[Any] = []
    for token in [*tokens, None]:
        if token is None or token.token_type.name == "SEMICOLON":
            if current:
                statements.append(_statement(sql, current, len(statements) + 1))
            current = []
        else:
            current.append(token)
    return tuple(statements)


def _statement(sql: str, tokens: list[Any], index: int) -> Statement:
    """Build a Statement from its tokens, keeping the original text between first and last token."""
    text = sql[tokens[0].start : tokens[-1].end + 1]
    return Statement(index=index, line=tokens[0].line, text=text, keywords=leading_keywords(text))


# Words outside strings, quoted names and comments. Not sqlglot's tokens: for statements it does not
# model (VACUUM, LOCK ...) its tokenizer returns the rest of the statement as one string.
_SKIP_OR_WORD = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\$([A-Za-z_]*)\$.*?\$\1\$"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)",
    re.DOTALL,
)


def leading_keywords(text: str, count: int = _KEYWORD_COUNT) -> tuple[str, ...]:
    """The first ``count`` bare words of ``text``, upper-cased."""
    words: list[str] = []
    for match in _SKIP_OR_WORD.finditer(text):
        if match["word"]:
            words.append(match["word"].upper())
            if len(words) == count:
                break
    return tuple(words)


def _first_line(exc: Exception) -> str:
    """The first line of an exception's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_DOLLAR_QUOTED = re.compile(r"\$([A-Za-z_]*)\$(.*?)\$\1\$", re.DOTALL)
_SINGLE_QUOTED = re.compile(r"'((?:[^']|'')*)'", re.DOTALL)
#: Commands that a DO block or a function body may run and the lint rules would judge at top level
#: (CREATE only as CREATE [UNIQUE] INDEX: creating a new table, type or function breaks no rule).
_LINTED_COMMANDS = (
    "ALTER",
    "CREATE INDEX",
    "DROP",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "LOCK",
    "VACUUM",
    "CLUSTER",
    "REINDEX",
    "REFRESH",
    "EXECUTE",
)
# A command starts a PL/pgSQL statement: first after a semicolon, or after one of these words.
_STATEMENT_STARTS = frozenset({"BEGIN", "THEN", "ELSE", "LOOP"})
# EXECUTE after these is CREATE TRIGGER's ``EXECUTE FUNCTION``, not dynamic SQL.
_NOT_DYNAMIC = frozenset({"ROW", "STATEMENT"})


def dollar_bodies(text: str) -> list[str]:
    """The contents of the dollar-quoted strings of ``text`` (function and DO bodies), outermost only."""
    return [match[2] for match in _DOLLAR_QUOTED.finditer(text)]


def do_body(text: str) -> str:
    """The code of a ``DO [LANGUAGE l] body`` statement: its dollar-quoted or single-quoted string."""
    bodies = routine_bodies(text)
    return bodies[0] if bodies else ""


def routine_bodies(text: str) -> list[str]:
    """The code a DO, CREATE FUNCTION or CREATE PROCEDURE statement holds: its dollar-quoted strings, or
    (for the old ``AS '...'`` spelling) its single-quoted ones, unescaped."""
    return dollar_bodies(text) or [body.replace("''", "'") for body in _SINGLE_QUOTED.findall(text)]


def body_commands(body: str) -> list[str]:
    """The commands a PL/pgSQL body runs that the lint rules judge (``["ALTER", "EXECUTE"]``), in order.

    Words in strings, quoted names and comments do not count, nor words inside another statement
    (``SELECT ... FOR UPDATE``, ``ALTER TABLE ... DROP COLUMN``); EXECUTE (dynamic SQL) counts anywhere.
    """
    code = _SKIP_OR_WORD.sub(lambda m: m[0] if m["word"] else " ", body)
    found: list[str] = []
    for piece in code.split(";"):
        words = leading_keywords(piece, count=100_000)
        for i, word in enumerate(words):
            previous = words[i - 1] if i else ""
            starts = not previous or previous in _STATEMENT_STARTS
            dynamic = word == "EXECUTE" and previous not in _NOT_DYNAMIC
            if word == "CREATE" and {"INDEX", "UNIQUE"} & set(words[i + 1 : i + 2]):
                word = "CREATE INDEX"
            if (dynamic or (starts and word in _LINTED_COMMANDS)) and word not in found:
                found.append(word)
    return found


def named_object(text: str, *, after: str) -> str:
    """The (schema-qualified) name that follows the regular expression ``after`` in ``text``, lower-cased."""
    match = re.search(after + r"\s+((?:\w+|\"[^\"]+\")(?:\.(?:\w+|\"[^\"]+\"))?)", text, re.IGNORECASE)
    return match[1].replace('"', "").lower() if match else ""
