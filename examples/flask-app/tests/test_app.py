"""Unit tests, run by the pipeline's test stage on the built artifact (its wheelhouse installed in .venv).

Each test gets a SQLite database made by the Alembic revisions themselves, so a revision that does not
make the schema the models expect fails here, before any server is touched.
"""

import json
import tempfile
import unittest
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from app import create_app, release_of
from app.models import Base

ROOT = Path(__file__).resolve().parents[1]


class NotesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.url = f"sqlite:///{self.tmp.name}/notes.db"
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("script_location", str(ROOT / "migrations"))
        config.set_main_option("sqlalchemy.url", self.url)
        command.upgrade(config, "head")
        self.app = create_app(self.url)
        self.client = self.app.test_client()

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def test_the_revisions_make_the_schema_of_the_models(self) -> None:
        engine = create_engine(self.url)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        engine.dispose()
        self.assertEqual(differences, [])

    def test_a_note_is_stored_and_listed(self) -> None:
        created = self.client.post("/notes", json={"text": " ship it ", "author": "ada"})
        self.assertEqual(created.status_code, 201)
        self.assertEqual(self.client.get("/notes").get_json(), [{"id": 1, "text": "ship it", "author": "ada"}])

    def test_an_empty_note_is_refused(self) -> None:
        self.assertEqual(self.client.post("/notes", json={"text": "  "}).status_code, 400)

    def test_health_names_the_release(self) -> None:
        answer = self.client.get("/health").get_json()
        self.assertEqual(answer["status"], "ok")
        (Path(self.tmp.name) / ".slipway-release").write_text(json.dumps({"release": "r1", "commit": "abc"}))
        self.assertEqual(release_of(Path(self.tmp.name)), {"release": "r1", "commit": "abc"})


if __name__ == "__main__":
    unittest.main()
