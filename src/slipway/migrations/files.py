"""Migration files: naming, phase, headers, overrides, batch declarations and checksums.

A migration is one ``.sql`` file named ``<version>_<phase>_<description>.sql``, e.g.
``0003_expand_split_name.sql``, or ``<version>_<description>.sql`` with the phase in a header comment
(``-- slipway:phase expand``). The version is a decimal number; files run in numeric order, so
``10_...`` runs after ``9_...`` with or without zero padding. Directives are whole-line comments
anywhere in the file:

    -- slipway:phase expand|migrate|contract
    -- slipway:allow SW008 reason="the table has 12 rows; a plain index is fine"
    -- slipway:batch table=users key=id size=1000

Everything here is pure except :func:`load_migrations`, which reads a directory. docs/migrations.md is the
user-facing description; keep the two in step.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from slipway.errors import MigrationError


class Phase(enum.StrEnum):
    """When a migration may run relative to the rollout of the release that needs it."""

    #: Additive and backward compatible: runs before the new release rolls out.
    EXPAND = "expand"
    #: Data backfill in batches, each committed on its own: runs after expand, before contract.
    MIGRATE = "migrate"
    #: Destructive: runs only once no target runs a release that needs the old schema.
    CONTRACT = "contract"

    @property
    def rank(self) -> int:
        """Position in the parallel-change order (expand < migrate < contract)."""
        return list(Phase).index(self)


DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 1_000_000
BATCH_START = "batch_start"
BATCH_END = "batch_end"


@dataclass(frozen=True)
class Override:
    """``-- slipway:allow RULE reason="..."``: one lint rule waived for this file, with the reason."""

    rule: str
    reason: str
    line: int


@dataclass(frozen=True)
class BatchSpec:
    """``-- slipway:batch``: walk ``table`` in ``key`` order, ``size`` rows per committed batch."""

    table: str
    key: str
    #: Rows per batch; with ``budget``, the first batch's size (the runner sizes the next ones).
    size: int = DEFAULT_BATCH_SIZE
    #: ``budget=50ms``: seconds one batch may hold its locks; the runner adapts the size to stay under it.
    budget: float | None = None


@dataclass(frozen=True)
class Migration:
    """One parsed migration file."""

    version: int
    name: str
    phase: Phase
    #: The path as given (used in every message about this file).
    path: str
    #: The file's text as read (normalised line endings).
    sql: str
    #: sha256 hex of the normalised text: see :func:`checksum`.
    checksum: str
    overrides: tuple[Override, ...] = ()
    batch: BatchSpec | None = None

    @property
    def filename(self) -> str:
        """The file's base name."""
        return Path(self.path).name

    def override_for(self, rule: str) -> Override | None:
        """The override waiving ``rule`` in this file, if any."""
        return next((o for o in self.overrides if o.rule == rule), None)


_FILENAME = re.compile(r"^(?P<version>[0-9]{1,18})_(?P<rest>[A-Za-z0-9][A-Za-z0-9_-]*)\.sql$")
_DIRECTIVE = re.compile(r"^\s*--\s*slipway:(?P<name>\S*)(?P<args>.*)$")
_ALLOW = re.compile(r'^(?P<rule>[A-Z]{2}[0-9]{3})(?:\s+reason\s*=\s*"(?P<reason>[^"]*)")?\s*$')
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_PHASE_WORDS = frozenset(p.value for p in Phase)
_PLACEHOLDER = re.compile(r"(?<![:\w]):(batch_start|batch_end)\b")


def parse_filename(filename: str) -> tuple[int, Phase | None, str]:
    """Split ``0003_expand_split_name.sql`` into ``(3, Phase.EXPAND, "split_name")``.

    The phase is taken from the name only when the word after the version is a phase; otherwise it is
    ``None`` and the file must carry a ``-- slipway:phase`` header.
    """
    match = _FILENAME.match(filename)
    if not match:
        raise MigrationError(
            "a migration file must be named <version>_<description>.sql, e.g. 0003_expand_split_name.sql",
            file=filename,
        )
    version = int(match["version"])
    rest = match["rest"]
    word, _, remainder = rest.partition("_")
    if word in _PHASE_WORDS:
        return version, Phase(word), remainder or word
    return version, None, rest


