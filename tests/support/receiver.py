"""An HTTP receiver on 127.0.0.1 that records every POST: what a webhook receiver, a chat tool or a forge's
status API would get. Tests wait on what it recorded, bounded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Post:
    """One request it received: the path, the headers (by lower-case name) and the JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """Records every POST (``posts``, in arrival order) and answers ``status``."""

    def __init__(self, *, status: int = 200) -> None:
        self.received: list[Post] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.changed:
                    receiver.received.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.changed.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def posts(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, body) of each POST so far."""
        with self.changed:
            return [(p.path, p.body) for p in self.received]

    def wait_for(self, ready: Callable[[list[tuple[str, dict[str, Any]]]], bool], *, timeout: float = 20.0) -> list[tuple[str, dict[str, Any]]]:
        """The (path, body) list once ``ready`` says so (fails after ``timeout`` seconds)."""
        with self.changed:
            ok = self.changed.wait_for(lambda: ready([(p.path, p.body) for p in self.received]), timeout=timeout)
            assert ok, f"got only {self.received}"
            return [(p.path, p.body) for p in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
