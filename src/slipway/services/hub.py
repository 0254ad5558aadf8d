"""What a long-running server keeps: the projects it serves, the runs it drives, and their live output.

The API and the web UI are thin over this and the other services: each request borrows a project's App
acting as the signed-in user (:meth:`App.acting_as`), calls the same service function the CLI calls, and
hands the runs it starts to :class:`RunDriver`, which drives each in a thread of its own with its own event
loop, so that pages keep answering while hosts deploy. A :class:`LiveFeed` per driven run keeps the newest
events (already masked) for the pages that stream them. Stopping the server (SIGTERM, SIGINT) cancels every
run it drives the way Ctrl-C cancels a CLI run: each deployment reverts, the run is recorded cancelled and
its locks are released.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slipway.config import load_config
from slipway.errors import ConfigError, NotFound, SlipwayError, StateError
from slipway.model.states import State
from slipway.services import pipeline, triggers
from slipway.services.app import App, open_app

log = logging.getLogger("slipway.triggers")

#: How many events a run's feed keeps (older lines are in the store once their step ends).
FEED_EVENTS = 5000


@dataclass
class LiveFeed:
    """The newest events of one driven run, numbered, for pages that stream them (an Observer)."""

    run_id: int
    events: deque[tuple[int, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=FEED_EVENTS))
    seq: int = 0
    done: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _add(self, kind: str, **data: Any) -> None:
        with self._lock:
            self.seq += 1
            self.events.append((self.seq, {"kind": kind, "at": time.time(), **data}))

    def since(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The events numbered after ``seq`` that are still kept."""
        with self._lock:
            return [(n, e) for n, e in self.events if n > seq]

    def stage_started(self, name: str, kind: str) -> None:
        """Record."""
        self._add("stage_started", stage=name, stage_kind=kind)

    def stage_finished(self, name: str, state: State, duration: float, error: str | None) -> None:
        """Record."""
        self._add("stage_finished", stage=name, state=state.value, duration=duration, error=error)

    def step_started(self, host: str, label: str) -> None:
        """Record."""
        self._add("step_started", host=host, label=label)

    def output(self, host: str, stream: str, line: str) -> None:
        """Record."""
        self._add("output", host=host, stream=stream, line=line)

    def step_finished(self, host: str, label: str, state: State, exit_code: int | None, duration: float) -> None:
        """Record."""
        self._add("step_finished", host=host, label=label, state=state.value, exit_code=exit_code, duration=duration)

    def batch_started(self, index: int, total: int, kind: str, hosts: Sequence[str]) -> None:
        """Record."""
        self._add("batch_started", index=index, total=total, batch_kind=kind, hosts=list(hosts))

    def batch_finished(self, index: int, total: int, failed: Sequence[str], duration: float) -> None:
        """Record."""
        self._add("batch_finished", index=index, total=total, failed=list(failed), duration=duration)

    def message(self, text: str) -> None:
        """Record."""
        self._add("message", text=text)

    def finished(self, error: BaseException | None) -> None:
        """The driving ended: how (the error a CLI would have exited with, if any). The last event."""
        if isinstance(error, SlipwayError):
            self._add(
                "finished",
                error={
                    "type": type(error).__name__,
                    "message": error.message,
                    "hint": error.hint,
                    "exit_code": error.exit_code,
                },
            )
        elif error is not None:
            self._add(
                "finished", error={"type": type(error).__name__, "message": str(error), "hint": "", "exit_code": 70}
            )
        else:
            self._add("finished", error=None)
        self.done = True


@dataclass
class _Driven:
    thread: threading.Thread
    feed: LiveFeed
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None
    error: BaseException | None = None


