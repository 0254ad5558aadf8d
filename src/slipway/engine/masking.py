"""Secrets never reach a log: every line is masked before it is shown or stored."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"
#: Values shorter than this are not masked: masking "a" or "1" would wreck every log and protect nothing.
MIN_SECRET_LENGTH = 3


class Masker:
    """Replaces every known secret value in a text with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secret values (longest first, so overlapping values mask fully)."""
        values = set(self._values)
        for value in secrets:
            for part in (value, *value.splitlines()):
                if len(part.strip()) >= MIN_SECRET_LENGTH:
                    values.add(part)
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text