def normalise(text: str) -> str:
    """The text whose hash is the checksum: LF line ends, no trailing spaces, no trailing blank lines.

    Re-saving a file with CRLF endings or an editor that trims whitespace does not count as an edit;
    any change to SQL or comments (headers and overrides are comments) does.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def checksum(text: str) -> str:
    """sha256 hex digest of :func:`normalise` (``text``)."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def parse_migration(path: str, text: str) -> Migration:
    """Parse one migration file's name and text; raises MigrationError naming ``path``."""
    version, name_phase, name = parse_filename(Path(path).name)
    header_phase: Phase | None = None
    overrides: list[Override] = []
    batch: BatchSpec | None = None
    for number, line in enumerate(normalise(text).split("\n"), start=1):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        directive, args = match["name"], match["args"].strip()
        where = f"{path}:{number}"
        if directive == "phase":
            if header_phase is not None:
                raise MigrationError("more than one '-- slipway:phase' header", file=where)
            header_phase = _parse_phase(args, where)
        elif directive == "allow":
            override = _parse_allow(args, number, where)
            if any(o.rule == override.rule for o in overrides):
                raise MigrationError(f"rule {override.rule} is allowed twice", file=where)
            overrides.append(override)
        elif directive == "batch":
            if batch is not None:
                raise MigrationError("more than one '-- slipway:batch' header", file=where)
            batch = _parse_batch(args, where)
        else:
            raise MigrationError(
                f"unknown directive 'slipway:{directive}'",
                file=where,
                hint="known directives: slipway:phase, slipway:allow, slipway:batch",
            )
    phase = _resolve_phase(path, name_phase, header_phase)
    _check_batch(path, phase, batch, text)
    return Migration(
        version=version,
        name=name,
        phase=phase,
        path=path,
        sql=normalise(text),
        checksum=checksum(text),
        overrides=tuple(overrides),
        batch=batch,
    )


def load_migrations(directory: str | Path) -> tuple[Migration, ...]:
    """Read every ``*.sql`` file in ``directory`` (not recursive), ordered by version.

    Other files (README.md, hidden files) are ignored; a ``.sql`` file that is not named like a
    migration is an error rather than silently skipped. Two files with the same version are an error.
    """
    root = Path(directory)
    if not root.is_dir():
        raise MigrationError(f"migrations directory {str(root)!r} does not exist or is not a directory")
    migrations = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.suffix != ".sql" or not entry.is_file():
            continue
        try:
            text = entry.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"not UTF-8 text ({exc.reason})", file=str(entry)) from exc
        migrations.append(parse_migration(str(entry), text))
    return order_migrations(migrations)


def order_migrations(migrations: list[Migration] | tuple[Migration, ...]) -> tuple[Migration, ...]:
    """Sort by version; raises MigrationError naming both files when two share a version."""
    ordered = sorted(migrations, key=lambda m: m.version)
    for before, after in itertools.pairwise(ordered):
        if before.version == after.version:
            raise MigrationError(
                f"version {after.version} is used by both {before.filename} and {after.filename}",
                file=after.path,
                hint="give every migration its own version number",
            )
    return tuple(ordered)


def _parse_phase(args: str, where: str) -> Phase:
    """The phase named in a ``slipway:phase`` header."""
    try:
        return Phase(args.lower())
    except ValueError:
        raise MigrationError(
            f"unknown phase {args!r}", file=where, hint="the phase is one of: expand, migrate, contract"
        ) from None


