"""A deliberately small JSON path: ``$.a.b[0].c`` and ``["key with.dots"]``; no filters, no wildcards.

Health endpoints answer small documents; a check needs to point at one value in them, not query them.
A full JSONPath implementation would be a dependency for a feature nobody asked for. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

#: One path segment: a key (str) or a list index (int).
Segment = str | int

_TOKEN = re.compile(
    r"""
    \.(?P<dotted>[A-Za-z_][A-Za-z0-9_\-]*)   # .key
  | \[(?P<index>-?\d+)\]                     # [3] or [-1]
  | \["(?P<quoted>[^"]*)"\]                  # ["any key"]
    """,
    re.VERBOSE,
)


class _Missing:
    """Marker for a path that does not exist in a document."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def parse_json_path(path: str) -> tuple[Segment, ...]:
    """Split ``$.a[0].b`` (the ``$`` is optional) into segments; ValueError says where it is wrong."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    if text and text[0] not in ".[":
        text = "." + text
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f'invalid JSON path {path!r} at {text[pos:]!r}: use $.key, [index] or ["key"]')
        if match["index"] is not None:
            segments.append(int(match["index"]))
        else:
            segments.append(match["dotted"] if match["dotted"] is not None else match["quoted"])
        pos = match.end()
    return tuple(segments)


def extract_json_path(document: object, segments: Sequence[Segment]) -> object:
    """The value at ``segments`` in ``document``, or :data:`MISSING` when the path does not exist."""
    current = document
    for segment in segments:
        if isinstance(segment, int):
            if not isinstance(current, list) or not -len(current) <= segment < len(current):
                return MISSING
            current = current[segment]
        else:
            if not isinstance(current, Mapping) or segment not in current:
                return MISSING
            current = current[segment]
    return current


def json_equal(actual: object, expected: object) -> bool:
    """JSON equality: like ``==`` but ``true`` is not ``1`` and ``1.0`` equals ``1``."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(json_equal, actual, expected))
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        return actual.keys() == expected.keys() and all(json_equal(actual[k], expected[k]) for k in actual)
    return actual == expected
