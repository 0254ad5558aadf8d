"""The example web service: a JSON API over SQLite (or PostgreSQL) with a /health endpoint.

Standard library only on SQLite; PostgreSQL needs psycopg (bin/restart.sh runs ${SLIPWAY_PYTHON:-python3}).
The database URL comes from DATABASE_URL (a secret in slipway.yml) or defaults to SQLite in --data.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app import store


def release_info() -> dict[str, str]:
    """What release this process runs, read from the marker Slipway writes into every release.

    ``commit`` is the commit the release was deployed for (the hooks' ``{{ release.commit }}``, what the
    verify hook and the acceptance tests expect); ``artifact_commit`` the commit that built its files.
    """
    marker = Path(__file__).resolve().parent.parent / ".slipway-release"
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {"release": "dev", "commit": "unknown", "digest": "unknown"}


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /health, GET /items, POST /items {"name": ...}."""

    db_url: str = ""
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/health":
            try:
                with store.connect(self.db_url) as db:
                    db.query("SELECT 1")
                self._send(200, {"status": "ok", **release_info()})
            except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg: either way the database is not usable
                self._send(503, {"status": "database unavailable", "error": str(exc)})
        elif self.path == "/items":
            try:
                with store.connect(self.db_url) as db:
                    self._send(200, {"items": store.list_items(db)})
            except Exception as exc:  # noqa: BLE001
                self._send(500, {"error": str(exc)})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/items":
            self._send(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length", "0"))
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
            name = str(payload["name"]).strip()
            if not name:
                raise ValueError("empty name")
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": 'send {"name": "..."}'})
            return
        try:
            with self.lock, store.connect(self.db_url) as db:
                item = store.add_item(db, name)
        except Exception as exc:  # noqa: BLE001
            self._send(500, {"error": str(exc)})
            return
        self._send(201, item)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: one line per request to stderr would flood the log under load."""


class Server(ThreadingHTTPServer):
    """The standard threading server with a listen backlog fit for load.

    socketserver's default backlog is 5: while requests wait on the database (a migration holding
    SQLite's write lock, say), new connections overflow it and are reset, which clients see as failed
    requests although the app is healthy.
    """

    request_queue_size = 256
    daemon_threads = True


def main() -> None:
    """Run the server until it is stopped."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="directory of the SQLite database (without DATABASE_URL)")
    args = parser.parse_args()
    os.makedirs(args.data, exist_ok=True)
    Handler.db_url = os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(args.data, "app.db")
    server = Server((args.host, args.port), Handler)
    print(f"serving on http://{args.host}:{args.port} ({release_info().get('release')})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