def _parse_allow(args: str, number: int, where: str) -> Override:
    """An override from ``SW001 reason="..."``; the reason is mandatory."""
    match = _ALLOW.match(args)
    if not match:
        raise MigrationError(
            f"cannot read override {args!r}",
            file=where,
            hint='write it as: -- slipway:allow SW001 reason="why this is safe here"',
        )
    reason = (match["reason"] or "").strip()
    if not reason:
        raise MigrationError(
            f"override of {match['rule']} has no reason",
            file=where,
            hint=f'say why it is safe: -- slipway:allow {match["rule"]} reason="..."',
        )
    return Override(rule=match["rule"], reason=reason, line=number)


def _parse_batch(args: str, where: str) -> BatchSpec:
    """A BatchSpec from ``table=... key=... [size=...]``."""
    fields: dict[str, str] = {}
    for item in args.split():
        key, sep, value = item.partition("=")
        if not sep or key not in ("table", "key", "size", "budget") or key in fields or not value:
            raise MigrationError(
                f"cannot read batch header item {item!r}",
                file=where,
                hint="write it as: -- slipway:batch table=users key=id size=1000 [budget=50ms]",
            )
        fields[key] = value
    for required in ("table", "key"):
        if required not in fields:
            raise MigrationError(f"batch header needs {required}=...", file=where)
        if not _IDENTIFIER.match(fields[required]):
            raise MigrationError(f"batch {required} {fields[required]!r} is not a plain SQL name", file=where)
    size_text = fields.get("size", str(DEFAULT_BATCH_SIZE))
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_BATCH_SIZE:
        raise MigrationError(f"batch size must be a whole number from 1 to {MAX_BATCH_SIZE}", file=where)
    budget = _parse_budget(fields["budget"], where) if "budget" in fields else None
    return BatchSpec(table=fields["table"], key=fields["key"], size=int(size_text), budget=budget)


_BUDGET = re.compile(r"(\d+(?:\.\d+)?)(ms|s)\Z")


def _parse_budget(text: str, where: str) -> float:
    """``50ms`` or ``0.2s`` -> seconds; from 1 ms to 10 s."""
    match = _BUDGET.match(text)
    seconds = float(match[1]) / (1000 if match[2] == "ms" else 1) if match else 0.0
    if not match or not 0.001 <= seconds <= 10:
        raise MigrationError(
            f"batch budget {text!r} is not a time from 1ms to 10s",
            file=where,
            hint="write it with its unit: budget=50ms (how long one batch may hold its row locks)",
        )
    return seconds


def _resolve_phase(path: str, from_name: Phase | None, from_header: Phase | None) -> Phase:
    """The phase: the header and the name must agree when both give one."""
    if from_name and from_header and from_name is not from_header:
        raise MigrationError(
            f"the file name says phase {from_name.value!r} but the header says {from_header.value!r}",
            file=path,
            hint="make the name and the '-- slipway:phase' header agree, or drop one of them",
        )
    phase = from_header or from_name
    if phase is None:
        raise MigrationError(
            "no phase: name the file <version>_<phase>_<description>.sql or add '-- slipway:phase ...'",
            file=path,
            hint="the phase is one of: expand, migrate, contract",
        )
    return phase


def _check_batch(path: str, phase: Phase, batch: BatchSpec | None, text: str) -> None:
    """A migrate file declares its batch and uses both placeholders; other phases declare none."""
    if phase is not Phase.MIGRATE:
        if batch is not None:
            raise MigrationError(
                f"'-- slipway:batch' is only for migrate files, not {phase.value}", file=path
            )
        return
    if batch is None:
        raise MigrationError(
            "a migrate file needs a batch header",
            file=path,
            hint="add: -- slipway:batch table=<table> key=<unique key column> size=1000",
        )
    code = "\n".join(line for line in normalise(text).split("\n") if not line.lstrip().startswith("--"))
    found = set(_PLACEHOLDER.findall(code))
    missing = sorted({BATCH_START, BATCH_END} - found)
    if missing:
        raise MigrationError(
            "the batched statement must use :batch_start and :batch_end (missing "
            + ", ".join(f":{m}" for m in missing)
            + ")",
            file=path,
            hint=f"restrict it with: WHERE {batch.key} BETWEEN :batch_start AND :batch_end",
        )
