"""The app's tables as ORM classes. Their schema changes only through a new revision in migrations/versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The declarative base: ``Base.metadata`` is what migrations/env.py compares revisions with."""


class Note(Base):
    """A note someone left."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    author: Mapped[str | None] = mapped_column(String(80))  # revision 0002: nullable, so release 1 still writes

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "author": self.author}
