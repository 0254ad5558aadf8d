"""Any migration tool, driven by the commands slipway.yml gives (``migrations: {tool: command}``).

Each command runs with ``sh -c`` in the release's extracted files, with what hooks get (the environment's
secrets, SLIPWAY_ENVIRONMENT, SLIPWAY_RELEASE_ID), ``SLIPWAY_APP_DATABASE_URL`` (the environment's
database) and PGOPTIONS with the lock and statement timeouts:

- ``list`` prints the release's migrations in the order they apply, one a line: ``ID [PHASE [NAME...]]``
  (PHASE: expand, the default, migrate or contract; blank lines and ``#`` comments are skipped);
- ``head`` prints the id of the last migration applied to the database on its last line (lines before it,
  a tool's log, are ignored; an empty last line or no output: nothing is applied yet);
- ``apply`` applies the migrations up to and including ``$SLIPWAY_MIGRATION``;
- ``sql`` (optional) prints the SQL ``$SLIPWAY_MIGRATION`` would execute, for the linter.

The migrations are one line of history, in the order ``list`` prints them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slipway.errors import MigrationError
from slipway.migrations.files import Phase
from slipway.migrations.framework import Revision, ToolState, ToolWords, pg_options
from slipway.model.config import MigrationCommands

COMMAND = ToolWords(
    "",
    "migration",
    "the migrations listed by migrations.commands.list",
    "the tool cannot upgrade from a migration it does not know",
    source="migrations.commands.sql",
)
#: What the commands get: the environment's database, and the migration to apply or print.
DATABASE_VARIABLE = "SLIPWAY_APP_DATABASE_URL"
TARGET_VARIABLE = "SLIPWAY_MIGRATION"


def parse_listing(text: str, *, where: str = "migrations.commands.list") -> tuple[Revision, ...]:
    """The migrations a ``list`` command printed, each after the one before it; MigrationError naming the
    line for a bad phase or an id listed twice."""
    revisions: list[Revision] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        phase = Phase.EXPAND
        if len(fields) > 1:
            try:
                phase = Phase(fields[1].lower())
            except ValueError:
                raise MigrationError(
                    f"line {number} of its output, {line.strip()!r}: {fields[1]!r} is not a phase",
                    file=where,
                    hint="print one migration a line: ID [PHASE [NAME]], PHASE one of expand, migrate, contract",
                ) from None
        if any(r.revision == fields[0] for r in revisions):
            raise MigrationError(f"line {number} of its output lists {fields[0]} a second time", file=where)
        down = revisions[-1].revision if revisions else None
        revisions.append(Revision(fields[0], down, "", " ".join(fields[2:]), phase))
    return tuple(revisions)


@dataclass(frozen=True)
class CommandProject:
    """The release extracted to ``root``, its migrations driven by ``commands``."""

    root: Path
    url: str
    commands: MigrationCommands
    environ: Mapping[str, str] | None = None
    lock_timeout: float = 5.0
    statement_timeout: float = 600.0
    timeout: float = 900.0

    words = COMMAND

    def revisions(self) -> tuple[Revision, ...]:
        """The release's migrations, as ``list`` prints them."""
        assert self.commands.list is not None
        return parse_listing(self._run("list", self.commands.list))

    def read(self) -> ToolState:
        """The release's migrations and the database's head: ``head``'s last line (empty: none applied)."""
        assert self.commands.head is not None
        out = self._run("head", self.commands.head)
        last = out.removesuffix("\n").rsplit("\n", 1)[-1].strip()
        return ToolState(self.revisions(), last or None)

    def apply(self, revision: Revision) -> str:
        """``apply`` with SLIPWAY_MIGRATION set to the revision."""
        assert self.commands.apply is not None
        self._run("apply", self.commands.apply, target=revision.revision)
        return self.command(revision)

    def command(self, revision: Revision) -> str:
        """What applying ``revision`` runs, for the step's record."""
        return f"{TARGET_VARIABLE}={revision.revision} {self.commands.apply}"

    def pending_sql(self, head: str | None, pending: Sequence[Revision]) -> dict[str, str]:
        """``sql`` of each pending migration; MigrationError when there is no ``sql`` command."""
        if self.commands.sql is None:
            raise MigrationError("migrations.commands has no 'sql' command that prints a migration's SQL")
        return {r.revision: self._run("sql", self.commands.sql, target=r.revision) for r in pending}

    def _run(self, role: str, command: str, *, target: str | None = None) -> str:
        """Run one command; its stdout, or MigrationError with its exit code and the end of its output."""
        env = dict(self.environ if self.environ is not None else os.environ)
        env[DATABASE_VARIABLE] = self.url
        env["PGOPTIONS"] = pg_options(self.lock_timeout, self.statement_timeout)
        if target is not None:
            env[TARGET_VARIABLE] = target
        where = f"migrations.commands.{role}"
        try:
            proc = subprocess.run(
                ["sh", "-c", command], cwd=self.root, env=env, capture_output=True, text=True,
                timeout=self.timeout, check=False, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise MigrationError(
                f"{command!r} ran longer than {self.timeout:g}s and was stopped", file=where,
                hint="a lock held by a long transaction? see pg_stat_activity",
            ) from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-8:])
            on = f" for {TARGET_VARIABLE}={target}" if target else ""
            raise MigrationError(
                f"{command!r} exited {proc.returncode}{on}" + (f"; its output ended with:\n{tail}" if tail else ""),
                file=where,
                hint="run it by hand in the release's directory with the same variables to see why",
            )
        return proc.stdout