class RunDriver:
    """Drives runs in background threads, one event loop each; cancels them all when the server stops."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, int], _Driven] = {}
        self._lock = threading.Lock()
        self.stopping = False

    def feed(self, project: str, run_id: int) -> LiveFeed | None:
        """The live feed of a run this server drives (or drove since it started), if any."""
        with self._lock:
            driven = self._runs.get((project, run_id))
            return driven.feed if driven else None

    def active(self) -> list[tuple[str, int]]:
        """(project, run id) of every run being driven now."""
        with self._lock:
            return [key for key, d in self._runs.items() if d.thread.is_alive()]

    def drive(self, project: str, run_id: int, work: Callable[[LiveFeed], Coroutine[Any, Any, Any]]) -> LiveFeed:
        """Start ``work(feed)`` (a service coroutine driving run ``run_id``) in a thread of its own."""
        if self.stopping:
            raise StateError("the server is stopping", hint="start the run again once it is back")
        feed = LiveFeed(run_id)
        driven = _Driven(threading.Thread(target=lambda: self._thread(driven, work), name=f"run-{run_id}"), feed)
        with self._lock:
            self._runs[(project, run_id)] = driven
        driven.thread.start()
        return feed

    def _thread(self, driven: _Driven, work: Callable[[LiveFeed], Coroutine[Any, Any, Any]]) -> None:
        async def main() -> None:
            driven.loop = asyncio.get_running_loop()
            driven.task = asyncio.current_task()
            if self.stopping:
                return
            await work(driven.feed)

        try:
            asyncio.run(main())
        except BaseException as exc:  # recorded on the run by the services; told to whoever follows the feed
            driven.error = exc
            driven.feed.finished(exc)
        else:
            driven.feed.finished(None)

    def stop(self, *, timeout: float = 120.0) -> list[int]:
        """Cancel every driven run (each reverts and is recorded cancelled) and wait for them; returns the
        ids of runs still going after ``timeout`` (their records say ``running``: the next command finds
        them interrupted)."""
        self.stopping = True
        with self._lock:
            driven = list(self._runs.values())
        for d in driven:
            if d.loop is not None and d.task is not None and not d.loop.is_closed():
                d.loop.call_soon_threadsafe(d.task.cancel)
        deadline = time.monotonic() + timeout
        for d in driven:
            d.thread.join(max(0.0, deadline - time.monotonic()))
        return [d.feed.run_id for d in driven if d.thread.is_alive()]


def reload_if_changed(app: App) -> None:
    """Read ``app``'s slipway.yml again when its text changed (an invalid file: ConfigError, and the
    loaded one stays). A project's name cannot change while it is served."""
    try:
        text = app.config.path.read_text()
    except OSError:
        return
    if text == app.config.text:
        return
    loaded = load_config(app.config.path)
    if loaded.project.name != app.config.project.name:
        raise ConfigError(
            f"{app.config.path}: the project's name changed from {app.config.project.name} to {loaded.project.name}",
            hint="restart 'slipway serve' to serve it under its new name",
        )
    app.config = loaded


@dataclass
class Hub:
    """The projects a server serves, by name, each with an App whose store stays open; and the driver."""

    projects: dict[str, App]
    driver: RunDriver = field(default_factory=RunDriver)
    _stop: threading.Event = field(default_factory=threading.Event)
    _poller: threading.Thread | None = None

    @classmethod
    def open(
        cls, directories: Sequence[Path], *, database_url: str | None = None, artifact_dir: str | None = None
    ) -> Hub:
        """Load each project's slipway.yml (a directory or the file) and open its store."""
        projects: dict[str, App] = {}
        for directory in directories:
            config = directory if directory.is_file() else None
            app = open_app(config_path=config, cwd=directory, database_url=database_url, artifact_dir=artifact_dir)
            name = app.config.project.name
            if name in projects:
                raise ConfigError(
                    f"two projects are called {name}: {projects[name].config.path} and {app.config.path}",
                    hint="serve each project once; names come from 'name:' in slipway.yml",
                )
            app.store  # noqa: B018 - opened (and reconciled) now, not on the first request
            projects[name] = app
        return cls(projects)

    @property
    def accounts(self) -> App:
        """The App whose store keeps the server's accounts: the first project's (docs/server.md)."""
        return next(iter(self.projects.values()))

    def project(self, name: str) -> App:
        """The project called ``name`` (NotFound, a 404, naming the served ones), its slipway.yml read again
        if the file changed since (a team commits changes to it while the server runs)."""
        try:
            app = self.projects[name]
        except KeyError:
            raise NotFound(
                f"no project {name!r} is served here", hint="served: " + ", ".join(sorted(self.projects))
            ) from None
        reload_if_changed(app)
        return app

    def drive_triggered(self, project: str, run_id: int) -> LiveFeed:
        """Drive a run a webhook or the poller created, acting as what triggered it."""
        base = self.project(project)
        actor = base.store.get_run(run_id).triggered_by

        def job(feed: LiveFeed) -> Coroutine[Any, Any, Any]:
            return pipeline.continue_run(base.acting_as(actor, observer=feed), run_id)

        return self.driver.drive(project, run_id, job)

    def start_poller(self) -> None:
        """Poll the remote of each project with ``triggers.poll_interval`` in a thread (until :meth:`close`)."""
        if not any(a.config.project.triggers and a.config.project.triggers.poll_interval for a in self.projects.values()):
            return
        self._poller = threading.Thread(target=self._poll_loop, name="poller", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        due: dict[str, float] = {}
        while not self._stop.is_set():
            for name in list(self.projects):
                app = self.projects[name]
                spec = app.config.project.triggers
                if spec is None or spec.poll_interval is None or time.monotonic() < due.get(name, 0.0):
                    continue
                due[name] = time.monotonic() + spec.poll_interval
                self.poll(name)
            self._stop.wait(0.2)

    def poll(self, name: str) -> triggers.Received | None:
        """One poll of project ``name``'s remote; a run it starts is driven. Errors are logged, never raised."""
        try:
            received = triggers.poll_once(self.project(name))
            if received.run_id is not None and not self.driver.stopping:
                self.drive_triggered(name, received.run_id)
            if received.outcome == "started":
                log.info("project %s: %s", name, received.message)
            return received
        except SlipwayError as exc:
            log.warning("project %s: polling failed: %s", name, exc.message)
            return None

    def close(self) -> None:
        """Stop polling and driving runs, then close every store."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=120)
        self.driver.stop()
        for app in self.projects.values():
            app.close()
