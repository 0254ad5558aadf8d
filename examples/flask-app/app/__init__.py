"""Notes: a small Flask app for the guide docs/ship-python.md, its data in SQL through the SQLAlchemy ORM.

``create_app()`` is what gunicorn serves (gunicorn.conf.py). The database is ``DATABASE_URL`` (PostgreSQL
on the servers, SQLite in the unit tests); its schema is the Alembic project in migrations/, which Slipway
applies before a release's hosts switch. ``/health`` names the release it serves, read from the marker
Slipway writes into every release directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, request
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.models import Note


def release_of(directory: Path) -> dict[str, Any]:
    """The release and commit this process serves (``.slipway-release``), or ``dev`` outside a deployment."""
    try:
        marker = json.loads((directory / ".slipway-release").read_text())
    except (OSError, ValueError):
        return {"release": "dev", "commit": None}
    return {"release": marker.get("release"), "commit": marker.get("commit")}


def create_app(database_url: str | None = None) -> Flask:
    """The WSGI app on ``database_url`` (default: the environment's ``DATABASE_URL``)."""
    app = Flask(__name__)
    # pool_pre_ping: a connection the database closed (a restart, an idle timeout) is replaced, not failed.
    engine = create_engine(database_url or os.environ["DATABASE_URL"], pool_pre_ping=True)
    sessions = sessionmaker(engine, expire_on_commit=False)
    release = release_of(Path.cwd())

    @app.get("/health")
    def health() -> Any:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return jsonify(status="ok", **release)

    @app.get("/notes")
    def list_notes() -> Any:
        with Session(engine) as session:
            notes = session.scalars(select(Note).order_by(Note.id)).all()
            return jsonify([note.as_dict() for note in notes])

    @app.post("/notes")
    def add_note() -> Any:
        data = request.get_json(silent=True) or {}
        if not isinstance(data.get("text"), str) or not data["text"].strip():
            abort(400, description="a note needs a non-empty 'text'")
        with sessions.begin() as session:
            note = Note(text=data["text"].strip(), author=data.get("author"))
            session.add(note)
        return jsonify(note.as_dict()), 201

    return app
