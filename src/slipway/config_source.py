"""slipway.yml's bytes into plain data that remembers where each value was written, within fixed bounds.

Anyone who can push a commit writes the slipway.yml a runner reads, so reading it must not cost more
than the file is worth. YAML aliases share one node, so composing is linear in the text; it is turning
nodes into Python values that repeats an aliased part each time it is named ("billion laughs": nine
lines grow to 10^9 values). Every value made is counted against :data:`MAX_VALUES`, the file's size
is capped at :data:`MAX_BYTES`, and a file nested past what the parser's recursion allows is refused:
each is a ConfigError with the position, never a MemoryError or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from slipway.errors import ConfigError

Loc = tuple[str | int, ...]
#: The largest slipway.yml read (bytes). The composed nodes cost about 50 times the text.
MAX_BYTES = 1024 * 1024
#: The most values (mappings, lists and scalars, counting each alias as often as it is used) a file
#: may expand to. A fleet of 1000 targets with ten keys each stays well below it.
MAX_VALUES = 200_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Mark:
    """A 1-based position in the file."""

    line: int
    column: int


def decode(data: bytes, *, file: str) -> str:
    """The text of a slipway.yml read as bytes: ConfigError (with the line) when it is too big or not UTF-8."""
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"the file is {len(data)} bytes; slipway.yml may have at most {MAX_BYTES}",
            file=file,
            hint="is this the right file? A pipeline's configuration is a few kilobytes",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}: {exc.reason})",
            file=file,
            line=line,
            column=column,
            hint="slipway.yml must be YAML text in UTF-8: was a binary file committed or copied in its place?",
        ) from None


def compose(text: str, *, file: str) -> yaml.Node | None:
    """The YAML node graph of ``text`` (aliases still shared), or ConfigError with the position."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _marked(exc, file, "check the indentation and quoting around this position") from None
    except yaml.YAMLError as exc:  # e.g. a control character the YAML reader refuses
        raise ConfigError(f"malformed YAML: {exc}", file=file, hint="remove control characters from the file") from None
    except RecursionError:
        raise _too_deep(file) from None


def to_python(node: yaml.Node, marks: dict[Loc, Mark], *, file: str) -> Any:
    """Plain dicts, lists and scalars from ``node``, recording each value's position in ``marks``."""
    builder = _Builder(file, marks)
    try:
        return builder.value(node, ())
    except yaml.MarkedYAMLError as exc:  # e.g. a tag no constructor knows
        raise _marked(exc, file, "quote the value if it is meant as text") from None
    except RecursionError:
        raise _too_deep(file) from None


class _Builder:
    """One file's conversion: a fresh scalar constructor and a budget of values."""

    def __init__(self, file: str, marks: dict[Loc, Mark]) -> None:
        self.file = file
        self.marks = marks
        self.left = MAX_VALUES
        self.scalars = yaml.SafeLoader("")  # per file: its cache of constructed nodes dies with it
        self.inside: set[int] = set()  # the nodes being expanded: an alias to one of them is a loop

    def value(self, node: yaml.Node, loc: Loc) -> Any:
        if id(node) in self.inside:
            raise self._at(node, "an alias refers to the list or mapping it is part of", loc, hint="remove the loop")
        self.left -= 1
        if self.left < 0:
            raise ConfigError(
                f"the file expands to more than {MAX_VALUES} values (counting every use of an alias)",
                file=self.file,
                line=node.start_mark.line + 1,
                column=node.start_mark.column + 1,
                key_path=dotted(loc) or None,
                hint="an anchor here is repeated by aliases that repeat it again (a 'billion laughs' file?): "
                "write the values out, or use fewer levels of aliases",
            )
        self.marks[loc] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalars.construct_object(node, deep=True)
        self.inside.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, loc)
            return [self.value(item, (*loc, i)) for i, item in enumerate(node.value)]
        finally:
            self.inside.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # ``<<: *defaults``: keys written here win over merged ones
                merged += self._merge_sources(value_node)
                continue
            key = self._key(key_node, loc)
            if key in result:
                raise self._at(key_node, f"key {key!r} appears twice", (*loc, key), hint="keep one of them")
            result[key] = self.value(value_node, (*loc, key))
            self.marks[(*loc, key, "__key__")] = Mark(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        for source in merged:  # the first merged mapping that has a key wins (YAML's rule)
            saved, self.marks = self.marks, {}
            try:
                values = self.mapping(source, loc)
            finally:
                marks, self.marks = self.marks, saved
            for key, value in values.items():
                if key not in result:
                    result[key] = value
                    self.marks.update((at, mark) for at, mark in marks.items() if at[len(loc)] == key)
        return result

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise self._at(source, "'<<' merges mappings only", (), hint="write '<<: *anchor' of a mapping")
            if id(source) in self.inside:
                raise self._at(source, "'<<' merges the mapping it is part of", (), hint="remove the loop")
        return list(sources)

    def _key(self, key_node: yaml.Node, loc: Loc) -> str:
        if not isinstance(key_node, yaml.ScalarNode):  # a list or mapping as a key: never meant, and costly
            raise self._at(key_node, "a key must be text, not a list or mapping", loc, hint="quote the key")
        key = self.scalars.construct_object(key_node, deep=True)
        return key if isinstance(key, str) else str(key)

    def _at(self, node: yaml.Node, message: str, loc: Loc, *, hint: str) -> ConfigError:
        return ConfigError(
            message,
            file=self.file,
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
            key_path=dotted(loc) or None,
            hint=hint,
        )


def dotted(loc: Iterable[str | int]) -> str:
    """``environments.dev.targets[0]`` from a location tuple."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _marked(exc: yaml.MarkedYAMLError, file: str, hint: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    return ConfigError(
        f"malformed YAML: {exc.problem or exc.context}",
        file=file,
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
        hint=hint,
    )


def _too_deep(file: str) -> ConfigError:
    return ConfigError(
        "the file nests lists or mappings too deeply to read",
        file=file,
        hint="slipway.yml needs a few levels of nesting: is this the right file?",
    )
